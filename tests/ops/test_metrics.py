"""Both daemons' metric modules import together; each registry exposes its own daemon's metrics only,
together they expose every metric the operations issue lists; the HTTP server routes /metrics, /healthz
and /readyz."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import appliance.controller.metrics as controller_metrics
import appliance.mpc_party.metrics as party_metrics
import appliance.runtime.metrics_http as shared_metrics
from appliance.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# The issue's list, mapped to metric family names (counters without `_total`, as the parser reports them).
REQUIRED = {
    "requests seen": ("zrkeyring_controller_requests_seen", "counter"),
    "requests fulfilled": ("zrkeyring_controller_requests_fulfilled", "counter"),
    "requests rejected": ("zrkeyring_controller_requests_rejected", "counter"),
    "session duration": ("zrkeyring_party_session_duration_seconds", "histogram"),
    "sessions aborted": ("zrkeyring_party_sessions_aborted", "counter"),
    "HSM latency": ("zrkeyring_hsm_operation_duration_seconds", "histogram"),
    "HSM errors": ("zrkeyring_hsm_errors", "counter"),
    "chain poll lag": ("zrkeyring_controller_chain_poll_lag_seconds", "gauge"),
    "chain height": ("zrkeyring_controller_chain_height", "gauge"),
    "tx broadcasts": ("zrkeyring_controller_tx_broadcasts", "counter"),
    "pending requests": ("zrkeyring_controller_pending_requests", "gauge"),
    "peer reachability": ("zrkeyring_party_peer_up", "gauge"),
    "last fulfilment": ("zrkeyring_controller_last_fulfilment_timestamp_seconds", "gauge"),
    "build info": ("zrkeyring_build_info", "gauge"),  # an Info is exposed as a gauge in text format
}


REGISTRIES = {"party": party_metrics.REGISTRY, "controller": controller_metrics.REGISTRY}
SHARED = {"zrkeyring_build_info", "zrkeyring_hsm_operation_duration_seconds", "zrkeyring_hsm_errors"}


def _families(registry=None) -> dict[str, str]:
    found: dict[str, str] = {}
    for reg in [registry] if registry is not None else REGISTRIES.values():
        text = generate_latest(reg).decode()
        found.update({
            f.name: f.type
            for f in text_string_to_metric_families(text)
            if f.name.startswith("zrkeyring_") and not f.name.endswith("_created")
        })
    return found


def _declared(module=None) -> list[MetricWrapperBase]:
    found = {}
    for mod in [module] if module is not None else (party_metrics, controller_metrics):
        for value in vars(mod).values():
            if isinstance(value, MetricWrapperBase):
                found[id(value)] = value
    return list(found.values())


@pytest.mark.parametrize("what", sorted(REQUIRED))
def test_issue_metric_is_exposed(what: str) -> None:
    name, kind = REQUIRED[what]
    assert _families().get(name) == kind, f"{what}: {name} ({kind}) missing from /metrics output"


def test_every_declared_metric_is_exposed_and_follows_conventions() -> None:
    families = _families()
    for metric in _declared():
        name = metric._name + ("_info" if metric._type == "info" else "")
        assert name.startswith("zrkeyring_"), name
        assert name in families, f"{name} declared but not in generate_latest() output"
        if metric._type == "histogram":
            assert name.endswith("_seconds"), f"histogram {name} must be a _seconds duration"
        if "unix time" in metric._documentation.lower() or "age" in name.split("_"):
            assert name.endswith("_seconds"), f"{name} is a time and must be in seconds"
        for label in metric._labelnames:
            assert label not in {"request_id", "key_id", "session_id", "address"}, f"{name}: unbounded label"


@pytest.mark.parametrize("role", sorted(REGISTRIES))
def test_counters_end_in_total(role: str) -> None:
    text = generate_latest(REGISTRIES[role]).decode()
    for family in text_string_to_metric_families(text):
        if family.type == "counter" and family.name.startswith("zrkeyring_"):
            assert all(s.name.endswith("_total") for s in family.samples), family.name


def test_each_daemon_exports_only_its_own_metrics() -> None:
    party, controller = _families(party_metrics.REGISTRY), _families(controller_metrics.REGISTRY)
    assert set(party) & set(controller) == SHARED
    assert "zrkeyring_controller_party_up" not in party
    assert "zrkeyring_controller_chain_height" not in party
    assert not any(name.startswith("zrkeyring_party_") for name in controller)
    assert all(name.startswith("zrkeyring_controller_") for name in set(controller) - SHARED), controller
    for metric in _declared(party_metrics):
        assert metric._name + ("_info" if metric._type == "info" else "") in party
    for metric in _declared(controller_metrics):
        assert metric._name in controller


def test_labels_for_bounded_sets_are_pre_created() -> None:
    text = generate_latest(controller_metrics.REGISTRY).decode()
    assert 'zrkeyring_controller_tx_broadcasts_total{result="committed"} 0.0' in text
    # the series exists before any event (other tests in this process may have counted some already)
    assert 'zrkeyring_controller_requests_seen_total{key_type="eddsa_ed25519",kind="signature"} ' in text
    assert 'zrkeyring_controller_requests_rejected_total{key_type="other",kind="key",reason="timeout"} 0.0' in text
    assert 'zrkeyring_build_info{python=' in text
    party = generate_latest(party_metrics.REGISTRY).decode()
    assert 'zrkeyring_party_sessions_aborted_total{culprit="none",protocol="dkls23",reason="timeout"} 0.0' in party
    assert 'zrkeyring_party_chain_disagreements_total{query="key",refused="true"} 0.0' in party


def test_per_party_series_are_created_for_the_roster() -> None:
    party_metrics.prepare_for_cluster([1, 2, 3, 7], me=1)
    text = generate_latest(party_metrics.REGISTRY).decode()
    assert 'zrkeyring_party_ot_pair_burns_total{peer="7"} 0.0' in text
    assert 'zrkeyring_party_sessions_aborted_total{culprit="3",protocol="frost-ed25519",reason="timeout"} 0.0' in text
    assert 'peer="1"' not in text and 'culprit="1"' not in text  # never blames or pairs with itself
    assert 'zrkeyring_party_peer_up{peer="7"}' not in text  # 0 would read as "down" before any contact


def test_hsm_operation_counts_errors_and_times_in_its_own_daemon_only() -> None:
    before = {role: (_errors(reg), _count(reg)) for role, reg in REGISTRIES.items()}
    with party_metrics.hsm_operation("random"):
        pass
    with pytest.raises(RuntimeError), party_metrics.hsm_operation("random"):
        raise RuntimeError("token removed")
    assert _errors(party_metrics.REGISTRY) == before["party"][0] + 1
    assert _count(party_metrics.REGISTRY) == before["party"][1] + 2
    assert (_errors(controller_metrics.REGISTRY), _count(controller_metrics.REGISTRY)) == before["controller"]
    with pytest.raises(ValueError), controller_metrics.hsm_operation("made_up"):
        pass


def test_metered_hsm_uses_the_daemons_meters() -> None:
    class Token:
        def random(self, n: int) -> bytes:
            return bytes(n)

    before = _count(controller_metrics.REGISTRY)
    metered = shared_metrics.MeteredHsm.wrap(Token(), controller_metrics.HSM)
    assert metered.random(4) == bytes(4)
    assert shared_metrics.MeteredHsm.wrap(metered, controller_metrics.HSM) is metered
    assert _count(controller_metrics.REGISTRY) == before + 1


def _count(registry) -> float:
    name = "zrkeyring_hsm_operation_duration_seconds_count"
    return registry.get_sample_value(name, {"operation": "random"})


def _errors(registry) -> float:
    return registry.get_sample_value("zrkeyring_hsm_errors_total", {"operation": "random"})


def test_key_type_and_culprit_labels() -> None:
    assert controller_metrics.key_type_label("KEY_TYPE_BITCOIN_SECP256K1") == "bitcoin_secp256k1"
    assert controller_metrics.key_type_label("KEY_TYPE_SOMETHING_NEW") == "other"
    assert party_metrics.culprit_label(None) == "none"
    assert party_metrics.culprit_label(3) == "3"


def _get(port: int, path: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_server_serves_parseable_text_of_its_daemon_only() -> None:
    server = shared_metrics.start_metrics_server("127.0.0.1:0", controller_metrics.REGISTRY)
    try:
        _status, _kind, text = _get(server.server_address[1], "/metrics")
    finally:
        server.shutdown()
        server.server_close()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"zrkeyring_controller_chain_height", "zrkeyring_build_info"} <= names
    assert not any(name.startswith("zrkeyring_party_") for name in names)
    assert "_created" not in text


def test_health_endpoints_and_only_metrics_on_metrics() -> None:
    health = shared_metrics.Health()
    server = shared_metrics.start_metrics_server("127.0.0.1:0", party_metrics.REGISTRY, health=health)
    port = server.server_address[1]
    try:
        assert _get(port, "/healthz")[::2] == (200, "alive\n")
        assert _get(port, "/readyz")[::2] == (503, "not ready: starting\n")
        health.update(["chain unreachable: connection refused", "party socket /run/x.sock does not exist"])
        status, kind, body = _get(port, "/readyz", accept="application/json")
        assert (status, kind) == (503, "application/json")
        assert json.loads(body) == {"ready": False, "reasons": ["chain unreachable: connection refused",
                                                                  "party socket /run/x.sock does not exist"]}
        health.update([])
        assert _get(port, "/readyz")[::2] == (200, "ready\n")
        assert json.loads(_get(port, "/readyz?format=json")[2]) == {"ready": True, "reasons": []}
        for path in ("/", "/healthz/x", "/favicon.ico", "/metrics/../x"):
            status, _kind, body = _get(port, path)
            assert status == 404 and "zrkeyring_" not in body, path
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("bad", ["9810", "host:", "host:99999", "host:port"])
def test_bad_address_names_the_field(bad: str) -> None:
    with pytest.raises(ConfigError, match="metrics.address"):
        shared_metrics.parse_address(bad)


def test_address_forms() -> None:
    assert shared_metrics.parse_address(":9810") == ("0.0.0.0", 9810)  # noqa: S104
    assert shared_metrics.parse_address("[::1]:9810") == ("::1", 9810)


def test_presignature_pool_series_are_registered_per_key_type() -> None:
    """Pools exist (mpc_party/presign.py): the size gauge and the hit/miss counter are real series, one
    per key type (and outcome) from the start, so a dashboard shows 0 rather than nothing."""
    families = _families()
    assert party_metrics.PRESIGNATURE_POOL_NAME in families
    assert "zrkeyring_party_presignature_pool_signs" in families
    for label in party_metrics.POOL_KEY_TYPES:
        assert party_metrics.REGISTRY.get_sample_value(party_metrics.PRESIGNATURE_POOL_NAME,
                                                       {"key_type": label}) is not None
