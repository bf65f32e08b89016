"""DKLs23 benchmarks, all parties in one process, messages through their byte encodings; side by side
in the same run with the WebAssembly reference peer (bench/peer_dkls23.py).

    ecdsa_dkls23.dkg_ms.NxT          keygen: generic DKG + 128 verified base OTs per ordered pair
    ecdsa_dkls23.sign_ms.NxT         t signers: presign (rounds 1-2) + round 3 + combine (verified)
    ecdsa_dkls23.online_sign_ms.NxT  round 3 + combine only, from a presignature made beforehand
    ecdsa_dkls23.pair_resetup_ms     one pairwise OT re-setup (both directions of one pair, 2 parties)
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from appliance.mpc_party.protocols.dkls23 import local
from bench import peer_dkls23
from bench.common import Result, mean_ms

# Zenrock runs 8 operators and plans 16. 8x5 is measured by default (the peer needs about a minute
# for one DKG and five signatures); ZRKEYRING_BENCH_LARGE=1 adds 16x11, whose one peer DKG alone took
# over ten minutes of a loaded 2-core host, which would take `make bench` past 25 minutes.
SHAPES = [(3, 2), (5, 3), (8, 5)] + ([(16, 11)] if os.environ.get("ZRKEYRING_BENCH_LARGE") == "1" else [])
LARGE_PEER_TIMEOUT_S = 3000.0  # per large shape: one DKG of the peer at 16x11 takes minutes
LARGE = 8  # from this many parties on, one DKG run and fewer signatures
DKG_RUNS = 5
SIGN_RUNS = 20
LARGE_SIGN_RUNS = 5
ONLINE_RUNS = 100
RESETUP_RUNS = 5


def _online_ms(keys, t: int, runs: int = ONLINE_RUNS) -> float:
    presigs = [local.presign(keys[:t]) for _ in range(runs)]
    digests = [hashlib.sha256(b"online %d" % i).digest() for i in range(runs)]
    start = time.perf_counter()
    for ps, d in zip(presigs, digests, strict=True):
        local.sign(ps, d)
    return (time.perf_counter() - start) * 1000 / runs


def _peer_row(n: int, t: int) -> dict:
    """The peer's figures for one shape, measured right before ours: the host's load drifts over the
    minutes a large shape takes, and a ratio means something only for figures taken close together."""
    large = n >= LARGE
    rows, why = peer_dkls23.measure([(n, t)], timeout=LARGE_PEER_TIMEOUT_S if large else 900,
                                    runs=(1, LARGE_SIGN_RUNS) if large else None)
    if why:
        print(f"   reference peer: {why}", flush=True)
    return rows.get((n, t), {})


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run() -> list[Result]:
    digest = hashlib.sha256(b"bench").digest()
    results = []
    for n, t in SHAPES:
        shape = f"{n}x{t}"
        row = _peer_row(n, t)
        large = n >= LARGE
        if large:  # one DKG, timed, whose keys the signing runs use
            started = time.perf_counter()
            keys = local.run_dkg(n, t)
            dkg = (time.perf_counter() - started) * 1000
        else:
            dkg = mean_ms(lambda n=n, t=t: local.run_dkg(n, t), DKG_RUNS)
            keys = local.run_dkg(n, t)
        runs = LARGE_SIGN_RUNS if large else SIGN_RUNS
        sign = mean_ms(lambda keys=keys, t=t: local.sign_now(keys[:t], digest), runs, warmup=0 if large else 1)
        online = _online_ms(keys, t, LARGE_SIGN_RUNS if large else ONLINE_RUNS)
        load = f"; peer measured just before; load average after {_loadavg()}"
        results += [
            Result(f"ecdsa_dkls23.dkg_ms.{shape}", round(dkg, 3), "ms",
                   note=f"{t}-of-{n} keygen, all {n} parties in one process{load}").with_peer(row.get("dkg_ms")),
            Result(f"ecdsa_dkls23.sign_ms.{shape}", round(sign, 3), "ms",
                   note=f"{t} signers, presign + sign, verified{load}").with_peer(row.get("sign_ms")),
            Result(f"ecdsa_dkls23.online_sign_ms.{shape}", round(online, 3), "ms",
                   note="round 3 + combine from a presignature"),
        ]
        if (n, t) == SHAPES[0]:
            resetup = mean_ms(lambda keys=keys: local.resetup_pair(keys[0], keys[1]), RESETUP_RUNS)
            results.append(Result("ecdsa_dkls23.pair_resetup_ms", round(resetup, 3), "ms",
                                  note="pairwise OT re-setup after a burned pair, both parties in one process"))
    return results
