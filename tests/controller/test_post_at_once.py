"""An answer is posted as soon as it is ready, not at the next block-aligned tick (Controller `_pause`).

Ticks come just after each block; a signature ready mid-block waited for the next tick and missed
the block it could have made. Across 50 ms round trips a DKLs23 signature ready 130 ms into a 200 ms
block was posted 70 ms later and landed a block late (e2e.wan50.sign_latency_p50_s 0.405 s, one
block plus the watcher's lag over the target). A job thread that journals an answer while no tx is
in flight now wakes the loop; while one is, the answer waits for it as before (one tx in flight).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from coincurve import PrivateKey

from appliance.controller.journal import Journal, State
from appliance.controller.service import Controller
from appliance.mpc_party.local_api import SignJob

ECDSA = "KEY_TYPE_ECDSA_SECP256K1"


def _loop() -> SimpleNamespace:
    loop = SimpleNamespace(_wake=threading.Event())
    loop.pause = lambda stop, seconds: Controller._pause(loop, stop, seconds)
    return loop


def test_a_pause_ends_as_soon_as_an_answer_is_ready_or_the_loop_stops() -> None:
    loop, stop = _loop(), threading.Event()
    threading.Timer(0.05, loop._wake.set).start()
    started = time.monotonic()
    loop.pause(stop, 30.0)
    assert time.monotonic() - started < 10.0 and not loop._wake.is_set()  # woken, and the wake used up
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    loop.pause(stop, 30.0)
    assert time.monotonic() - started < 10.0
    started = time.monotonic()
    loop.pause(threading.Event(), 0.01)  # nothing happens: the plain wait
    assert time.monotonic() - started < 10.0


def _controller(tmp_path, signature: bytes) -> Controller:
    c = Controller.__new__(Controller)
    c.config = SimpleNamespace(controller=SimpleNamespace(job_timeout_s=5.0))
    c.party = SimpleNamespace(run=lambda job, timeout: signature)
    c.journal = Journal(tmp_path / "journal.sqlite")
    c.scheduler = SimpleNamespace(height_now=lambda: 50)
    c._lock, c._wake, c._job_answered = threading.Lock(), threading.Event(), {}
    return c


def test_a_job_answer_wakes_the_loop_only_when_no_tx_is_in_flight(tmp_path) -> None:
    private = PrivateKey()
    public = private.public_key.format()
    data = bytes(range(32))
    signature = private.sign_recoverable(data, hasher=None)[:64]
    c = _controller(tmp_path, signature)
    job = SignJob(7, ECDSA, 1, public, data, (1, 2), 0)
    c.journal.observe("sign", 7)
    assert c._run_job_once(job, ECDSA, (public, data))
    assert c.journal.get("sign", 7).state is State.RESULT and c._wake.is_set()
    assert c._job_answered[("sign", 7)] == 50  # where the scheduler's posting delay is measured from
    c._wake.clear()
    c.journal.observe("sign", 8)
    c.journal.record_result("sign", 8, signature)
    c.journal.record_tx("ab" * 32, b"tx", 3, 60, [("sign", 8)])  # a tx in flight: the answer waits for it
    c.journal.observe("sign", 9)
    assert c._run_job_once(SignJob(9, ECDSA, 1, public, data, (1, 2), 0), ECDSA, (public, data))
    assert c.journal.get("sign", 9).state is State.RESULT and not c._wake.is_set()
