"""End-to-end benchmark: a whole 2-of-3 keyring on this machine, timed from the chain's point of view.

A chain node with 0.2 s blocks, three SoftHSM party hosts with their daemons and controllers (all real
processes, `appliance.local.localnet`). The workspace owner puts requests on chain; a watcher thread polls
the chain every 20 ms and notes when each request turns FULFILLED.

Latency of a request = (wall time the watcher first saw it FULFILLED) - (time of the block that
included the request, `TxResponse.timestamp`; the node stamps a block when it starts executing it, so
this is the earliest moment any controller could have seen the request).

Figures: keygen latency; for ECDSA and Ed25519 the signing latency one request at a time (no
queueing) and the sustained rate (requests offered faster than the target for 60 s, several
MsgNewSignatureRequest per tx, counted when created and fulfilled inside the window); duplicates and
losses over every request of the run. Set ZRKEYRING_BENCH_KEEP=<dir> to keep the party folders and
logs for profiling.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import secrets
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.local.localnet import LocalKeyring, LocalSettings
from bench.common import Result
from chain_client.client import ChainClient, ClientConfig, msg_responses
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx

BLOCK_TIME_S = 0.2
POLL_S = 0.02
SUBMIT_POLL_S = BLOCK_TIME_S / 4
KEYGEN_TYPES = ("ecdsa", "ed25519") * 5
LATENCY_SAMPLES = 40
SUSTAIN_S = float(os.environ.get("ZRKEYRING_BENCH_SUSTAIN_S", "60"))
# offered rate: above the 20/s target, so the keyring, not the submitter, sets the pace
OFFERED_PER_S = float(os.environ.get("ZRKEYRING_BENCH_OFFERED_PER_S", "30"))
# Overload: offered OVERLOAD_FACTOR x the ECDSA capacity just measured for SUSTAIN_S, then RECOVERY_S at
# RECOVERY_FACTOR x capacity. A keyring that levels off past capacity still delivers ~capacity in the
# window, and serves every request of the recovery window; a collapsing one does neither.
OVERLOAD_FACTOR = 3.0
CLOSED_LOOP_WINDOW = 16  # requests kept open while measuring capacity (~0.8 s of work at 20/s)
CAPACITY_S = 30.0
RECOVERY_FACTOR = 0.5
RECOVERY_S = 15.0
LOST_SLACK = 0.9  # a request is lost "with time left" if the keyring delivered less than this share of capacity
# during its lifetime
TIMED_OUT = "timed out"  # the chain's reject reason for a request past its mpc_btl
# ZRKEYRING_BENCH_E2E_PHASES: comma-separated subset of latency,sustained,overload,pool (default: all)
PHASES = set(os.environ.get("ZRKEYRING_BENCH_E2E_PHASES", "latency,sustained,overload,pool").split(","))
# Pool phase: its own keyring with presignature pools on; ECDSA requests one at a time, each after the
# pools are full again (what a keyring signing now and then sees).
POOL_PER_KEY = 2
POOL_SAMPLES = 20
POOL_FILL_WAIT_S = 60.0
# ZRKEYRING_BENCH_ADMISSION_PER_BLOCK: the controllers' keyring-wide admission rate (0: off, the default)
ADMISSION_PER_BLOCK = float(os.environ.get("ZRKEYRING_BENCH_ADMISSION_PER_BLOCK", "0"))
# ZRKEYRING_BENCH_WORKERS: the controllers' `workers` (default: the local keyring's, LocalSettings.workers)
WORKERS = int(os.environ.get("ZRKEYRING_BENCH_WORKERS", str(LocalSettings.workers)))
MAX_BATCH = 20  # MsgNewSignatureRequest per tx (~9k gas each; the client's 300k gas limit holds ~30)
DRAIN_S = 20.0  # how long the tail may take after the window before what is left counts as lost
LATENCY_TIMEOUT_S = 30.0
CLOSED = ("FULFILLED", "REJECTED")
DUPLICATE_REASON = "already sent a fulfilment"
LOG_EVENTS = {  # controller log lines worth counting when profiling
    "fulfilment txs failed in a block": r"tx \w+ failed in block",
    "ticks failed": r"controller tick failed",
    "jobs refused by the party (request already closed)": r"attempt \d+ failed: refused",
    "sessions with a silent party": r"failed: session \w+ round \d+: no answer",
    "fulfilment txs refused by the node": r"refused by the node",
}
PARTY_LOG_EVENTS = {  # party daemon log lines worth counting (mpc_party/join.py)
    "sessions ended by a peer's result note": r"had signed request \d+ already",
    "hellos refused": r"refuses to join",
    "joined sessions that failed": r"joined session of party \d+ .* failed",
}


@dataclass
class Tracked:
    """One request we put on chain; `done` is set when the watcher sees it closed."""

    kind: str  # "key" or "sign"
    request_id: int
    included_at: float  # UNIX seconds: block time of the including block
    closed_at: float | None = None
    final: Any = None  # the request as read by id once closed
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def fulfilled(self) -> bool:
        return self.final is not None and self.final.status.endswith("FULFILLED")

    @property
    def latency(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.included_at


class Watcher:
    """Watches blocks on its own client (GetLatestBlock every POLL_S from shortly before the next block
    is due, and at once when a request is tracked) and, at each new height, lists the
    keyring's open requests in bulk (two small queries per kind) and reads by id only tracked requests
    missing from that list. Open requests move PENDING -> PARTIAL -> closed, and PENDING is listed
    first, so a request in neither list was closed before the second list returned: that time is its
    `closed_at` (an upper bound, <= POLL_S plus the listing late). Chain state changes only when a
    block is committed, so listing between blocks could only repeat the last answer: the harness used
    to list every 20 ms, four list queries of up to a window of requests each, which was a third of the
    chain node's queries under a closed loop (docs/performance.md, "Chain node and controller CPU").
    """

    def __init__(self, endpoint: str, chain_id: str, keyring: str, tls_ca_pem: bytes = b"") -> None:
        self.client = ChainClient(ClientConfig(endpoints=[endpoint], chain_id=chain_id, poll_interval_s=POLL_S,
                                               tls_ca_pem=tls_ca_pem))
        self.keyring = keyring
        self.pending: dict[tuple[str, int], Tracked] = {}
        self.closed: list[Tracked] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-watcher", daemon=True)
        self.errors = 0
        self._listed_height: int | None = None  # the height of the last complete listing
        self._next_block_at = 0.0  # UNIX time shortly before the next block is due: no poll until then
        self._wake = threading.Event()  # set by track() and stop(): poll now

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.client.close()

    def track(self, item: Tracked) -> None:
        with self._lock:
            self.pending[(item.kind, item.request_id)] = item
            self._listed_height = None  # it may have closed in a block listed before it was tracked
        self._wake.set()

    def open_count(self) -> int:
        with self._lock:
            return len(self.pending)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._wake.clear()
            try:
                self._poll()
            except Exception:  # a slow or busy node must not end the measurement
                self.errors += 1
                with self._lock:
                    self._listed_height = None  # list again at the next poll
            pause = max(POLL_S - (time.monotonic() - started), min(BLOCK_TIME_S, self._next_block_at - time.time()))
            self._wake.wait(max(0.0, pause))

    def _list_open(self, kind: str) -> set[int]:
        query = self.client.key_requests if kind == "key" else self.client.sign_requests
        prefix = "KEY_REQUEST_STATUS_" if kind == "key" else "SIGN_REQUEST_STATUS_"
        listing = [query(self.keyring, prefix + status) for status in ("PENDING", "PARTIAL")]
        return {req.id for reqs in listing for req in reqs}

    def _poll(self) -> None:
        with self._lock:
            kinds = {kind for kind, _ in self.pending}
        if not kinds:
            return
        _chain, height, block_time = self.client.latest_block()
        with self._lock:
            if height == self._listed_height:
                return  # no block since the last listing: nothing can have closed
            self._listed_height = height
        if block_time is not None:  # the node stamps a block when it starts it, every BLOCK_TIME_S
            self._next_block_at = block_time.timestamp() + BLOCK_TIME_S - POLL_S
        for kind in sorted(kinds):
            open_ids = self._list_open(kind)
            seen_at = time.time()
            with self._lock:
                candidates = [t for (k, i), t in self.pending.items() if k == kind and i not in open_ids]
            for item in candidates:
                req = self.client.key_request(item.request_id) if kind == "key" else \
                    self.client.sign_request(item.request_id)
                if req is None or not req.status.endswith(CLOSED):
                    continue
                item.closed_at, item.final = seen_at, req
                with self._lock:
                    self.pending.pop((kind, item.request_id), None)
                    self.closed.append(item)
                item.done.set()


class Bench:
    def __init__(self, keyring: LocalKeyring, watcher: Watcher) -> None:
        self.keyring, self.watcher = keyring, watcher
        self.client = keyring.client
        assert self.client is not None
        # send() waits for inclusion by GetTx polling. Latencies start at the including block's time,
        # not when the submitter sees it, so a quarter block is enough (at 20 ms the submitter's GetTx
        # polls were a tenth of the chain node's queries); only a closed loop's refill waits <= 50 ms.
        self.client.config.poll_interval_s = SUBMIT_POLL_S
        self.all: list[Tracked] = []

    # --- submitting --------------------------------------------------------------------------------

    def _submit(self, kind: str, msgs: list, response_cls: type, id_field: str) -> list[Tracked]:
        response = self.client.send(self.keyring.owner, msgs)
        included_at = _block_time(response.timestamp)
        ids = [getattr(r, id_field) for r in msg_responses(response, [response_cls] * len(msgs))]
        items = [Tracked(kind, i, included_at) for i in ids]
        for item in items:
            self.watcher.track(item)
        self.all.extend(items)
        return items

    def submit_keys(self, key_type: str) -> Tracked:
        k = self.keyring
        msg = treasury_tx.MsgNewKeyRequest(creator=k.owner.address(), workspace_addr=k.workspace,
                                           keyring_addr=k.keyring, key_type=key_type)
        return self._submit("key", [msg], treasury_tx.MsgNewKeyRequestResponse, "key_req_id")[0]

    def submit_signs(self, key_id: int, key_type: str, count: int) -> list[Tracked]:
        me = self.keyring.owner.address()
        msgs = [treasury_tx.MsgNewSignatureRequest(creator=me, key_ids=[key_id],
                                                   data_for_signing=_data(key_type).hex()) for _ in range(count)]
        return self._submit("sign", msgs, treasury_tx.MsgNewSignatureRequestResponse, "sig_req_id")

    # --- phases ------------------------------------------------------------------------------------

    def one_at_a_time(self, submit: Callable[[], Tracked], samples: int,
                      timeout_s: float = LATENCY_TIMEOUT_S) -> list[float]:
        latencies = []
        for _ in range(samples):
            item = submit()
            if not item.done.wait(timeout_s):
                raise TimeoutError(f"{item.kind} request {item.request_id} not closed in {timeout_s} s")
            if item.fulfilled:
                latencies.append(item.latency)
        return latencies

    def keygen(self, types: tuple[str, ...] = KEYGEN_TYPES,
               timeout_s: float = LATENCY_TIMEOUT_S) -> tuple[list[float], dict[str, int]]:
        """Key requests one at a time; returns latencies and a key id per type for the signing phases."""
        latencies, keys = [], {}
        for key_type in types:
            item = self.submit_keys(key_type)
            if not item.done.wait(timeout_s):
                raise TimeoutError(f"key request {item.request_id} not closed in {timeout_s} s")
            if item.fulfilled:
                latencies.append(item.latency)
                keys.setdefault(key_type, self.keyring.key_for_request(item.request_id).id)
        return latencies, keys

    def offer(self, key_id: int, key_type: str, per_s: float, seconds: float) -> list[Tracked]:
        """Offer `per_s` signature requests a second for `seconds` (one tx per block or so, batched)."""
        start = time.time()
        end = start + seconds
        items: list[Tracked] = []
        while (now := time.time()) < end:
            owed = int(per_s * (now - start)) + 1 - len(items)
            items += self.submit_signs(key_id, key_type, min(max(owed, 1), MAX_BATCH))
        return items

    def closed_loop(self, key_id: int, key_type: str, window: int, seconds: float) -> float:
        """Capacity without overload: keep `window` requests open, submit more only as they close.
        Fulfilled per second is what the keyring sustains when it sets the pace itself."""
        start = time.time()
        end = start + seconds
        items: list[Tracked] = []
        while time.time() < end:
            outstanding = sum(not t.done.is_set() for t in items)
            if outstanding < window:
                items += self.submit_signs(key_id, key_type, min(window - outstanding, MAX_BATCH))
            else:
                time.sleep(0.05)
        self.drain(items)
        return sum(t.fulfilled and t.closed_at is not None and t.closed_at <= end for t in items) / seconds

    def drain(self, items: list[Tracked]) -> None:
        drain_until = time.monotonic() + DRAIN_S
        while any(not t.done.is_set() for t in items) and time.monotonic() < drain_until:
            time.sleep(0.1)

    def overload(self, key_id: int, key_type: str, capacity: float, lifetime_s: float) -> dict[str, float]:
        """OVERLOAD_FACTOR x capacity for SUSTAIN_S, then RECOVERY_FACTOR x capacity for RECOVERY_S."""
        start = time.time()
        end = start + SUSTAIN_S
        heavy = self.offer(key_id, key_type, OVERLOAD_FACTOR * capacity, SUSTAIN_S)
        light = self.offer(key_id, key_type, RECOVERY_FACTOR * capacity, RECOVERY_S)
        self.drain(heavy + light)
        in_window = [t for t in heavy if t.included_at <= end]
        ok = [t for t in in_window if t.fulfilled and t.closed_at is not None and t.closed_at <= end]
        unfulfilled = [t for t in heavy + light if not t.fulfilled]
        not_timeout = [t for t in unfulfilled if t.final is not None and TIMED_OUT not in t.final.reject_reason]
        light_lost = [t for t in light if not t.fulfilled]
        slack = _lost_with_time_left(self.all, unfulfilled, capacity, lifetime_s)
        return {
            "rate": len(ok) / SUSTAIN_S,
            "offered": len(in_window) / SUSTAIN_S,
            "submitted": len(heavy) + len(light),
            "lost_with_time_left": len({id(t) for t in not_timeout + slack}),
            "light_lost": len(light_lost),
            "not_timeout": len(not_timeout),
            "timed_out": len(unfulfilled) - len(not_timeout),
            "p50": _quantile([t.latency for t in heavy if t.fulfilled], 0.5),
            "light_p50": _quantile([t.latency for t in light if t.fulfilled], 0.5),
        }

    def sustained(self, key_id: int, key_type: str) -> dict[str, float]:
        """Offer OFFERED_PER_S for SUSTAIN_S (one tx per block or so, batched), then drain."""
        start = time.time()
        end = start + SUSTAIN_S
        items = self.offer(key_id, key_type, OFFERED_PER_S, SUSTAIN_S)
        drain_until = time.monotonic() + DRAIN_S
        while any(not t.done.is_set() for t in items) and time.monotonic() < drain_until:
            time.sleep(0.1)
        in_window = [t for t in items if t.included_at <= end]
        ok = [t for t in in_window if t.fulfilled and t.closed_at is not None and t.closed_at <= end]
        fulfilled_late = [t for t in items if t.fulfilled and t not in ok]
        return {
            "rate": len(ok) / SUSTAIN_S,
            "offered": len(in_window) / SUSTAIN_S,
            "submitted": len(items),
            "late": len(fulfilled_late),
            "lost": sum(not t.fulfilled for t in items),
            "p50": _quantile([t.latency for t in items if t.fulfilled], 0.5),
            "p99": _quantile([t.latency for t in items if t.fulfilled], 0.99),
        }


def run() -> list[Result]:
    keep = os.environ.get("ZRKEYRING_BENCH_KEEP")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return _run(Path(tempfile.mkdtemp(prefix="bench-e2e-", dir=keep)))
    with tempfile.TemporaryDirectory(prefix="zrkeyring-bench-e2e-") as tmp:
        return _run(Path(tmp))


def _run(root: Path) -> list[Result]:
    results = _run_main(root) if PHASES - {"pool"} else []
    if "pool" in PHASES:
        results += _run_pool(root / "pool")
    return results


def _run_main(root: Path) -> list[Result]:
    settings = LocalSettings(block_time=BLOCK_TIME_S, admission_per_block=ADMISSION_PER_BLOCK, workers=WORKERS)
    return _on_keyring(root, settings, lambda bench, keyring: _measure(bench, keyring, settings))


def _run_pool(root: Path) -> list[Result]:
    """`e2e.ecdsa.pool_sign_latency_p50_s`: one ECDSA request at a time with warm presignature pools."""
    settings = LocalSettings(block_time=BLOCK_TIME_S, presign_pool_max=64, presign_pool_per_key=POOL_PER_KEY)
    return _on_keyring(root, settings, _measure_pool)


def _on_keyring(root: Path, settings: LocalSettings,
                measure: Callable[[Bench, LocalKeyring], list[Result]]) -> list[Result]:
    """Set up a local keyring with `settings`, start it and a watcher, measure, stop everything."""
    keyring = LocalKeyring(root, settings).setup()
    watcher: Watcher | None = None
    try:
        keyring.start()
        assert keyring.node is not None
        watcher = Watcher(keyring.node.endpoint, keyring.client.config.chain_id, keyring.keyring,
                          keyring.client.config.tls_ca_pem).start()
        return measure(Bench(keyring, watcher), keyring)
    finally:
        if watcher is not None:
            watcher.stop()
        keyring.close()


def _pools_full(keyring: LocalKeyring) -> bool:
    """Every party holds POOL_PER_KEY entries for each of its signer sets of the one key (2-of-3: two)."""
    return all(keyring.party_status(h.index).get("presign_pool", 0) >= 2 * POOL_PER_KEY for h in keyring.hosts)


def _measure_pool(bench: Bench, keyring: LocalKeyring) -> list[Result]:
    _latencies, keys = bench.keygen(("ecdsa",))
    key_id = keys["ecdsa"]
    bench.one_at_a_time(lambda: bench.submit_signs(key_id, "ecdsa", 1)[0], 1)  # the key becomes hot
    latencies, warm, hits = [], 0, _pool_hits(keyring)
    for _ in range(POOL_SAMPLES):
        deadline = time.monotonic() + POOL_FILL_WAIT_S
        while not _pools_full(keyring) and time.monotonic() < deadline:
            time.sleep(0.2)
        warm += _pools_full(keyring)
        latencies += bench.one_at_a_time(lambda: bench.submit_signs(key_id, "ecdsa", 1)[0], 1)
    hits = _pool_hits(keyring) - hits  # NaN where the parties' metrics are out of reach (the WAN lab)
    note = (f"{len(latencies)}/{POOL_SAMPLES} ECDSA requests one at a time, {warm} with every pool full before; "
            f"{hits:.0f} party-side pool hits (2 per request signed from the pool); target <= one block + 0.05 s "
            f"= {BLOCK_TIME_S + 0.05:.2f} s; 2-of-3, {BLOCK_TIME_S} s blocks")
    return [Result("e2e.ecdsa.pool_sign_latency_p50_s", _quantile(latencies, 0.5), "s", note=note),
            Result("e2e.ecdsa.pool_sign_latency_p99_s", _quantile(latencies, 0.99), "s", note=note)]


def _pool_hits(keyring: LocalKeyring) -> float:
    """Pool hits over every party's /metrics; NaN when one cannot be read (a party in a network namespace
    serves its metrics on the namespace's own loopback)."""
    total = 0.0
    for host in keyring.hosts:
        with host.config("party").open("rb") as handle:
            url = f"http://{tomllib.load(handle)['metrics']['address']}/metrics"
        try:
            response = urllib.request.urlopen(url, timeout=5)  # noqa: S310 - http://127.0.0.1 only
        except OSError:
            return float("nan")
        with response:
            for line in response.read().decode().splitlines():
                if line.startswith("zrkeyring_party_presignature_pool_signs_total{") and 'outcome="hit"' in line:
                    total += float(line.rsplit(" ", 1)[1])
    return total


