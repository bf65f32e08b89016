"""Monitoring assets: promtool accepts the rules and their unit tests pass; every metric that the alerts
and the dashboard query is one the daemons declare; fed every series a healthy party and a healthy
controller export (scraped from their real /metrics), no alert fires, and a real fault still fires."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import appliance.controller.metrics as controller_metrics
import appliance.mpc_party.metrics as party_metrics
from appliance.runtime.metrics_http import start_metrics_server

MONITORING = Path(__file__).resolve().parents[2] / "packaging" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool absent: install Debian package 'prometheus' (make deps does)"
)
METRIC_NAME = re.compile(r"\bzrkeyring_[a-z0-9_]+")


def _exported_sample_names() -> set[str]:
    """Every series name the metrics can produce (labelled metrics without children have no samples yet)."""
    suffixes = ("", "_total", "_bucket", "_count", "_sum", "_info")
    return {family.name + suffix for registry in (party_metrics.REGISTRY, controller_metrics.REGISTRY)
            for family in registry.collect() for suffix in suffixes}


STEPS = 70  # one-minute samples: longer than every alert's window and `for:`
FUTURE_TIMESTAMPS = {"zrkeyring_party_tls_cert_expiry_timestamp_seconds"}  # dates ahead, not "last seen"
JOBS = {"party": "zrkeyring-party", "controller": "zrkeyring-controller"}


def _make_healthy() -> None:
    """The state a healthy, idle party and controller report: peers answered, party reached, chain polled."""
    party_metrics.prepare_for_cluster([1, 2, 3], me=1)
    party_metrics.peer_contact(2, True)
    party_metrics.peer_contact(3, True)
    party_metrics.OT_PAIRS_BURNED.set(0)
    ten_years = time.time() + 3650 * 86400  # what `cluster init` issues
    party_metrics.set_cert_expiry({"ca": ten_years, "party-1": ten_years, "party-2": ten_years, "party-3": ten_years})
    controller_metrics.PARTY_UP.set(1)
    controller_metrics.CHAIN_HEIGHT.set(120)
    controller_metrics.CHAIN_PROCESSED_HEIGHT.set(120)
    controller_metrics.CHAIN_POLL_LAG.set(1.5)
    controller_metrics.CHAIN_LAST_POLL.set_to_current_time()
    controller_metrics.LAST_FULFILMENT.set_to_current_time()
    controller_metrics.BALANCE.set(10**12)  # a funded account: pays for many answers, owes nothing
    controller_metrics.ANSWERS_AFFORDABLE.set(10**6)
    controller_metrics.FEES_OWED.set(0)
    controller_metrics.ANSWERS_WAITING_FOR_FUNDS.set(0)
    for kind in controller_metrics.KINDS:
        controller_metrics.PENDING_REQUESTS.labels(kind).set(0)
        controller_metrics.REQUESTS_NEAR_TIMEOUT.labels(kind).set(0)
        controller_metrics.OLDEST_PENDING_AGE.labels(kind).set(0)


def _scrape(registry) -> list:
    """The samples of a daemon's real /metrics endpoint (its registry served by the daemon's server)."""
    server = start_metrics_server("127.0.0.1:0", registry)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _input_series(role: str, instance: str, samples: list, overrides: dict[str, float]) -> list[dict]:
    """promtool input series: every sample held steady (no counter moves), Unix-time gauges following
    promtool's clock (time() starts at 0), plus `up` = 1 for the target."""
    job = {"job": JOBS[role], "instance": instance}
    out = [{"series": _series("up", job), "values": f"1x{STEPS}"}]
    for sample in samples:
        value = overrides.get(sample.name, sample.value)
        if sample.name in FUTURE_TIMESTAMPS:  # a date ahead of now: keep its distance to promtool's clock
            values = f"{int(value - time.time())}x{STEPS}"
        elif sample.name.endswith("_timestamp_seconds") and sample.name not in overrides:
            values = f"0+60x{STEPS}"
        else:
            values = f"{value!r}x{STEPS}"
        out.append({"series": _series(sample.name, {**sample.labels, **job}), "values": values})
    return out


def _rule_test(tmp_path: Path, series: list[dict], expect: dict[str, list[dict]]) -> subprocess.CompletedProcess:
    alerts = re.findall(r"- alert: (\w+)", (MONITORING / "alerts.yml").read_text())
    cases = [{"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expect.get(name, [])}
             for name in alerts for minute in (5, 30, STEPS - 5)]
    test = {"rule_files": [str(MONITORING / "alerts.yml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}]}
    path = tmp_path / "generated_test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)


def _healthy_series(controller_overrides: dict[str, float] | None = None) -> list[dict]:
    _make_healthy()
    party, controller = _scrape(party_metrics.REGISTRY), _scrape(controller_metrics.REGISTRY)
    series = []
    for host in ("h1", "h2"):
        series += _input_series("party", f"{host}:9810", party, {})
        series += _input_series("controller", f"{host}:9811", controller, controller_overrides or {})
    return series


@needs_promtool
def test_no_alert_fires_on_every_series_of_healthy_daemons(tmp_path: Path) -> None:
    series = _healthy_series()
    names = {s["series"].split("{")[0] for s in series}
    assert "zrkeyring_controller_party_up" in names and "zrkeyring_party_peer_up" in names
    result = _rule_test(tmp_path, series, {})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@needs_promtool
def test_the_generated_rule_test_still_sees_a_real_fault(tmp_path: Path) -> None:
    """The same series with one controller unable to reach its party: that alert, and only it, fires."""
    series = _healthy_series({"zrkeyring_controller_party_up": 0})
    expect = {"ZrkeyringControllerCannotReachParty": [
        {"exp_labels": {"severity": "critical", "job": "zrkeyring-controller", "instance": f"{host}:9811"},
         "exp_annotations": {"summary": f"Controller on {host}:9811 cannot reach its local party daemon"}}
        for host in ("h1", "h2")]}
    result = _rule_test(tmp_path, series, expect)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(MONITORING / "alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=MONITORING,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_the_issue() -> None:
    text = (MONITORING / "alerts.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", text))
    for wanted in ("ZrkeyringKeyringStalled", "ZrkeyringPeerDown", "ZrkeyringHsmErrors",
                   "ZrkeyringRequestsNearTimeout", "ZrkeyringTxFailures"):
        assert wanted in alerts


@pytest.mark.parametrize("asset", ["alerts.yml", "grafana-dashboard.json"])
def test_queried_metrics_exist(asset: str) -> None:
    exported = _exported_sample_names()
    queried = set(METRIC_NAME.findall((MONITORING / asset).read_text()))
    assert queried, asset
    unknown = sorted(name for name in queried if name not in exported)
    assert not unknown, f"{asset} queries metrics no daemon exports: {unknown}"


def test_dashboard_is_grafana_json() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_dashboard_never_mixes_party_and_controller_targets() -> None:
    """One `$instance` over both daemons put controller series of party targets (and the reverse) on
    every panel. Each query now names the daemon it reads: `$party` for zrkeyring_party_*, `$controller`
    for zrkeyring_controller_*, both only for the series both export (HSM, build info)."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    names = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "instance" not in names
    assert "zrkeyring_party_" in names["party"]["definition"]
    assert "zrkeyring_controller_" in names["controller"]["definition"]
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert "$instance" not in expr, expr
            if "zrkeyring_controller_" in expr:
                assert 'instance=~"$controller"' in expr and "zrkeyring_party_" not in expr, expr
            elif "zrkeyring_party_" in expr:
                assert 'instance=~"$party"' in expr, expr
            else:
                assert 'instance=~"$party|$controller"' in expr, expr
