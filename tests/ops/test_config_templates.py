"""The shipped /etc/zrkeyring/*.toml templates load with the code that reads them, and their commented
defaults match the code's defaults (so an operator who uncomments a line changes nothing)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from appliance import __version__
from appliance.config import build, load_section
from appliance.hsm.config import HsmConfig, load_hsm_config
from appliance.metrics_http import parse_address
from chain_client.client import ClientConfig

CONFIG = Path(__file__).resolve().parents[2] / "packaging" / "debian" / "config"
COMMENTED_SETTING = re.compile(r"^# ([a-z_]+ = .+)$", re.MULTILINE)


def _uncommented(name: str) -> dict:
    """The template with every commented `# key = value` line switched on."""
    return tomllib.loads(COMMENTED_SETTING.sub(r"\1", (CONFIG / name).read_text()))


@pytest.mark.parametrize("name", ["party.toml", "controller.toml"])
def test_template_hsm_section_loads(name: str) -> None:
    config = load_hsm_config(CONFIG / name)
    assert config.pin_credential == "hsm-pin"  # the units' LoadCredential=hsm-pin:/etc/zrkeyring/hsm-pin
    assert "pin" not in {k for k, _ in tomllib.loads((CONFIG / name).read_text())["hsm"].items()}


@pytest.mark.parametrize("name", ["party.toml", "controller.toml"])
def test_commented_lines_are_valid_toml_and_addresses(name: str) -> None:
    data = _uncommented(name)
    parse_address(data["metrics"]["address"])
    assert data["log"]["mode"] in ("auto", "journal", "text")


def test_chain_section_matches_client_config() -> None:
    data = _uncommented("controller.toml")
    chain = build(data["chain"], "chain", ClientConfig)
    assert chain == ClientConfig(), "a commented default differs from ClientConfig's default"
    listed = set(data["chain"])
    assert listed == {f.name for f in dataclasses.fields(ClientConfig)}, "every ClientConfig field is shown"


def test_hsm_fields_are_known() -> None:
    hsm_fields = {f.name for f in dataclasses.fields(HsmConfig)}
    for name in ("party.toml", "controller.toml"):
        assert set(_uncommented(name)["hsm"]) <= hsm_fields
        load_section(tomllib.loads((CONFIG / name).read_text()), "hsm", HsmConfig)


def test_changelog_version_matches_the_package() -> None:
    first = (CONFIG.parent / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"zrkeyring ({__version__})"), "add a packaging/debian/changelog entry"