def _measure(bench: Bench, keyring: LocalKeyring, settings: LocalSettings) -> list[Result]:
    how = (f"2-of-3, {BLOCK_TIME_S} s blocks, controller poll {settings.poll_interval_s} s, "
           f"{settings.workers} job workers per controller, admission "
           f"{settings.admission_per_block or 'off'}; inclusion = block "
           f"time of the request's block, FULFILLED seen by a {POLL_S * 1000:.0f} ms poll")
    results: list[Result] = []
    capacity = 0.0
    keygen, keys = bench.keygen()
    results.append(Result("e2e.keygen_latency_p50_s", _quantile(keygen, 0.5), "s",
                          note=f"{len(keygen)}/{len(KEYGEN_TYPES)} ecdsa+ed25519 key requests one at a time, "
                               f"max {max(keygen, default=0):.3f} s; {how}"))
    for key_type in ("ecdsa", "ed25519"):
        key_id = keys[key_type]
        prefix = f"e2e.{key_type}"
        if "latency" in PHASES:
            lat = bench.one_at_a_time(lambda k=key_id, t=key_type: bench.submit_signs(k, t, 1)[0],
                                      LATENCY_SAMPLES)
            note = f"{len(lat)}/{LATENCY_SAMPLES} requests one at a time (p99 ~ the largest two); {how}"
            results.append(Result(f"{prefix}.sign_latency_p50_s", _quantile(lat, 0.5), "s", note=note))
            results.append(Result(f"{prefix}.sign_latency_p99_s", _quantile(lat, 0.99), "s", note=note))
        if key_type == "ecdsa" and "overload" in PHASES:
            capacity = bench.closed_loop(key_id, key_type, CLOSED_LOOP_WINDOW, CAPACITY_S)
            results.append(Result("e2e.ecdsa.capacity_per_s", round(capacity, 3), "req/s",
                                  note=f"closed loop: {CLOSED_LOOP_WINDOW} requests kept open for {CAPACITY_S:.0f} s, "
                                       f"FULFILLED per second; {how}"))
        if "sustained" not in PHASES:
            continue
        s = bench.sustained(key_id, key_type)
        results.append(Result(
            f"{prefix}.sign_requests_per_s", round(s["rate"], 3), "req/s",
            note=(f"created and FULFILLED within a {SUSTAIN_S:.0f} s window, offered {s['offered']:.1f}/s in "
                  f"batched txs; {s['submitted']} submitted, {s['late']} fulfilled after the window, "
                  f"{s['lost']} not fulfilled after a {DRAIN_S:.0f} s drain; latency under load "
                  f"p50 {s['p50']:.3f} s p99 {s['p99']:.3f} s")))
    if "overload" in PHASES and capacity > 0:
        results += _overload(bench, keyring, keys["ecdsa"], capacity)
    results += _integrity(bench, keyring)
    return results


