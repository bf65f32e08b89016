"""The shipped /etc/zrkeyring/*.toml templates load with the daemons' own config classes, and their
commented defaults are the code's defaults (an operator who uncomments a line changes nothing)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from appliance import __version__
from appliance.hsm.config import HsmConfig, load_hsm_config
from appliance.runtime.config import build
from appliance.runtime.metrics_http import parse_address

CONFIG = Path(__file__).resolve().parents[2] / "appliance" / "cli" / "templates"
COMMENTED_SETTING = re.compile(r"^# ([a-z_]+ = .+)$", re.MULTILINE)
TEMPLATES = {
    "party.toml": ("appliance.mpc_party.daemon", "PartyConfig"),
    "controller.toml": ("appliance.controller.service", "ControllerConfig"),
}


def _config_class(template: str) -> type:
    module_name, class_name = TEMPLATES[template]
    return getattr(pytest.importorskip(module_name), class_name)


def _plain(name: str) -> dict:
    return tomllib.loads((CONFIG / name).read_text())


def _uncommented(name: str) -> dict:
    """The template with every commented `# key = value` line switched on."""
    return tomllib.loads(COMMENTED_SETTING.sub(r"\1", (CONFIG / name).read_text()))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_loads_with_the_daemon_config(name: str) -> None:
    config = _config_class(name).load(CONFIG / name)
    assert config.hsm.pin_credential == "hsm-pin"  # the units' LoadCredential=hsm-pin:/etc/zrkeyring/hsm-pin
    assert load_hsm_config(CONFIG / name) == config.hsm


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_commented_defaults_are_the_code_defaults(name: str) -> None:
    config_class = _config_class(name)
    hints = {f.name: f.type for f in dataclasses.fields(config_class)}
    plain, switched_on = _plain(name), _uncommented(name)
    for section, section_class in hints.items():
        if section == "hsm":
            continue  # its commented lines are alternatives (one PIN source), checked below
        cls = getattr(pytest.importorskip(config_class.__module__), section_class) \
            if isinstance(section_class, str) else section_class
        assert build(switched_on[section], section, cls) == build(plain[section], section, cls), section
        shown = set(switched_on[section])
        assert shown == {f.name for f in dataclasses.fields(cls)}, f"[{section}] shows every field"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_hsm_alternatives_and_metrics_address(name: str) -> None:
    assert set(_uncommented(name)["hsm"]) <= {f.name for f in dataclasses.fields(HsmConfig)}
    assert "pin" not in _plain(name)["hsm"]
    parse_address(_uncommented(name)["metrics"]["address"])


def test_changelog_version_matches_the_package() -> None:
    first = (CONFIG.parents[2] / "packaging" / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"zrkeyring ({__version__})"), "add a packaging/debian/changelog entry"
