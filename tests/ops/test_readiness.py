"""What "ready" means (appliance/runtime/readiness.py), each not-ready case against real parts: a dev
chain node, a closed port, unix sockets, certificates from `cluster init` and from a stranger's CA."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from appliance.cluster.bundle import init_cluster
from appliance.cluster.ca import ClusterCA
from appliance.runtime.readiness import all_of, cert_reasons, chain_reasons, socket_reasons
from chain_client.client import ChainClient, ClientConfig
from chain_node.genesis import Genesis
from chain_node.local import LocalNode

CHAIN_ID = "zrkeyring-ready-1"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    local = LocalNode(tmp_path_factory.mktemp("chain"), Genesis(chain_id=CHAIN_ID), block_time=0.1)
    local.start()
    yield local
    local.stop()


def _client(endpoint: str) -> ChainClient:
    return ChainClient(ClientConfig(endpoints=[endpoint], chain_id=CHAIN_ID, rpc_timeout_s=1.0))


def test_chain_with_the_configured_id_is_ready(node) -> None:
    with _client(node.endpoint) as chain:
        assert chain_reasons(chain.latest_block, CHAIN_ID, [node.endpoint]) == []


def test_wrong_chain_id_is_not_ready_and_names_both_ids(node) -> None:
    with _client(node.endpoint) as chain:
        (reason,) = chain_reasons(chain.latest_block, "diamond-1", [node.endpoint])
    assert f"reports chain id {CHAIN_ID!r}" in reason and "'diamond-1'" in reason and node.endpoint in reason


def test_unreachable_chain_is_not_ready() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{probe.getsockname()[1]}"
    with _client(endpoint) as chain:
        (reason,) = chain_reasons(chain.latest_block, CHAIN_ID, [endpoint])
    assert reason.startswith(f"chain unreachable at {endpoint}: ") and "\n" not in reason


def test_party_socket_absent_not_a_socket_and_present(tmp_path: Path) -> None:
    path = tmp_path / "party.sock"
    (reason,) = socket_reasons(path)
    assert f"party socket {path} does not exist" in reason
    path.write_text("")
    assert socket_reasons(path) == [f"party socket {path} is not a socket"]
    path.unlink()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert socket_reasons(path) == []


def test_certificates_from_cluster_init_are_ready_and_a_strangers_are_not(tmp_path: Path) -> None:
    init_cluster(tmp_path / "cluster", parties=3, threshold=2)
    party = tmp_path / "cluster" / "party-1"
    certs = {"this party's certificate": party / "party.pem",
             "party 2's certificate (roster)": tmp_path / "cluster" / "certs" / "party-2.pem"}
    assert cert_reasons(party / "ca.pem", certs) == []
    stranger = ClusterCA("another-cluster").issue_party(2, "127.0.0.1")
    (tmp_path / "party-2-other.pem").write_bytes(stranger.cert_pem)
    certs["party 2's certificate (roster)"] = tmp_path / "party-2-other.pem"
    (reason,) = cert_reasons(party / "ca.pem", certs)
    assert reason.startswith("party 2's certificate (roster)") and "not issued by the cluster CA" in reason
    (missing,) = cert_reasons(tmp_path / "nope.pem", certs)
    assert missing.startswith("cluster CA ") and "nope.pem" in missing


def test_all_of_keeps_every_reason_in_order() -> None:
    assert all_of(lambda: ["a"], lambda: [], lambda: ["b", "c"])() == ["a", "b", "c"]


def test_certificate_expiry_is_exported_for_every_readable_certificate(tmp_path: Path) -> None:
    """The expiry gauges the alerts ZrkeyringCertificateExpiresSoon/Expiring read: notAfter of the CA and
    of each party certificate; an unreadable file gets no series (a 0 would look expired)."""
    import time

    from appliance.mpc_party import metrics as party_metrics
    from appliance.runtime.readiness import cert_expiry

    bundle = init_cluster(tmp_path / "c", 2, 2, "127.0.0.1", 7501, days=40)
    party = bundle.party_dir(1)
    expiry = cert_expiry({"ca": party / "ca.pem", "party-1": party / "party.pem",
                          "party-2": party / "certs" / "party-2.pem", "party-9": party / "missing.pem"})
    assert set(expiry) == {"ca", "party-1", "party-2"}
    assert abs(expiry["party-2"] - (time.time() + 40 * 86400)) < 2 * 86400
    party_metrics.set_cert_expiry(expiry)
    value = party_metrics.REGISTRY.get_sample_value("zrkeyring_party_tls_cert_expiry_timestamp_seconds",
                                                    {"certificate": "party-2"})
    assert value == expiry["party-2"]