def _overload(bench: Bench, keyring: LocalKeyring, key_id: int, capacity: float) -> list[Result]:
    shed_before = _shed_counts(keyring)
    o = bench.overload(key_id, "ecdsa", capacity, keyring.settings.default_btl * BLOCK_TIME_S)
    shed = {reason: n - shed_before.get(reason, 0) for reason, n in _shed_counts(keyring).items()}
    note = (f"ECDSA offered {o['offered']:.1f}/s ({OVERLOAD_FACTOR:.0f}x the {capacity:.1f}/s capacity measured "
            f"just before) for {SUSTAIN_S:.0f} s, delivered {o['rate']:.1f}/s inside the window (p50 "
            f"{o['p50']:.3f} s); then {RECOVERY_FACTOR}x capacity for {RECOVERY_S:.0f} s (p50 "
            f"{o['light_p50']:.3f} s, {o['light_lost']} lost); {o['submitted']} submitted, {o['timed_out']} timed "
            f"out on chain, {o['not_timeout']} closed otherwise; lost with time left = lost while the keyring "
            f"delivered < {LOST_SLACK:.0%} of capacity during their lifetime, or closed for another reason than "
            f"the timeout; jobs shed by the controllers (all parties): "
            + (", ".join(f"{n} {reason}" for reason, n in sorted(shed.items()) if n) or "none"))
    return [Result("e2e.overload.goodput_ratio", round(o["rate"] / capacity, 3), "ratio", note=note),
            Result("e2e.overload.lost_with_time_left", o["lost_with_time_left"], "count", note=note)]


