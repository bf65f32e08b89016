"""The HSM session lost for real (descriptors exhausted, session closed underneath): the link reports
not ready, reconnects with backoff by itself, and jobs succeed again without a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from appliance.hsm import token as token_module
from appliance.hsm.softhsm import write_hsm_config
from tests.hsm.conftest import connect

ROOT = Path(__file__).resolve().parents[2]


def test_descriptor_exhaustion_makes_hsm_unready_then_it_recovers_by_itself(softhsm_token, tmp_path):
    with connect(softhsm_token) as hsm:
        hsm.provision()
    config = write_hsm_config(softhsm_token, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tests.hsm.fd_exhaustion", str(config)], cwd=ROOT,
                          env=softhsm_token.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["before"]
    assert summary["during"] == ["HsmUnavailable", "HsmUnavailable"]  # clear error, not a crash
    assert summary["ready_during"] is False
    assert summary["ready_after"] is True and summary["health"]["recoveries"] == 1
    assert summary["after"]
    assert softhsm_token.user_pin not in proc.stdout + proc.stderr


def test_session_closed_underneath_is_reopened_and_logged_in_again(softhsm_token):
    with connect(softhsm_token) as hsm:
        hsm.provision()
        assert len(hsm.sign_identity(b"one")) == 64
        link = hsm._link  # noqa: SLF001 - the test reaches under the facade to break the session

        def close_all(link):
            link.session.close()  # the session handle is now invalid; the cached object is stale

        link.worker.call(close_all, link)
        assert len(hsm.sign_identity(b"two")) == 64 and hsm.ready
        generation = link.worker.generation
        link.worker.call(link.worker.reinitialize)  # every session of the process dies
        assert link.worker.generation > generation
        assert len(hsm.sign_chain(bytes(32))) == 64 and hsm.ready


def test_failed_reinitialisation_is_retried_not_permanent(softhsm_token):
    """The first finding's end state: C_Initialize failed once, python-pkcs11 left the module finalized,
    and every later call said "not initialized". Reproduce the end state for real (C_Finalize)."""
    with connect(softhsm_token) as hsm:
        hsm.provision()
        link = hsm._link  # noqa: SLF001
        link.worker.call(lambda: link.worker.lib.finalize())
        assert len(hsm.sign_identity(b"again")) == 64 and hsm.ready


def test_background_reconnect_backs_off_and_stops_on_close(softhsm_token, monkeypatch):
    monkeypatch.setattr(token_module, "RECOVER_FIRST_S", 0.05)
    monkeypatch.setattr(token_module, "RECOVER_MAX_S", 0.2)
    hsm = connect(softhsm_token)
    hsm.provision()
    link = hsm._link  # noqa: SLF001
    attempts = []
    real_find = token_module.find_token

    def unavailable(worker, label):  # the one allowed injection: the token "gone" for a while
        attempts.append(time.monotonic())
        if len(attempts) <= 6:
            raise token_module.TokenNotFoundError("injected: token gone")
        return real_find(worker, label)

    link.worker.call(link.drop_session)
    monkeypatch.setattr(token_module, "find_token", unavailable)
    try:
        hsm.sign_identity(b"x")
        raise AssertionError("expected HsmUnavailable")
    except token_module.HsmUnavailable as exc:
        assert "reconnecting" in str(exc)
    assert not hsm.ready and "token gone" in hsm.health()["error"]
    deadline = time.monotonic() + 10
    while not hsm.ready and time.monotonic() < deadline:
        time.sleep(0.02)
    # Each attempt tries twice (run() retries once): the job's, then background ones after 0.05,
    # 0.1 and 0.2 s (doubling, capped at RECOVER_MAX_S); the fourth attempt finds the token.
    assert hsm.ready and len(attempts) == 7
    starts = attempts[0::2]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09 and gaps[2] >= 0.19 and gaps[2] < 1.0, gaps
    assert hsm.health()["recoveries"] == 1
    hsm.close()
    assert link._recover_timer is None  # noqa: SLF001
