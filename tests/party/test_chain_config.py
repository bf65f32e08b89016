"""The `[chain]` table's trust settings: what is refused at load time, with the field named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from appliance.mpc_party.daemon import PartyConfig, chain_reader
from appliance.runtime.chain import ChainSection
from appliance.runtime.config import build
from appliance.runtime.errors import ConfigError
from chain_client.agreement import AgreeingReader
from chain_client.client import ChainClient, is_loopback
from chain_node.local import make_dev_tls

TEMPLATES = Path(__file__).resolve().parents[2] / "appliance" / "cli" / "templates"


def section(**table) -> ChainSection:
    return build({"chain_id": "c-1", **table}, "chain", ChainSection)


@pytest.mark.parametrize("endpoint", ["10.0.0.5:9090", "zrchain.example.org:9090", "[2001:db8::1]:9090",
                                      "0.0.0.0:9090"])
def test_plaintext_to_a_non_loopback_endpoint_is_a_config_error(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"chain\.endpoints\[1\]: .* not a loopback address.*chain\.tls_ca"):
        section(endpoints=["127.0.0.1:9090", endpoint], plaintext_loopback_ok=True)


def test_plaintext_needs_the_explicit_loopback_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"chain\.tls_ca: not set.*plaintext_loopback_ok"):
        section(endpoints=["127.0.0.1:9090"])
    assert section(endpoints=["127.0.0.1:9090", "localhost:9091", "[::1]:9092"], plaintext_loopback_ok=True)


def test_plaintext_loopback_warns_at_start(caplog) -> None:
    chain = section(endpoints=["127.0.0.1:9090"], plaintext_loopback_ok=True)
    with caplog.at_level(logging.WARNING, logger="chain_client"), ChainClient(chain.client_config()):
        pass
    assert "plaintext gRPC to chain endpoint 127.0.0.1:9090 (loopback)" in caplog.text


def test_tls_settings_are_checked(tmp_path) -> None:
    tls = make_dev_tls(tmp_path / "tls")
    chain = section(endpoints=["zrchain.example.org:9090"], tls_ca=str(tls.ca), tls_server_name="zrchain")
    config = chain.client_config()
    assert config.tls_ca_pem == tls.ca_pem() and config.tls_server_name == "zrchain"
    with pytest.raises(ConfigError, match=r"chain\.tls_ca: cannot read .*missing\.pem"):
        section(tls_ca=str(tmp_path / "missing.pem")).client_config()
    with pytest.raises(ConfigError, match=r"chain\.tls_ca: .* holds no PEM certificate"):
        section(tls_ca=str(tls.key)).client_config()
    with pytest.raises(ConfigError, match=r"chain\.plaintext_loopback_ok: set together with chain\.tls_ca"):
        section(tls_ca=str(tls.ca), plaintext_loopback_ok=True)


@pytest.mark.parametrize(("table", "field"), [
    ({"agree": 0}, r"chain\.agree: 0"),
    ({"agree": 3, "endpoints": ["127.0.0.1:1", "127.0.0.1:2"]}, r"chain\.agree: 3 is not between 1 and the 2"),
    ({"agree_wait_s": -1.0}, r"chain\.agree_wait_s"),
    ({"endpoints": []}, r"chain\.endpoints: empty"),
    ({"endpoints": ["127.0.0.1"]}, r"chain\.endpoints\[0\]: '127\.0\.0\.1' is not host:port"),
    ({"endpoints": ["127.0.0.1:1", "127.0.0.1:1"], "agree": 2}, r"chain\.endpoints: an endpoint is listed twice"),
])
def test_bad_agreement_and_endpoint_settings_name_the_field(table: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        section(plaintext_loopback_ok=True, **table)


def test_loopback_is_only_loopback() -> None:
    assert is_loopback("127.3.2.1:1") and is_loopback("localhost:1") and is_loopback("[::1]:1")
    assert not is_loopback("127.0.0.1.nip.io:1") and not is_loopback("192.168.1.1:1")


def test_daemon_builds_a_k_of_m_reader_only_when_asked(tmp_path) -> None:
    tls = make_dev_tls(tmp_path / "tls")
    one = section(endpoints=["a.example:9090", "b.example:9090"], tls_ca=str(tls.ca))
    with ChainClient(one.client_config()) as failover:
        assert chain_reader(one, failover) is failover
    two = section(endpoints=["a.example:9090", "b.example:9090"], tls_ca=str(tls.ca), agree=2)
    with ChainClient(two.client_config()) as failover:
        reader = chain_reader(two, failover)
        assert isinstance(reader, AgreeingReader) and reader.endpoints == two.endpoints
        assert all(c.config.tls_ca_pem == tls.ca_pem() for c in reader.clients)
        reader.close()


def test_shipped_party_config_pins_tls() -> None:
    chain = PartyConfig.load(TEMPLATES / "party.toml").chain
    assert chain.tls_ca and not chain.plaintext_loopback_ok