def _lost_with_time_left(every: list[Tracked], lost: list[Tracked], capacity: float,
                         lifetime_s: float) -> list[Tracked]:
    """The lost requests a capacity-rate keyring could have served: those during whose lifetime (from
    inclusion to timeout) the keyring fulfilled fewer than LOST_SLACK x capacity x lifetime requests,
    so capacity was left unused while they waited. A request dropped while the keyring delivered its
    capacity to others was shed, not lost with time left (past capacity something must be dropped)."""
    done = sorted(t.closed_at for t in every if t.fulfilled and t.closed_at is not None)
    wanted = LOST_SLACK * capacity * lifetime_s
    return [t for t in lost
            if bisect.bisect_right(done, t.included_at + lifetime_s) - bisect.bisect_left(done, t.included_at)
            < wanted]


def _shed_counts(keyring: LocalKeyring) -> dict[str, float]:
    """zrkeyring_controller_jobs_shed_total by reason, summed over every controller's /metrics."""
    counts: dict[str, float] = {}
    for host in keyring.hosts:
        address = tomllib.loads(host.config("controller").read_text()).get("metrics", {}).get("address")
        if not address:
            continue
        try:
            text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        for reason, value in re.findall(r'zrkeyring_controller_jobs_shed_total\{[^}]*reason="(\w+)"[^}]*\} ([0-9.e+]+)',
                                        text):
            counts[reason] = counts.get(reason, 0.0) + float(value)
    return counts


