"""The controller's earliest-deadline-first scheduler, its load shedding and the post plan.

Pure logic over an injected clock: no sleeps, no timing (figures come from bench/bench_e2e.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pytest

from appliance.controller import metrics
from appliance.controller.outbox import answers_to_post
from appliance.controller.scheduler import (
    BLOCK_READ_MARGIN_S,
    SHED_DEADLINE,
    SHED_QUEUE_FULL,
    SHED_STALE,
    BlockClock,
    EdfQueue,
    JobScheduler,
    ShedLog,
    next_poll_wait,
)


def clock_at(height: int, now: float = 0.0, block_s: float = 0.2) -> BlockClock:
    clock = BlockClock(block_s=block_s)
    clock.observe(height, None, now)
    return clock


def queue(height: int = 100, margin: int = 2, **kw) -> tuple[EdfQueue, list[tuple[str, str]]]:
    shed: list[tuple[str, str]] = []
    return EdfQueue(clock_at(height), ShedLog(60.0, lambda k, r: shed.append((k, r))), margin, **kw), shed


def test_jobs_come_out_earliest_deadline_first_ties_in_arrival_order() -> None:
    q, shed = queue()
    for name, deadline in (("late", 150), ("soon", 120), ("mid", 130), ("soon-2", 120)):
        assert q.push("signature", deadline, name, now=0.0) == []
    order = [q.pop(0.0)[0][1] for _ in range(4)]
    assert order == ["soon", "soon-2", "mid", "late"] and shed == []
    assert q.pop(0.0) == (None, [])


def test_a_job_that_cannot_finish_before_its_deadline_is_never_started() -> None:
    """0.5 s estimate at 0.2 s blocks = 3 blocks, plus a 2-block posting margin: 5 blocks needed."""
    q, shed = queue(height=100)
    assert q.push("signature", 104, "too-late", now=0.0) == ["too-late"]
    assert q.push("signature", 105, "just-in-time", now=0.0) == []
    assert q.pop(0.0)[0] == ("signature", "just-in-time")
    assert shed == [("signature", SHED_DEADLINE)]


def test_jobs_queued_while_the_chain_moved_on_are_shed_when_a_worker_reaches_them() -> None:
    """The clock extrapolates the height between controller ticks: 1 s later is 5 blocks later."""
    q, shed = queue(height=100)
    q.push("signature", 107, "a", now=0.0)
    q.push("signature", 200, "b", now=0.0)
    picked, dropped = q.pop(now=1.0)
    assert picked == ("signature", "b") and dropped == ["a"]
    assert shed == [("signature", SHED_DEADLINE)]


def test_the_estimate_follows_measured_job_durations() -> None:
    q, _ = queue(height=100)
    assert q.feasible("signature", 105, 0.0)
    for _ in range(30):
        q.observe_duration("signature", 2.0)  # 10 blocks of work
    assert not q.feasible("signature", 105, 0.0) and q.feasible("signature", 112, 0.0)
    assert q.feasible("key", 105, 0.0)  # each kind has its own estimate


def test_no_deadline_means_always_feasible_and_last() -> None:
    q, _ = queue(height=10**6)
    q.push("key", 0, "none", now=0.0)
    q.push("key", 10**6 + 50, "some", now=0.0)
    assert [q.pop(0.0)[0][1] for _ in range(2)] == ["some", "none"]


def test_an_overflowing_queue_sheds_the_latest_deadline() -> None:
    q, shed = queue(max_queued=2)
    assert q.push("signature", 130, "a", now=0.0) == []
    assert q.push("signature", 150, "b", now=0.0) == []
    assert q.push("signature", 120, "c", now=0.0) == ["b"]
    assert q.push("signature", 160, "d", now=0.0) == ["d"]
    assert shed == [("signature", SHED_QUEUE_FULL)] * 2 and len(q) == 2


def test_the_callers_check_sheds_stale_jobs() -> None:
    q, shed = queue()
    q.push("signature", 120, "stale", now=0.0)
    q.push("signature", 130, "fresh", now=0.0)
    picked, dropped = q.pop(0.0, check=lambda item: "attempt passed" if item == "stale" else None)
    assert picked == ("signature", "fresh") and dropped == ["stale"]
    assert shed == [("signature", SHED_STALE)]


def test_block_clock_measures_the_block_interval_over_a_span() -> None:
    clock = BlockClock()
    for height in range(10, 21):
        clock.observe(height, 1000.0 + 0.25 * height, now=0.25 * height)
    assert abs(clock.block_s - 0.25) < 1e-9
    assert clock.now_height(0.25 * 20 + 1.0) == 24 and clock.blocks(0.6) == 3


def test_shedding_is_counted_every_time_and_logged_once_per_interval(caplog) -> None:
    counted: list[tuple[str, str]] = []
    shed_log = ShedLog(60.0, lambda k, r: counted.append((k, r)))
    with caplog.at_level(logging.WARNING, logger="zrkeyring.controller"):
        for i in range(50):
            shed_log.shed("signature", SHED_DEADLINE, now=float(i))  # 0..49 s: one line, at the first
        shed_log.shed("key", SHED_QUEUE_FULL, now=59.0)
        shed_log.flush(now=59.9)
        assert shed_log.lines == 1
        shed_log.flush(now=60.0)  # the interval has passed: one line with what accumulated
    assert len(counted) == 51 and shed_log.lines == 2
    lines = [r.getMessage() for r in caplog.records if "load shed" in r.getMessage()]
    assert len(lines) == 2
    assert "1 signature (deadline)" in lines[0]
    assert "49 signature (deadline)" in lines[1] and "1 key (queue_full)" in lines[1]


def test_shed_jobs_are_counted_in_the_controller_metric() -> None:
    series = metrics.JOBS_SHED.labels("signature", "deadline")
    before = series._value.get()
    metrics.job_shed("signature", "deadline")
    assert series._value.get() == before + 1


def test_job_scheduler_runs_jobs_and_reports_shed_ones() -> None:
    """The thread wrapper: workers run what is feasible; a submit that cannot finish is reported."""
    ran, shed, done = [], [], threading.Event()
    q, _ = queue(height=100)

    def run(item: str) -> bool:
        ran.append(item)
        if len(ran) == 2:
            done.set()
        return True

    scheduler = JobScheduler(2, run, shed.append, q, now=lambda: 0.0)
    try:
        assert not scheduler.submit("signature", 101, "hopeless")
        assert scheduler.submit("signature", 130, "x") and scheduler.submit("signature", 140, "y")
        assert done.wait(30)
    finally:
        scheduler.shutdown()
    assert sorted(ran) == ["x", "y"] and shed == ["hopeless"]


@dataclass(frozen=True)
class _Entry:
    kind: str
    request_id: int


def test_post_plan_leaves_out_expiring_answers_and_bounds_the_tx_timeout() -> None:
    """An answer whose request times out before a tx can land would fail the whole tx on zrChain; the
    tx's timeout height is at most its earliest deadline, so it lands with every answer valid or not at all."""
    ready = [_Entry("sign", 1), _Entry("sign", 2), _Entry("key", 3), _Entry("sign", 4)]
    deadlines = {("sign", 1): 101, ("sign", 2): 130, ("key", 3): 0, ("sign", 4): 104}
    plan = answers_to_post(ready, deadlines, height=100, margin=2, tx_timeout_blocks=10)
    assert [e.request_id for e in plan.answers] == [2, 3, 4]
    assert [e.request_id for e in plan.expiring] == [1]
    assert plan.timeout_height(plan.answers) == 104
    assert plan.timeout_height(plan.answers[:2]) == 110


