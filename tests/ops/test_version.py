"""One version source: pyproject.toml's version is what `--version`, `zrkeyring_build_info` and the .deb
say (the changelog check is in test_config_templates.py); `make help` lists the package targets."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from appliance import __version__
from appliance.mpc_party import metrics as party_metrics
from appliance.runtime.version import read_version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_is_pyprojects() -> None:
    assert __version__ == PYPROJECT_VERSION
    out = subprocess.run([sys.executable, "-m", "appliance.cli.main", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"zrkeyring {PYPROJECT_VERSION}"


def test_a_bumped_pyproject_is_read_not_a_stale_constant(tmp_path: Path) -> None:
    bumped = tmp_path / "pyproject.toml"
    bumped.write_text('[project]\nname = "zrkeyring"\nversion = "9.8.7"\n')
    assert read_version(bumped) == "9.8.7"
    other = tmp_path / "other.toml"
    other.write_text('[project]\nname = "something-else"\nversion = "1.0"\n')
    assert read_version(other) == read_version(tmp_path / "missing.toml")  # installed metadata, not 1.0


def test_build_info_metric_carries_the_version() -> None:
    value = party_metrics.REGISTRY.get_sample_value("zrkeyring_build_info",
                                                    {"version": PYPROJECT_VERSION, "python": sys.version.split()[0]})
    assert value == 1.0


def test_deb_version_comes_from_pyproject_and_make_help_lists_deb() -> None:
    assert "DEB_VERSION := $(shell sed -n 's/^version = " in (ROOT / "packaging" / "deb.mk").read_text()
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    assert "make deb " in out and "make deb-lint" in out