def _integrity(bench: Bench, keyring: LocalKeyring) -> list[Result]:
    duplicates = losses = 0
    for item in bench.all:
        if item.final is None:
            losses += 1
            continue
        sigs = getattr(item.final, "keyring_party_sigs", None)
        if sigs is None:
            sigs = item.final.keyring_party_signatures
        creators = [s.creator for s in sigs]
        if len(creators) != len(set(creators)) or DUPLICATE_REASON in item.final.reject_reason:
            duplicates += 1
        if not item.fulfilled:
            losses += 1
    logs = "".join(h.log("controller").read_text() for h in keyring.hosts if h.log("controller").exists())
    jobs = [float(m) for m in re.findall(r"sign request \d+: result ready in ([0-9.]+) s", logs)]
    counts = {what: len(re.findall(pattern, logs)) for what, pattern in LOG_EVENTS.items()}
    party_logs = "".join(h.log("party").read_text() for h in keyring.hosts if h.log("party").exists())
    party_counts = {what: len(re.findall(pattern, party_logs)) for what, pattern in PARTY_LOG_EVENTS.items()}
    note = (f"over all {len(bench.all)} requests of the run; controller logs: "
            + ", ".join(f"{n} {what}" for what, n in counts.items())
            + "; party logs: " + ", ".join(f"{n} {what}" for what, n in party_counts.items())
            + f"; party sign job p50 {_quantile(jobs, 0.5):.3f} s over {len(jobs)} jobs")
    return [Result("e2e.duplicates", duplicates, "count", note=note),
            Result("e2e.losses", losses, "count", note=note)]


def _data(key_type: str) -> bytes:
    """Fresh data per request: a 32-byte digest for ECDSA, a short message for Ed25519."""
    nonce = secrets.token_bytes(16)
    return hashlib.sha256(b"bench e2e " + nonce).digest() if key_type != "ed25519" else b"bench e2e " + nonce


def _block_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 4)
