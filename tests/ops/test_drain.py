"""Drain mode on a real local keyring: `zrkeyring drain on --wait` returns once both daemons of a host
say drained on /readyz; meanwhile that host starts no job and its party refuses new sessions (a key
request, which needs every party, waits); a restart keeps it drained; `drain off` resumes and the
request is fulfilled."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import JobFailed, KeygenJob, PartyClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    keyring = LocalKeyring(tmp_path_factory.mktemp("drain"), LocalSettings(default_btl=400)).setup().start()
    yield keyring
    keyring.close()


def drain(net: LocalKeyring, state: str, *extra: str) -> tuple[int, dict]:
    host = net.host(1)
    result = subprocess.run([sys.executable, "-m", "appliance.cli.main", "drain", state, "--config",
                             str(host.config("controller")), "--config", str(host.config("party")), *extra,
                             "--json"], cwd=ROOT, env=host.env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_drain_stops_new_work_reports_drained_and_resumes(net: LocalKeyring) -> None:
    code, report = drain(net, "on", "--wait", "40")
    assert code == 0, report
    assert [d["role"] for d in report["daemons"]] == ["controller", "party"]
    for daemon in report["daemons"]:
        assert daemon["switch"] == "on" and daemon["drained"], daemon
        assert any(r.startswith("drained: no ") for r in daemon["readyz"])

    net.stop_role(1, "party")  # a restart (an upgrade) while drained: it starts, and stays drained
    net.start_role(1, "party")
    net.wait_party_ready(1)
    code, report = drain(net, "on", "--wait", "40")
    assert code == 0 and all(d["drained"] for d in report["daemons"]), report
    assert "drain switch" in net.host(1).log("party").read_text()

    request_id = net.request_key("ed25519")
    client = PartyClient(net.host(1).socket)
    try:
        with pytest.raises(JobFailed, match="draining") as refused:
            client.run(KeygenJob(request_id, "KEY_TYPE_EDDSA_ED25519", (1, 2, 3), 2), timeout=10)
        assert refused.value.retryable
    finally:
        client.close()
    time.sleep(3)
    assert net.client.key_request(request_id).status.endswith("PENDING")  # party 1 takes no part

    code, report = drain(net, "off")
    assert code == 0 and all(d["switch"] == "off" for d in report["daemons"])
    net.wait_request("key", request_id, timeout_s=90)
    deadline = time.monotonic() + 20  # /readyz reasons are re-evaluated every few seconds
    while True:
        code, report = drain(net, "status")
        if code == 0 and not any(d["drained"] for d in report["daemons"]):
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.5)
