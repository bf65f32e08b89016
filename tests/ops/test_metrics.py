"""Both daemons' metric modules import together and expose every metric the operations issue lists."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import appliance.controller.metrics as controller_metrics
import appliance.mpc_party.metrics as party_metrics
import appliance.runtime.metrics_http as shared_metrics
from appliance.runtime.errors import ConfigError

# The issue's list, mapped to metric family names (counters without `_total`, as the parser reports them).
REQUIRED = {
    "requests seen": ("zrkeyring_requests_seen", "counter"),
    "requests fulfilled": ("zrkeyring_requests_fulfilled", "counter"),
    "requests rejected": ("zrkeyring_requests_rejected", "counter"),
    "session duration": ("zrkeyring_party_session_duration_seconds", "histogram"),
    "sessions aborted": ("zrkeyring_party_sessions_aborted", "counter"),
    "HSM latency": ("zrkeyring_hsm_operation_duration_seconds", "histogram"),
    "HSM errors": ("zrkeyring_hsm_errors", "counter"),
    "chain poll lag": ("zrkeyring_chain_poll_lag_seconds", "gauge"),
    "chain height": ("zrkeyring_chain_height", "gauge"),
    "tx broadcasts": ("zrkeyring_tx_broadcasts", "counter"),
    "pending requests": ("zrkeyring_pending_requests", "gauge"),
    "peer reachability": ("zrkeyring_party_peer_up", "gauge"),
    "last fulfilment": ("zrkeyring_last_fulfilment_timestamp_seconds", "gauge"),
    "presignature pool": ("zrkeyring_party_presignature_pool_size", "gauge"),
    "build info": ("zrkeyring_build_info", "gauge"),  # an Info is exposed as a gauge in text format
}


def _families() -> dict[str, str]:
    text = generate_latest(REGISTRY).decode()
    return {
        f.name: f.type
        for f in text_string_to_metric_families(text)
        if f.name.startswith("zrkeyring_") and not f.name.endswith("_created")
    }


def _declared() -> list[MetricWrapperBase]:
    found = {}
    for module in (party_metrics, controller_metrics, shared_metrics):
        for value in vars(module).values():
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


def test_counters_end_in_total() -> None:
    text = generate_latest(REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        if family.type == "counter" and family.name.startswith("zrkeyring_"):
            assert all(s.name.endswith("_total") for s in family.samples), family.name


def test_labels_for_bounded_sets_are_pre_created() -> None:
    text = generate_latest(REGISTRY).decode()
    assert 'zrkeyring_tx_broadcasts_total{result="committed"} 0.0' in text
    assert 'zrkeyring_requests_seen_total{key_type="eddsa_ed25519",kind="signature"} 0.0' in text
    assert 'zrkeyring_build_info{python=' in text


def test_hsm_operation_counts_errors_and_times() -> None:
    before_errors, before_count = _errors(), _count()
    with shared_metrics.hsm_operation("random"):
        pass
    with pytest.raises(RuntimeError), shared_metrics.hsm_operation("random"):
        raise RuntimeError("token removed")
    assert _errors() == before_errors + 1
    assert _count() == before_count + 2
    with pytest.raises(ValueError), shared_metrics.hsm_operation("made_up"):
        pass


def _count() -> float:
    name = "zrkeyring_hsm_operation_duration_seconds_count"
    return REGISTRY.get_sample_value(name, {"operation": "random"})


def _errors() -> float:
    return REGISTRY.get_sample_value("zrkeyring_hsm_errors_total", {"operation": "random"})


def test_key_type_and_culprit_labels() -> None:
    assert controller_metrics.key_type_label("KEY_TYPE_BITCOIN_SECP256K1") == "bitcoin_secp256k1"
    assert controller_metrics.key_type_label("KEY_TYPE_SOMETHING_NEW") == "other"
    assert party_metrics.culprit_label(None) == "none"
    assert party_metrics.culprit_label(3) == "3"


def test_metrics_server_serves_parseable_text() -> None:
    server = shared_metrics.start_metrics_server("127.0.0.1:0")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"zrkeyring_chain_height", "zrkeyring_party_peer_up", "zrkeyring_build_info"} <= names
    assert "_created" not in text


@pytest.mark.parametrize("bad", ["9810", "host:", "host:99999", "host:port"])
def test_bad_address_names_the_field(bad: str) -> None:
    with pytest.raises(ConfigError, match="metrics.address"):
        shared_metrics.parse_address(bad)


def test_address_forms() -> None:
    assert shared_metrics.parse_address(":9810") == ("0.0.0.0", 9810)  # noqa: S104
    assert shared_metrics.parse_address("[::1]:9810") == ("::1", 9810)
