# `make deb` -> dist/zrkeyring_<version>_amd64.deb (included by the main Makefile).
# The package is built by dpkg-buildpackage from a copy of the tracked (and new, not ignored) files in
# build/deb/src, with packaging/debian as its debian/ directory. debian/rules makes the virtualenv with
# Debian's own /usr/bin/python3 and pip (network or a warm pip cache needed), not with $(VENV).

DEB_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DEB_ARCH := amd64
DEB := dist/zrkeyring_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_BUILD_DIR := build/deb
# pip's cache for package builds only: wheels it compiles (systemd-python) come from Debian's python3,
# never from a developer's other Python (whose paths would end up in the .so files' RUNPATH).
DEB_PIP_CACHE := $(abspath build/deb-pip-cache)
DEB_APT_PACKAGES := dpkg-dev debhelper fakeroot python3-venv python3-dev libsystemd-dev pkg-config gcc
DEB_CHANGELOG_VERSION = $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version)

.PHONY: deb deb-deps deb-lint deb-clean

deb-deps:
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(DEB_APT_PACKAGES)"

deb: deb-deps
	@test "$(DEB_CHANGELOG_VERSION)" = "$(DEB_VERSION)" || { \
	  echo "packaging/debian/changelog is at $(DEB_CHANGELOG_VERSION) but pyproject.toml at $(DEB_VERSION):" \
	       "add a changelog entry (dch -v $(DEB_VERSION))"; exit 1; }
	rm -rf $(DEB_BUILD_DIR) && mkdir -p $(DEB_BUILD_DIR)/src dist
	git ls-files -z --cached --others --exclude-standard \
	  | xargs -0 -I{} sh -c 'test ! -e "{}" || cp --parents -P "{}" $(DEB_BUILD_DIR)/src/'
	cp -r packaging/debian $(DEB_BUILD_DIR)/src/debian
	cd $(DEB_BUILD_DIR)/src && PIP_CACHE_DIR=$(DEB_PIP_CACHE) dpkg-buildpackage -b -us -uc --no-sign $(if $(filter 0,$(shell id -u)),,-rfakeroot)
	mv $(DEB_BUILD_DIR)/zrkeyring_$(DEB_VERSION)_$(DEB_ARCH).deb $(DEB)
	@echo "built $(DEB)"

deb-lint: $(DEB)
	lintian --fail-on error $(DEB)

deb-clean:
	rm -rf $(DEB_BUILD_DIR) dist/zrkeyring_*.deb
