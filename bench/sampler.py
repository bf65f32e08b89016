"""A sampling profiler for the daemons of a local keyring (profiling aid for bench_e2e, never shipped).

    python -m bench.sampler party run --config ...      (what LocalKeyring.start(party_entry=...) runs)

runs `zrkeyring` as usual with one extra thread that, every SAMPLE_S, reads every other thread's stack
(sys._current_frames) and counts, per thread-name prefix, the innermost frame of our own code and
what it was calling. At exit (SIGTERM ends the daemons cleanly) it writes the counts to
$ZRKEYRING_SAMPLER_OUT. Sampling wall-clock stacks shows where a job's time goes, waiting included
(gRPC, HSM worker, fsync, locks), which a CPU profiler of one thread would not.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys
import threading
import time

SAMPLE_S = 0.005
OURS = ("appliance", "chain_client", "chain_node")
DEPTH = 3  # our innermost frames named per sample (function < caller < its caller)


def _where(frame) -> tuple[str, str]:
    """(our innermost function, the library call it is in) for one stack."""
    leaf = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"
    ours: list[str] = []
    while frame is not None and len(ours) < DEPTH:
        path = frame.f_code.co_filename
        if any(f"/{name}/" in path for name in OURS) and "/proto_gen/" not in path:
            ours.append(f"{path.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        frame = frame.f_back
    return (" < ".join(ours) or "(other)"), leaf


def main() -> int:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                ours, leaf = _where(frame)
                prefix = names.get(ident, "?").rstrip("0123456789_-")
                counts[prefix][f"{ours} <- {leaf}"] += 1

    def dump() -> None:
        stop.set()
        out = os.environ.get("ZRKEYRING_SAMPLER_OUT")
        if out:
            with open(out, "w") as f:
                json.dump({"sample_s": SAMPLE_S, "threads": {k: v.most_common(60) for k, v in counts.items()},
                           "at": time.time()}, f, indent=1)

    threading.Thread(target=sample, name="sampler", daemon=True).start()
    atexit.register(dump)
    from appliance.cli.main import main as zrkeyring

    return zrkeyring()


if __name__ == "__main__":
    sys.exit(main())
