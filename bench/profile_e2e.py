"""Where a signature's time goes: the e2e keyring under a steady closed-loop ECDSA load, every party
and controller run under bench/sampler.py (a wall-clock stack sampler), then the samples summed.

    python -m bench.profile_e2e [SECONDS] [WINDOW]

Prints, per daemon role and thread group, the share of samples in each of our functions (and the
library call below it). Not part of `make bench` (it is a profiling aid; its figures are shares,
not timings). docs/performance.md quotes its output.
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from pathlib import Path

from appliance.local.localnet import LocalKeyring, LocalSettings
from bench.bench_e2e import BLOCK_TIME_S, Bench, Watcher

MODULE = "bench.sampler"


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 30.0
    window = int(argv[1]) if len(argv) > 1 else 8
    with tempfile.TemporaryDirectory(prefix="zrkeyring-profile-") as tmp:
        root = Path(tmp)
        keyring = LocalKeyring(root, LocalSettings(block_time=BLOCK_TIME_S)).setup()
        outs = {(h.index, role): root / f"samples-{role}-{h.index}.json" for h in keyring.hosts
                for role in ("party", "controller")}
        watcher = None
        try:
            keyring.start(party_entry={h.index: (MODULE, {"ZRKEYRING_SAMPLER_OUT": str(outs[(h.index, "party")])})
                                       for h in keyring.hosts})
            for h in keyring.hosts:  # restart the controllers under the sampler too
                keyring.stop_role(h.index, "controller")
                keyring.start_role(h.index, "controller", module=MODULE,
                                   env={"ZRKEYRING_SAMPLER_OUT": str(outs[(h.index, "controller")])})
            assert keyring.node is not None
            watcher = Watcher(keyring.node.endpoint, keyring.client.config.chain_id, keyring.keyring,
                              keyring.client.config.tls_ca_pem).start()
            bench = Bench(keyring, watcher)
            item = bench.submit_keys("ecdsa")
            item.done.wait(60)
            key_id = keyring.key_for_request(item.request_id).id
            rate = bench.closed_loop(key_id, "ecdsa", window, seconds)
            print(f"closed loop, {window} open: {rate:.2f} ECDSA signatures/s over {seconds:.0f} s")
        finally:
            if watcher is not None:
                watcher.stop()
            keyring.close()
        _report(outs)
    return 0


def _report(outs: dict[tuple[int, str], Path]) -> None:
    for role in ("party", "controller"):
        totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for (_, r), path in outs.items():
            if r != role or not path.exists():
                continue
            for group, rows in json.loads(path.read_text())["threads"].items():
                for where, n in rows:
                    totals[group][where] += n
        for group, counter in sorted(totals.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(counter.values())
            print(f"== {role} threads '{group}': {total} samples")
            for where, n in counter.most_common(12):
                print(f"   {100 * n / total:5.1f}%  {where}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
