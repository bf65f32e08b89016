"""`e2e.party_down.keygen_fulfilled_ratio`: keys made with one party down (issue 14), 2-of-3.

A whole local keyring (real chain node, SoftHSM parties, daemons, controllers); party 2 is SIGKILLed
before the first request and stays down. Key requests of every type go on chain; each is made by the
live parties 1 and 3 (the keygen jobs name P = (1, 3), as a controller with a liveness view sends
them; the bench sends them itself to the live parties' local sockets, so the figure measures the
party side alone), confirmed, committed, and posted by the controllers. The ratio counts requests
FULFILLED with the key the parties returned; it must be 1.0. Also the time from the request's
inclusion to FULFILLED, median.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.local.localnet import KEY_TYPE_NAMES, LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import KeygenJob, PartyClient
from bench.common import Result

DOWN, LIVE = 2, (1, 3)
ROUNDS = 2  # requests per key type
TIMEOUT_S = 120.0


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="zrkeyring-bench-party-down-") as tmp:
        keyring = LocalKeyring(Path(tmp), LocalSettings(default_btl=300)).setup().start()
        try:
            return _measure(keyring)
        finally:
            keyring.close()


def _keygen(keyring: LocalKeyring, request_id: int, key_type: str) -> set[bytes]:
    job = KeygenJob(request_id, key_type, LIVE, 2, 0)

    def one(index: int) -> bytes:
        client = PartyClient(keyring.host(index).socket)
        try:
            return client.run(job, timeout=TIMEOUT_S)
        finally:
            client.close()

    with ThreadPoolExecutor(len(LIVE)) as pool:
        return set(pool.map(one, LIVE))


def _measure(keyring: LocalKeyring) -> list[Result]:
    keyring.stop_role(DOWN, "controller")
    keyring.stop_role(DOWN, "party", kill=True)
    fulfilled, latencies, total = 0, [], 0
    for _ in range(ROUNDS):
        for name, key_type in KEY_TYPE_NAMES.items():
            total += 1
            started = time.monotonic()
            request_id = keyring.request_key(name)
            try:
                keys = _keygen(keyring, request_id, key_type)
                req = keyring.wait_request("key", request_id, timeout_s=TIMEOUT_S)
            except Exception as exc:  # counted as not fulfilled
                print(f"   key request {request_id} ({name}) not fulfilled: {exc}", flush=True)
                continue
            if len(keys) == 1 and bytes(req.public_key) in keys:
                fulfilled += 1
                latencies.append(time.monotonic() - started)
    how = f"2-of-3, party {DOWN} SIGKILLed for the whole run, {total} key requests of every type"
    return [Result("e2e.party_down.keygen_fulfilled_ratio", fulfilled / total, "ratio", note=how),
            Result("e2e.party_down.keygen_latency_p50_s", statistics.median(latencies) if latencies else 0.0,
                   "s", note=how + "; request sent to FULFILLED seen by the bench")]
