"""Monitoring assets: promtool accepts the rules and their unit tests pass; every metric that the alerts
and the dashboard query is one the daemons declare."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import appliance.controller.metrics  # noqa: F401 - registers the controller's metrics
import appliance.mpc_party.metrics  # noqa: F401 - registers the party's metrics

MONITORING = Path(__file__).resolve().parents[2] / "packaging" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool absent: install Debian package 'prometheus' (make deps does)"
)
METRIC_NAME = re.compile(r"\bzrkeyring_[a-z0-9_]+")


def _exported_sample_names() -> set[str]:
    """Every series name the metrics can produce (labelled metrics without children have no samples yet)."""
    suffixes = ("", "_total", "_bucket", "_count", "_sum", "_info")
    return {family.name + suffix for family in REGISTRY.collect() for suffix in suffixes}


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
