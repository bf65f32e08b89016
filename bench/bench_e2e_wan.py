"""End-to-end across a WAN (issue 17): 2-of-3 with every party host in its own network namespace and
50 ms round trips between parties.

Each party's daemon and controller run in a namespace of their own (appliance/local/netns.py: one
bridge, own addresses, the chain node on the root side of the bridge), with a one-way delay of
DELAY_MS between parties: netem where the kernel has it, else a TCP delay line in front of each
daemon (appliance/local/delayline.py; the figure's note says which). The same lab with no delay is
measured first in the same run, so the cost of the round trips reads as a difference.

    e2e.wan0.sign_latency_p50_s    the namespaces, no added delay (baseline of this run)
    e2e.wan50.sign_latency_p50_s   50 ms round trips (target <= one block + 4 round trips)
    e2e.wan50.keygen_latency_p50_s, e2e.wan50.ed25519.sign_latency_p50_s
    e2e.wan50.pool_sign_latency_p50_s  ECDSA with warm presignature pools (one online round across the
                                       WAN instead of DKLs23's rounds; bench_e2e's pool phase)

Timing as bench_e2e (0.2 s blocks, FULFILLED seen by a 20 ms watcher minus the request's block time).
Where namespaces cannot be made (not root, no CAP_NET_ADMIN, no `ip`), the module prints why and
gives no figures.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from appliance.local import netns
from appliance.local.localnet import ROOT, LocalKeyring, LocalSettings
from bench.bench_e2e import BLOCK_TIME_S, POOL_PER_KEY, _measure_pool
from bench.bench_e2e_scale import Plan, measure_shape
from bench.common import Result

DELAY_MS = 25.0  # one way: a 50 ms round trip between two parties
PARTIES, THRESHOLD = 3, 2
PLAN = Plan(keygens_per_type=2, signs_per_type=20, timeout_s=60.0)
ROUND_TRIPS = 4  # the target: one block plus this many round trips


def run() -> list[Result]:
    why = netns.unavailable()
    if why:
        print(f"   skipped: network namespaces unavailable here ({why})", flush=True)
        return []
    results: list[Result] = []
    for delay_ms, label, pools in ((0.0, "wan0", False), (DELAY_MS, "wan50", False), (DELAY_MS, "wan50", True)):
        with tempfile.TemporaryDirectory(prefix=f"zrkeyring-bench-{label}-") as tmp, \
                netns.NetLab(PARTIES, delay_ms=delay_ms) as lab:
            results += _measure(Path(tmp), lab, label, pools)
    return results


def _measure(root: Path, lab: netns.NetLab, label: str, pools: bool) -> list[Result]:
    settings = LocalSettings(parties=PARTIES, threshold=THRESHOLD, block_time=BLOCK_TIME_S,
                             party_hosts=tuple(lab.party_host(i) for i in range(1, PARTIES + 1)),
                             chain_host=lab.chain_host, listen_on_loopback=lab.needs_delay_line,
                             **({"presign_pool_max": 64, "presign_pool_per_key": POOL_PER_KEY} if pools else {}))
    measure = _pool_figures(label) if pools else None
    results = measure_shape(root, settings, label, PLAN, lab.prefix, _delay_lines(lab), measure)
    rtt = 2 * lab.delay_ms / 1000
    target = BLOCK_TIME_S + ROUND_TRIPS * rtt
    for result in results:
        result.note += (f"; parties in network namespaces, one-way delay {lab.delay_ms:g} ms by {lab.delay_mode}"
                        + (f"; target for signing <= {target:.2f} s" if rtt else ""))
    return [r for r in results if label == "wan50" or r.name.endswith(".sign_latency_p50_s")]


def _pool_figures(label: str) -> Callable[..., list[Result]]:
    """bench_e2e's pool phase on this keyring, its figures renamed e2e.<label>.pool_sign_latency_*."""
    def measure(bench, keyring) -> list[Result]:
        results = _measure_pool(bench, keyring)
        for result in results:
            result.name = result.name.replace("e2e.ecdsa.", f"e2e.{label}.")
        return results
    return measure


def _delay_lines(lab: netns.NetLab) -> Callable[[LocalKeyring], Callable[[], None]]:
    """Start one delay line per party in its namespace (when the lab needs them); return their stopper."""
    def start(keyring: LocalKeyring) -> Callable[[], None]:
        procs: list[subprocess.Popen] = []
        if lab.needs_delay_line:
            for host in keyring.hosts:
                port = keyring.party_port(host.index)
                log = (host.directory / "delayline.log").open("a")
                procs.append(subprocess.Popen(
                    [*lab.prefix(host.index), sys.executable, "-m", "appliance.local.delayline",
                     "--listen", f"{lab.party_host(host.index)}:{port}", "--to", f"127.0.0.1:{port}",
                     "--delay-ms", str(lab.delay_ms)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
                log.close()

        def stop() -> None:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        return stop
    return start
