"""End-to-end at Zenrock's shapes (issue 17): a 5-of-8 keyring (and 11-of-16 on request), real processes.

The same local keyring and clock as bench_e2e (chain node, one SoftHSM token, party daemon and
controller per party, mTLS between parties, TLS to the chain), with n parties on this machine and the
allowances of `appliance.local.scale` (1 s blocks, longer rounds: every process of every "host" shares
these cores). Latency is measured as in bench_e2e: FULFILLED seen by a 20 ms watcher minus the block
time of the request's block.

    e2e.NxT.keygen_latency_p50_s        ECDSA and Ed25519 key requests one at a time
    e2e.NxT.sign_latency_p50_s          ECDSA signature requests one at a time (target <= 2 blocks)
    e2e.NxT.ed25519.sign_latency_p50_s  the same for Ed25519 (FROST)

Shapes: ZRKEYRING_BENCH_SCALE_SHAPES (default "8x5"; "8x5,16x11" adds Zenrock's planned 16 operators:
32 daemons on 2 cores, about ten minutes more, so not part of the default `make bench`). Every
signature counted was accepted by the chain node, which verifies ECDSA against the data and Ed25519
over the message before it marks a request FULFILLED.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.local.scale import scale_settings
from bench.bench_e2e import Bench, Watcher, _quantile
from bench.common import Result


@dataclass(frozen=True)
class Plan:
    """How many requests of each kind one shape gets (fewer at 16: each keygen costs minutes of CPU)."""

    keygens_per_type: int
    signs_per_type: int
    timeout_s: float


PLANS = {8: Plan(keygens_per_type=2, signs_per_type=10, timeout_s=120.0),
         16: Plan(keygens_per_type=1, signs_per_type=5, timeout_s=600.0)}
SHAPES = [tuple(int(x) for x in s.split("x"))
          for s in os.environ.get("ZRKEYRING_BENCH_SCALE_SHAPES", "8x5").split(",") if s]


def plan_for(parties: int) -> Plan:
    return PLANS[min((size for size in PLANS if size >= parties), default=max(PLANS))]


def run() -> list[Result]:
    results: list[Result] = []
    for parties, threshold in SHAPES:
        with tempfile.TemporaryDirectory(prefix=f"zrkeyring-bench-{parties}x{threshold}-") as tmp:
            results += measure_shape(Path(tmp), scale_settings(parties, threshold))
    return results


def measure_shape(root: Path, settings: LocalSettings, label: str = "", plan: Plan | None = None,
                  launch_prefix: Callable[[int], list[str]] | None = None,
                  before_start: Callable[[LocalKeyring], Callable[[], None]] | None = None,
                  measure: Callable[[Bench, LocalKeyring], list[Result]] | None = None) -> list[Result]:
    """Keygen and signing latency of one freshly started keyring; `label` names the figures
    (default "NxT"). `launch_prefix` places each party's daemons (LocalKeyring); `before_start` runs
    after set-up, before the daemons start, and returns what undoes it (the WAN bench's delay lines);
    `measure` replaces the keygen-and-sign figures (the WAN bench's pool phase)."""
    label = label or f"{settings.parties}x{settings.threshold}"
    started = time.monotonic()
    keyring = LocalKeyring(root, settings, launch_prefix).setup()
    watcher: Watcher | None = None
    undo: Callable[[], None] = lambda: None  # noqa: E731
    try:
        if before_start is not None:
            undo = before_start(keyring)
        keyring.start()
        ready_s = time.monotonic() - started
        assert keyring.node is not None and keyring.client is not None
        watcher = Watcher(keyring.node.endpoint, keyring.client.config.chain_id, keyring.keyring,
                          keyring.client.config.tls_ca_pem).start()
        bench = Bench(keyring, watcher)
        if measure is not None:
            return measure(bench, keyring)
        return _latencies(bench, settings, label, ready_s, plan or plan_for(settings.parties))
    finally:
        if watcher is not None:
            watcher.stop()
        keyring.close()
        undo()


def _latencies(bench: Bench, settings: LocalSettings, label: str, ready_s: float, plan: Plan) -> list[Result]:
    block = settings.block_time
    how = (f"{settings.threshold}-of-{settings.parties}, all {settings.parties * 2} daemons on this machine, "
           f"{block} s blocks, rounds {settings.round_timeout_s} s, controller poll {settings.poll_interval_s} s; "
           f"keyring set up and live in {ready_s:.0f} s")
    keygen, keys = bench.keygen(("ecdsa", "ed25519") * plan.keygens_per_type, timeout_s=plan.timeout_s)
    results = [Result(f"e2e.{label}.keygen_latency_p50_s", _quantile(keygen, 0.5), "s",
                      note=f"{len(keygen)}/{2 * plan.keygens_per_type} key requests one at a time, max "
                           f"{max(keygen, default=0):.2f} s; {how}")]
    for key_type, name in (("ecdsa", f"e2e.{label}.sign_latency_p50_s"),
                           ("ed25519", f"e2e.{label}.ed25519.sign_latency_p50_s")):
        lat = bench.one_at_a_time(lambda t=key_type: bench.submit_signs(keys[t], t, 1)[0], plan.signs_per_type,
                                  timeout_s=plan.timeout_s)
        p50 = _quantile(lat, 0.5)
        results.append(Result(name, p50, "s",
                              note=f"{len(lat)}/{plan.signs_per_type} {key_type} requests one at a time: p50 "
                                   f"{p50 / block:.2f} blocks, max {max(lat, default=0):.2f} s; {how}"))
    load = f"; load average at the end {_loadavg()}"
    for result in results:
        result.note += load
    return results


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"
