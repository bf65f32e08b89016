# zrkeyring: every target does its own set-up, so `make demo` and `make test` work on a fresh
# Debian 12 machine as root and are quick the second time (each step is skipped when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Debian packages the build, the tests and the demo need (only missing ones are installed).
APT_PACKAGES := softhsm2 libsystemd-dev pkg-config gcc python3-dev python3-venv prometheus systemd
PEER_APT_PACKAGES := nodejs npm
STAMP := $(VENV)/.installed

.PHONY: help setup deps demo test lint bench proto clean

help:
	@echo "make demo   - set up, then run the keyring demo on this machine"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make bench  - set up, then run the benchmarks (writes bench/out/results.json)"
	@echo "make proto  - regenerate the protobuf/gRPC stubs from proto/"
	@echo "make lint   - ruff"
	@echo "make deb    - build the Debian package: dist/zrkeyring_<version>_amd64.deb (version from pyproject.toml)"
	@echo "make deb-lint - lintian on the built package"

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,systemd]'
	@touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/zrkeyring demo

# Three pytest-xdist workers, a whole module each (tests/conftest.py says why); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: setup
	$(PY) -m ruff check .

bench: setup
	@$(MAKE) --no-print-directory peer-deps
	$(PY) -m bench.run

peer-deps:
	@missing=""; command -v node >/dev/null || missing="$(PEER_APT_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

proto: setup
	$(PY) -m chain_client.protogen

clean:
	rm -rf $(VENV) bench/out build *.egg-info

# Packaging and other optional target groups live beside what they build.
-include packaging/*.mk
