"""Earliest-deadline-first scheduling of the controller's jobs, with explicit load shedding.

Why: a first-in first-out worker pool keeps working past capacity on jobs whose requests have already
expired (or will before their answer can be included), so past capacity goodput collapses instead of
levelling off. Here every job carries its request's deadline (`mpc_btl`, a chain height). Workers
always take the job with the earliest deadline that can still finish: a job is started only if the
blocks left before its deadline cover the time a job of its kind takes (an estimate learnt from recent
jobs) plus a posting margin (the answer must still be included before the chain times the request
out). A job that cannot is shed, never started: it is counted by reason
(`zrkeyring_controller_jobs_shed_total`) and summarised in the log at most once per interval.

The chain height is known only at each controller tick; `BlockClock` extrapolates it between ticks
from the block times the chain reports, so a worker that picks a job a second after the tick still
judges it against the right height.

Everything here is pure logic over an injected clock (`now`), so it is unit-tested without threads
or timing; `JobScheduler` adds the worker threads.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("zrkeyring.controller")

# Why a job was not started (the `reason` label of zrkeyring_controller_jobs_shed_total).
SHED_DEADLINE = "deadline"  # too few blocks left to run the job and include its answer
SHED_QUEUE_FULL = "queue_full"  # the queue holds `max_queued` jobs; the latest deadline goes
SHED_STALE = "stale"  # the caller's own check said the job is no longer worth running (attempt passed)
SHED_EXPIRING_ANSWER = "answer_expiring"  # a ready answer whose request expires before a tx could land
SHED_ADMISSION = "admission"  # the keyring-wide rule (`admitted`): the backlog ahead fills its lifetime
SHED_REASONS = (SHED_DEADLINE, SHED_QUEUE_FULL, SHED_STALE, SHED_EXPIRING_ANSWER, SHED_ADMISSION)

DEFAULT_JOB_ESTIMATE_S = 0.5  # until a job of the kind has been measured
RECENT_SAMPLES = 50  # job durations (and answer delays) the estimates are taken from
START_QUANTILE = 0.9  # a job starts only if one this slow would still finish in time
NO_DEADLINE = 2**63  # sorts after every real height


class Recent:
    """The last RECENT_SAMPLES values of a measure, with their mean and a high quantile.

    Why a quantile: a job started with the mean duration to spare misses its deadline whenever it
    runs slower than average, which under load is half the time; under 3x overload 16 % of signing
    sessions ended too late to be posted, their work wasted (docs/performance.md)."""

    def __init__(self) -> None:
        self._values: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._sorted: list[float] | None = None  # sorted once per new sample: read for every plan

    def add(self, value: float) -> None:
        self._values.append(value)
        self._sorted = None

    def mean(self, default: float) -> float:
        return sum(self._values) / len(self._values) if self._values else default

    def quantile(self, q: float, default: float) -> float:
        if not self._values:
            return default
        if self._sorted is None:
            self._sorted = sorted(self._values)
        return self._sorted[min(len(self._sorted) - 1, int(q * len(self._sorted)))]


@dataclass
class BlockClock:
    """The chain height now, extrapolated from the last block seen and the observed block interval."""

    block_s: float = 1.0  # seconds per block: measured from consecutive observations
    height: int = 0
    seen_at: float = 0.0  # `now()` when `height` was observed
    _first: tuple[int, float] | None = None

    def observe(self, height: int, block_unix: float | None, now: float) -> None:
        """Record the latest height (and its block's time when the chain gives it)."""
        stamp = block_unix if block_unix is not None else now
        if self._first is None:
            self._first = (height, stamp)
        elif height > self._first[0] + 4:  # a span of blocks, so one late block does not skew it
            first_height, first_stamp = self._first
            measured = (stamp - first_stamp) / (height - first_height)
            if measured > 0:
                self.block_s = measured
            self._first = (height, stamp)
        if height != self.height:
            self.height, self.seen_at = height, now

    def now_height(self, now: float) -> int:
        """The height the chain has probably reached by `now` (never less than the last seen)."""
        return self.height + max(0, int((now - self.seen_at) / self.block_s))

    def blocks(self, seconds: float) -> int:
        """Whole blocks that `seconds` of work spans."""
        return math.ceil(max(0.0, seconds) / self.block_s)


BLOCK_READ_MARGIN_S = 0.015  # a block is stamped when the node starts it; readable a few ms later


def next_poll_wait(interval_s: float, elapsed_s: float, last_block_unix: float | None, block_s: float,
                   now_unix: float, margin_s: float = BLOCK_READ_MARGIN_S) -> float:
    """Seconds until the controller's next tick: the poll interval after this tick began, or sooner, just
    after the next block is due (`last_block_unix` plus whole block intervals, plus `margin_s`).

    Why: a request is seen at the first tick after its block; polling on a fixed interval saw it half an
    interval late on average (50 ms at the default 0.1 s), and where a signing session takes most of a
    block (parties 50 ms apart) that decides whether its answer makes the next block or the one after."""
    wait = max(0.0, interval_s - elapsed_s)
    if last_block_unix is None or block_s <= 0:
        return wait
    due = last_block_unix + block_s + margin_s - now_unix
    if due < 0:  # the block after the last one seen is late (or just missed): the one after that
        due += block_s * math.ceil(-due / block_s)
    return min(wait, due)


@dataclass(order=True)
class _Queued:
    deadline: int
    tiebreak: int  # the request id: every controller orders equal deadlines alike
    seq: int
    kind: str = field(compare=False)
    item: Any = field(compare=False)


class ShedLog:
    """Counts shed jobs by (kind, reason) and logs a summary at most once per `interval_s`, so a
    backlog in the hundreds makes one line a minute, not one a job."""

    def __init__(self, interval_s: float = 60.0, on_shed: Callable[[str, str], None] | None = None) -> None:
        self.interval_s = interval_s
        self.on_shed = on_shed or (lambda _kind, _reason: None)
        self._pending: dict[tuple[str, str], int] = {}
        self._last = -math.inf
        self.lines = 0  # summaries logged (tests read it)
        self._lock = threading.Lock()

    def shed(self, kind: str, reason: str, now: float) -> None:
        self.on_shed(kind, reason)
        with self._lock:
            self._pending[(kind, reason)] = self._pending.get((kind, reason), 0) + 1
        self.flush(now)

    def flush(self, now: float) -> None:
        """Log what was shed since the last line, if the interval has passed."""
        with self._lock:
            if not self._pending or now - self._last < self.interval_s:
                return
            counts, self._pending, self._last = self._pending, {}, now
            self.lines += 1
        parts = ", ".join(f"{n} {kind} ({reason})" for (kind, reason), n in sorted(counts.items()))
        log.warning("load shed: %s jobs not started since the last report: %s (the chain times those "
                    "requests out; zrkeyring_controller_jobs_shed_total)", sum(counts.values()), parts)


class EdfQueue:
    """The pure part: jobs ordered by deadline, each judged feasible or shed when a worker asks."""

    def __init__(self, clock: BlockClock, shed: ShedLog, margin_blocks: int = 2, max_queued: int = 4096,
                 max_job_blocks: int = 0, workers: int = 1) -> None:
        self.clock, self.shed_log = clock, shed
        self.margin_blocks, self.max_queued = margin_blocks, max_queued
        # The estimate counts at most this many blocks (0: no cap). It is learnt from jobs that ran, so
        # without a cap one slow spell could make every job look infeasible, none would run, and the
        # estimate would never come down again.
        self.max_job_blocks = max_job_blocks
        self.workers = max(1, workers)  # jobs running at once: the queue ahead drains this many at a time
        self._heap: list[_Queued] = []
        self._seq = itertools.count()
        self._durations: dict[str, Recent] = {}
        # Blocks an answer of ours took from its job's end to its tx's inclusion (the controller measures
        # it, `observe_answer_blocks`): under load a tx waits for the one in flight and spans blocks, so
        # the fixed `margin_blocks` alone let jobs start that ended in time but could not be posted.
        self._answer_blocks = Recent()

    def __len__(self) -> int:
        return len(self._heap)

    def estimate_s(self, kind: str) -> float:
        """How long a job of `kind` may take: START_QUANTILE of the recent ones (capped, below)."""
        recent = self._durations.get(kind)
        return DEFAULT_JOB_ESTIMATE_S if recent is None else recent.quantile(START_QUANTILE, DEFAULT_JOB_ESTIMATE_S)

    def mean_s(self, kind: str) -> float:
        """How long a job of `kind` takes on average (what a queue of them ahead drains at)."""
        recent = self._durations.get(kind)
        return DEFAULT_JOB_ESTIMATE_S if recent is None else recent.mean(DEFAULT_JOB_ESTIMATE_S)

    def observe_duration(self, kind: str, seconds: float) -> None:
        """A job of `kind` took `seconds`: it joins the samples the feasibility test reads."""
        self._durations.setdefault(kind, Recent()).add(seconds)

    def observe_answer_blocks(self, blocks: float) -> None:
        """One of our answers was included `blocks` after its job ended."""
        self._answer_blocks.add(blocks)

    def post_blocks(self) -> int:
        """Blocks to leave for posting: `margin_blocks`, or more when our answers take longer, capped as
        the job estimate is: learnt only from answers that were posted, an uncapped figure from one
        stall (a chain node down, txs re-sent) could doom every request, and with no job run no new
        sample would ever bring it down."""
        measured = math.ceil(self._answer_blocks.quantile(START_QUANTILE, 0.0))
        if self.max_job_blocks:
            measured = min(measured, self.max_job_blocks)
        return max(self.margin_blocks, measured)

    def feasible(self, kind: str, deadline: int, now: float, ahead: int = 0) -> bool:
        """Can a job of `kind`, behind `ahead` queued jobs, finish and have its answer included by
        `deadline`? The jobs ahead take `ahead / workers` average job lengths before it starts; the job
        itself gets a slow one's time (START_QUANTILE), then the posting time. A deadline of 0 means the
        chain reported none: always feasible."""
        if not deadline:
            return True
        estimate, mean = self.estimate_s(kind), self.mean_s(kind)
        if self.max_job_blocks:
            cap = self.max_job_blocks * self.clock.block_s
            estimate, mean = min(estimate, cap), min(mean, cap)
        needed = self.clock.blocks(estimate + mean * ahead / self.workers) + self.post_blocks()
        return deadline - self.clock.now_height(now) >= needed

    def push(self, kind: str, deadline: int, item: Any, now: float, tiebreak: int = 0) -> list[Any]:
        """Queue a job; returns the jobs shed by doing so: this one if it cannot finish in time, or
        the latest-deadline job when the queue overflows `max_queued` (possibly this one).

        Equal deadlines go by `tiebreak` (the request id), then arrival: the parties of a quorum, each
        scheduling alone, then take a backlog's jobs in the same order and meet in the same sessions.
        Admission counts the queued jobs due no later than this one: under overload the queue holds
        only what can still be done in time, so what is admitted starts early in its attempt, when the
        quorum partner (scheduling alike) starts it too."""
        key = (deadline or NO_DEADLINE, tiebreak)
        ahead = sum(1 for queued in self._heap if (queued.deadline, queued.tiebreak) <= key)
        if not self.feasible(kind, deadline, now, ahead):
            self.shed_log.shed(kind, SHED_DEADLINE, now)
            return [item]
        entry = _Queued(deadline or NO_DEADLINE, tiebreak, next(self._seq), kind, item)
        heapq.heappush(self._heap, entry)
        if len(self._heap) <= self.max_queued:
            return []
        latest = max(self._heap)
        self._heap.remove(latest)
        heapq.heapify(self._heap)
        self.shed_log.shed(latest.kind, SHED_QUEUE_FULL, now)
        return [latest.item]

    def pop(self, now: float, check: Callable[[Any], str | None] | None = None,
            ) -> tuple[tuple[str, Any] | None, list[Any]]:
        """The earliest-deadline job still worth starting as (kind, item), and the jobs shed on the way
        (in deadline order): infeasible ones, and those `check` names a reason against."""
        shed: list[Any] = []
        while self._heap:
            entry = heapq.heappop(self._heap)
            deadline = 0 if entry.deadline == NO_DEADLINE else entry.deadline
            reason = None if self.feasible(entry.kind, deadline, now) else SHED_DEADLINE
            if reason is None and check is not None and check(entry.item):
                reason = SHED_STALE
            if reason is None:
                return (entry.kind, entry.item), shed
            self.shed_log.shed(entry.kind, reason, now)
            shed.append(entry.item)
        return None, shed


class JobScheduler:
    """`workers` threads that run queued jobs earliest deadline first (`EdfQueue`).

    `run(item)` does the job and returns False when it failed (its duration is then not learnt);
    `on_shed(item)` is told of every job shed (so the caller can forget it
    and plan the request again later); `check(item)` may name a reason to drop a job just before it
    starts (the caller's own staleness test), returning None to let it run.
    """

    def __init__(self, workers: int, run: Callable[[Any], bool | None], on_shed: Callable[[Any], None],
                 queue: EdfQueue, check: Callable[[Any], str | None] | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.queue, self._run, self._on_shed, self._check, self._now = queue, run, on_shed, check, now
        queue.workers = workers
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"job-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def observe(self, height: int, block_unix: float | None) -> None:
        with self._cond:
            self.queue.clock.observe(height, block_unix, self._now())
            self.queue.shed_log.flush(self._now())

    def height_now(self) -> int:
        """The chain height probably reached by now (BlockClock): under load a tick takes several blocks,
        and the height read at its start is stale by the time it posts."""
        with self._cond:
            return self.queue.clock.now_height(self._now())

    def could_finish(self, kind: str, deadline: int) -> bool:
        """Could a job of `kind` started now (nothing queued ahead) finish and be posted by `deadline`?"""
        with self._cond:
            return self.queue.feasible(kind, deadline, self._now())

    def observe_answer(self, blocks: float) -> None:
        """One of our answers was included `blocks` after its job ended (EdfQueue.post_blocks)."""
        with self._cond:
            self.queue.observe_answer_blocks(blocks)

    def submit(self, kind: str, deadline: int, item: Any, tiebreak: int = 0) -> bool:
        """Queue `item`; False if it was shed at once (`on_shed` has been told)."""
        with self._cond:
            shed = self.queue.push(kind, deadline, item, self._now(), tiebreak)
            self._cond.notify()
        for dropped in shed:
            self._on_shed(dropped)
        return not any(dropped is item for dropped in shed)

    def queued(self) -> int:
        with self._cond:
            return len(self.queue)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not len(self.queue):
                    self._cond.wait()
                if self._stopping:
                    return
                picked, shed = self.queue.pop(self._now(), self._check)
            for dropped in shed:
                self._on_shed(dropped)
            if picked is None:
                continue
            kind, item = picked
            started = self._now()
            try:
                ok = self._run(item) is not False
            except Exception:  # a worker must outlive any job; the caller logs its own failures
                log.exception("job crashed")
                ok = False
            if ok:  # a failed job's time (a partner that never came) teaches nothing
                with self._cond:
                    self.queue.observe_duration(kind, self._now() - started)

    def shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()  # a running job ends within the caller's own job timeout


@dataclass(frozen=True)
class OpenSign:
    """What the admission rule reads of one open signature request: chain data only."""

    request_id: int
    deadline: int  # mpc_btl (0: the chain reported none)
    needs_session: bool  # False when a signature is already on chain (only posts remain) or a parent


def admitted(requests: list[OpenSign], height: int, per_block: float, margin_blocks: int) -> set[int]:
    """The signature requests the keyring takes on at `height` when it serves `per_block` a block.

    Why: each controller's own queue sheds by its own estimate and its own backlog, so past capacity
    the members of a quorum shed different jobs and a session one of them starts waits for a partner
    that dropped it. This rule reads only what every controller reads alike at one height (the open
    requests, their ids and deadlines) and one shared setting, so every party takes the same
    decision: the requests go in deadline order (ties by id), and one is taken when the keyring, at
    `per_block` sessions a block on the requests already taken before it, reaches it with
    `margin_blocks` left for its answer to be included. The others are doomed by the backlog ahead
    of them and are left to time out, by every party alike. `per_block` <= 0 turns the rule off (all
    admitted). Requests that need no session count for nothing and are always admitted.
    """
    if per_block <= 0:
        return {r.request_id for r in requests}
    taken = 0
    out: set[int] = set()
    for r in sorted(requests, key=lambda r: (r.deadline or NO_DEADLINE, r.request_id)):
        if not r.needs_session or not r.deadline:
            out.add(r.request_id)
            continue
        # blocks until the keyring has done this one too (whole blocks: `<=` an integer is `ceil <=`)
        if (taken + 1) / per_block <= r.deadline - height - margin_blocks:
            out.add(r.request_id)
            taken += 1
    return out