def test_equal_deadlines_go_by_request_id_on_every_controller() -> None:
    """Requests created in one block share mpc_btl; each controller orders them by id, whatever the
    order it happened to see them in, so the parties of a quorum reach the same session together."""
    first, _ = queue()
    second, _ = queue()
    for q, arrival in ((first, (7, 3, 5)), (second, (5, 7, 3))):
        for request_id in arrival:
            q.push("signature", 140, request_id, now=0.0, tiebreak=request_id)
    assert [first.pop(0.0)[0][1] for _ in range(3)] == [second.pop(0.0)[0][1] for _ in range(3)] == [3, 5, 7]


def test_a_slow_spell_cannot_make_every_job_infeasible_for_good() -> None:
    """The estimate is capped: learnt only from jobs that ran, it could otherwise shut the queue."""
    shed: list = []
    q = EdfQueue(clock_at(100), ShedLog(60.0, lambda k, r: shed.append(r)), margin_blocks=2, max_job_blocks=7)
    for _ in range(50):
        q.observe_duration("signature", 30.0)  # 150 blocks of work
    assert q.feasible("signature", 109, 0.0) and not q.feasible("signature", 108, 0.0)


def test_admission_counts_the_jobs_queued_ahead() -> None:
    """Past capacity the queue holds only what the workers can still finish in time: a job that would
    wait behind too many earlier ones is shed at once, not started late (when its quorum partner,
    scheduling alike, has long given up on it)."""
    q, shed = queue(height=100)
    q.workers = 2
    admitted = [i for i in range(10) if q.push("signature", 110, i, now=0.0, tiebreak=i) == []]
    assert admitted == [0, 1, 2, 3, 4]  # 0.5 s each, two at a time, 2 blocks' margin, 10 blocks left
    assert shed == [("signature", SHED_DEADLINE)] * 5
    assert q.push("signature", 140, "later", now=0.0) == []  # a later deadline still fits


