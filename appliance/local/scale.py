"""Timing for local keyrings at Zenrock's shapes (8 and 16 operators) on one small machine.

A local keyring runs every party daemon and controller of every "host" on the same cores: at 5-of-8
there are 16 daemon processes, at 11-of-16 there are 32, all sharing one chain node. A signing round
that takes milliseconds per party on its own host then waits for CPU behind every other party, so the
2-of-3 defaults of `LocalSettings` (2 s rounds, 15-block attempts at 0.2 s blocks) cut sessions that
would have finished. These settings keep the protocol the same and only give it the wall time the
shared machine needs; the block time is 1 s (as in the shipped-timing tests), so latencies also read
in blocks. Used by the scale benchmark (bench/bench_e2e_scale.py) and the 5-of-8 end-to-end test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from appliance.local.localnet import LocalSettings


@dataclass(frozen=True)
class ScaleTiming:
    """Wall-clock allowances for one size of local keyring (see the module docstring for why)."""

    round_timeout_s: float
    join_timeout_s: float
    attempt_blocks: int
    default_btl: int
    poll_interval_s: float


# Up to 8 parties a round finishes in a few seconds even with 16 processes on 2 cores; at 16 parties
# one DKLs23 keygen round is seconds of CPU for each of 16 processes, so rounds get half a minute and
# an attempt (60 blocks) outlasts a whole keygen. Controllers poll less often at 16 so that their
# ticks do not starve the sessions.
TIMINGS = ((5, ScaleTiming(2.0, 1.5, 15, 100, 0.1)),
           (8, ScaleTiming(6.0, 3.0, 20, 100, 0.2)),
           (16, ScaleTiming(30.0, 10.0, 60, 300, 0.5)))
BLOCK_TIME_S = 1.0


def timing_for(parties: int) -> ScaleTiming:
    """The allowances of the smallest table row that holds `parties` (the largest row beyond it)."""
    for size, timing in TIMINGS:
        if parties <= size:
            return timing
    return TIMINGS[-1][1]


def scale_settings(parties: int, threshold: int, **overrides: object) -> LocalSettings:
    """LocalSettings for a t-of-n local keyring with allowances for n parties on one machine."""
    timing = timing_for(parties)
    settings = LocalSettings(parties=parties, threshold=threshold, block_time=BLOCK_TIME_S,
                             round_timeout_s=timing.round_timeout_s, join_timeout_s=timing.join_timeout_s,
                             attempt_blocks=timing.attempt_blocks, default_btl=timing.default_btl,
                             poll_interval_s=timing.poll_interval_s)
    return replace(settings, **overrides)
