"""Foundation checks: the CLI starts, config errors name the field, addresses encode correctly."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from appliance.runtime.config import build, read_toml
from appliance.runtime.errors import ConfigError
from chain_client.address import AddressError, account_address, address_bytes, bech32_decode, bech32_encode


def test_cli_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "appliance.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("zrkeyring ")
    out = subprocess.run([sys.executable, "-m", "appliance.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout


@dataclasses.dataclass
class _Inner:
    port: int


@dataclasses.dataclass
class _Section:
    name: str
    inner: _Inner
    ratio: float = 1.0
    tags: list[str] = dataclasses.field(default_factory=list)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"inner": {"port": 1}}, "s.name: required field missing"),
        ({"name": 3, "inner": {"port": 1}}, "s.name: expected a string, got 3"),
        ({"name": "a", "inner": {"port": "x"}}, "s.inner.port: expected an integer"),
        ({"name": "a", "inner": {"port": True}}, "s.inner.port: expected an integer"),
        ({"name": "a", "inner": {"port": 1}, "tags": [1]}, "s.tags[0]: expected a string"),
        ({"name": "a", "inner": {"port": 1}, "colour": 1}, "s.colour: unknown field"),
    ],
)
def test_config_errors_name_the_field(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(table, "s", _Section)


def test_config_good_and_unreadable(tmp_path) -> None:
    section = build({"name": "a", "inner": {"port": 9}, "ratio": 2}, "s", _Section)
    assert section == _Section("a", _Inner(9), 2.0, [])
    with pytest.raises(ConfigError, match="not found"):
        read_toml(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(bad)


def test_bech32_bip173_vectors() -> None:
    assert bech32_decode("A12UEL5L") == ("a", b"")
    hrp, _ = bech32_decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")
    assert hrp == "abcdef"
    for bad in ["A1G7SGD8", "x1b4n0q5v", "10a06t8", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxx"]:
        with pytest.raises(AddressError):
            bech32_decode(bad)


def test_account_address_round_trip() -> None:
    # Cosmos' documented secp256k1 test key (generator point, private key 1).
    pub = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    address = account_address(pub)
    assert address.startswith("zen1")
    assert address_bytes(address) == bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert bech32_encode("zen", address_bytes(address)) == address
    with pytest.raises(AddressError, match="prefix"):
        address_bytes(bech32_encode("cosmos", bytes(20)))
