"""Shared pieces for benchmark modules: the result record and small timing helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Result:
    """One benchmark figure. `peer` and `ratio` (ours/peer) are set when a reference peer was measured."""

    name: str
    ours: float
    unit: str
    peer: float | None = None
    ratio: float | None = None
    note: str = ""

    def with_peer(self, peer: float | None) -> Result:
        if peer:
            self.peer = round(peer, 4)
            self.ratio = round(self.ours / peer, 4)
        return self

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def mean_ms(func: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Mean wall-clock milliseconds of `func` over `runs` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        func()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.fmean(samples)


def rate_per_s(func: Callable[[], object], seconds: float = 2.0) -> float:
    """Calls per second of `func`, run repeatedly for about `seconds`."""
    func()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        func()
        count += 1
    return count / elapsed