def test_height_now_runs_ahead_of_the_last_height_seen() -> None:
    """The poster judges expiring answers by the height its tx will meet: a tick that takes three blocks
    under load must not post answers (or a timeout height) that the chain has already passed."""
    clock = {"now": 0.0}
    q, _ = queue(height=100)
    scheduler = JobScheduler(1, lambda item: True, lambda item: None, q, now=lambda: clock["now"])
    try:
        for height in range(100, 110):  # one block per 0.2 s
            clock["now"] = (height - 100) * 0.2
            scheduler.observe(height, None)
        assert scheduler.height_now() == 109
        clock["now"] += 0.65  # three blocks and a bit later, no new height seen yet
        assert scheduler.height_now() == 112
    finally:
        scheduler.shutdown()


def test_the_next_poll_comes_just_after_the_next_block_is_due() -> None:
    """The controller ticks just after a block is due instead of on a fixed phase (a request was seen
    half a poll interval late on average), and never later than the poll interval."""
    block = 100.0  # the chain's time of the last block seen
    # 80 ms after a 0.2 s block began, a 0.1 s interval would poll at +180 ms; the next block is due at
    # +200 ms: 20 ms of interval are left, the block comes later, so the interval rules
    assert next_poll_wait(0.1, 0.08, block, 0.2, block + 0.08) == pytest.approx(0.02)
    # 150 ms after: the interval would wait 100 ms, the block is due in 50 ms (plus the read margin)
    assert next_poll_wait(0.1, 0.0, block, 0.2, block + 0.15) == pytest.approx(0.05 + BLOCK_READ_MARGIN_S)
    # the next block is late (we are past its due time): the one after, or the interval, whichever first
    assert next_poll_wait(1.0, 0.0, block, 0.2, block + 0.25) == pytest.approx(0.15 + BLOCK_READ_MARGIN_S)
    assert next_poll_wait(0.1, 0.0, block, 0.2, block + 0.25) == pytest.approx(0.1)
    # no block time yet, or no interval measured: the plain interval
    assert next_poll_wait(0.1, 0.03, None, 0.2, 0.0) == pytest.approx(0.07)
    assert next_poll_wait(0.1, 0.03, block, 0.0, block) == pytest.approx(0.07)
    assert next_poll_wait(0.1, 0.5, block, 0.2, block + 0.1) == 0.0  # a tick longer than the interval


def test_a_job_starts_only_if_a_slow_one_would_finish_and_its_answer_be_posted() -> None:
    """Regression (issue 17): under 3x overload 16 % of signing sessions were started with the mean job
    time to spare and ended too late to be posted. A job now needs a slow job's time (the 90th
    percentile of recent ones) and the blocks our answers have recently taken to be included."""
    q, _ = queue(height=100)
    for _ in range(45):
        q.observe_duration("signature", 0.4)  # 2 blocks
    for _ in range(5):
        q.observe_duration("signature", 1.6)  # 8 blocks: one job in ten
    assert q.estimate_s("signature") == 1.6 and abs(q.mean_s("signature") - 0.52) < 1e-9
    assert not q.feasible("signature", 109, 0.0) and q.feasible("signature", 110, 0.0)  # 8 + 2
    for _ in range(10):
        q.observe_answer_blocks(5)  # txs wait for the one in flight, then take blocks to land
    assert q.post_blocks() == 5
    assert not q.feasible("signature", 112, 0.0) and q.feasible("signature", 113, 0.0)  # 8 + 5


def test_jobs_queued_ahead_count_at_their_average_length() -> None:
    q, _ = queue(height=100)
    q.workers = 2
    for duration in (0.2, 0.2, 0.2, 1.0):
        q.observe_duration("signature", duration)  # mean 0.4 s; 90th percentile 1.0 s
    # 1.0 s for the job itself + 4 jobs ahead / 2 workers x 0.4 s = 1.8 s = 9 blocks, + 2 to post
    assert not q.feasible("signature", 110, 0.0, ahead=4) and q.feasible("signature", 111, 0.0, ahead=4)


def test_a_stall_in_posting_cannot_doom_every_job_for_good() -> None:
    """The posting delay is learnt only from answers that were posted: capped like the job estimate,
    one stall (txs re-sent after a chain outage) cannot make every job infeasible with no way back."""
    shed: list = []
    q = EdfQueue(clock_at(100), ShedLog(60.0, lambda k, r: shed.append(r)), margin_blocks=2, max_job_blocks=7)
    for _ in range(50):
        q.observe_answer_blocks(80)
    assert q.post_blocks() == 7
    assert q.feasible("signature", 110, 0.0)  # 0.5 s = 3 blocks of job, 7 to post
