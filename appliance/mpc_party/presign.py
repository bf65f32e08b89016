"""Presignature pools, daemon side: where entries live, who fills them, and which one a signing takes
(protocol: protocols/pool.py; design and threat model: docs/protocols/presign-pool.md).

Pools are **in memory only**. An entry never touches the disk, so a crash, a restart or a restore of
the data directory from a backup can never bring back an entry that was already used: there is
nothing on disk to bring back. A restarted daemon starts with empty pools and the controllers refill
them in idle time.

Entries are kept per (public key, share version, signer set) in the order their fills finished, and
a signing takes the oldest. Every member of a set sees its fills finish in the same order (the
leader runs them one at a time), so members take the same entry; when they do not (one kept a fill
the other lost), the online session sees it and everyone burns what was named (`settle`).

Filling: the controller sends `PresignJob`s when it is idle. The set's leader runs fill sessions
itself; the others only *arm*: for ARM_S they accept fills of that (key, signer set) from the leader,
up to the job's count (`on_unopened`). A member that is running signing sessions accepts no fill,
and a leader stops filling as soon as one starts: pools are for idle time.

A key's entries are dropped whenever a different share version of it is seen (a refresh or
resharing committed: `retain_version`, called on every fill and signing), and when the total
would pass `[party] presign_pool_max`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.mpc_party import metrics
from appliance.mpc_party.envelope import Envelope
from appliance.mpc_party.local_api import JobFailed, PresignJob
from appliance.mpc_party.protocols.pool import (
    FILL_PROTOCOLS,
    HIT,
    NO_ENTRY,
    FillHeader,
    FillSession,
    PoolEntry,
    PoolSignSession,
    fill_session_id,
    leader,
)
from appliance.mpc_party.protocols.sessions import Session
from appliance.mpc_party.protocols.wire import ProtocolError
from appliance.mpc_party.runner import SessionRunner, SessionTimeout
from appliance.mpc_party.state import PartyState

log = logging.getLogger("zrkeyring.party.presign")

ARM_S = 10.0  # how long a member accepts fills after its controller's last PresignJob
MAX_FILLS_PER_JOB = 64
MAX_PER_SET = 64  # entries of one (key, version, set), whatever a job asks
# A leader whose set's pool is full still runs one fill this often (the oldest entry is evicted on
# every member): the members compare their newest entries in it, so a member that lost a fill (and
# would otherwise wait forever for one) gets back in step.
PROBE_S = 60.0
JOINED_KEPT = 1024  # fill ids this party joined, remembered so a leader's late resends are ignored
PoolTag = tuple[bytes, int, tuple[int, ...]]  # (public key, share version, signer set)


class PresignPool:
    """The in-memory entries of one party; thread-safe. See the module docstring."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: dict[PoolTag, deque[PoolEntry]] = {}
        self._lock = threading.Lock()

    def add(self, entry: PoolEntry, keep: int = MAX_PER_SET) -> bool:
        """Keep a new entry, the set's oldest evicted beyond `keep` (every member evicts alike: the
        same count comes from every controller); False when the pool is full or the id is known."""
        tag = (entry.public_key, entry.version, tuple(entry.signers))
        with self._lock:
            queue = self._entries.setdefault(tag, deque())
            if any(e.entry_id == entry.entry_id for e in queue):
                return False
            while queue and len(queue) >= keep:
                queue.popleft()
            if self._total() >= self.capacity:
                return False
            queue.append(entry)
        self._report()
        return True

    def newest(self, public_key: bytes, version: int, signers: tuple[int, ...]) -> bytes:
        """The id of the set's newest entry (NO_ENTRY: none): what a fill compares between members."""
        with self._lock:
            queue = self._entries.get((public_key, version, tuple(sorted(signers))))
            return queue[-1].entry_id if queue else NO_ENTRY

    def take(self, public_key: bytes, version: int, signers: tuple[int, ...]) -> PoolEntry | None:
        """Remove and return the oldest entry of (key, version, set): it is the caller's to open once."""
        self.retain_version(public_key, version)
        with self._lock:
            queue = self._entries.get((public_key, version, tuple(sorted(signers))))
            entry = queue.popleft() if queue else None
        self._report()
        return entry

    def burn(self, public_key: bytes, entry_ids: set[bytes]) -> int:
        """Drop every entry of the key whose id is in `entry_ids` (a peer named it in a session)."""
        burned = 0
        with self._lock:
            for (pk, _version, _signers), queue in self._entries.items():
                if pk != public_key:
                    continue
                kept = deque(e for e in queue if e.entry_id not in entry_ids)
                burned += len(queue) - len(kept)
                queue.clear()
                queue.extend(kept)
        self._report()
        return burned

    def drop(self, public_key: bytes, version: int, signers: tuple[int, ...]) -> int:
        """Drop every entry of (key, version, set): the members are out of step, so both sides empty
        the pool and refill it together rather than burning one stale entry per signature."""
        with self._lock:
            dropped = len(self._entries.pop((public_key, version, tuple(sorted(signers))), ()))
        self._report()
        return dropped

    def drop_peer(self, peer: int) -> int:
        """Drop every entry shared with `peer` (it went away: when it returns its pool is empty)."""
        with self._lock:
            gone = [tag for tag in self._entries if peer in tag[2]]
            dropped = sum(len(self._entries.pop(tag)) for tag in gone)
        if dropped:
            log.info("dropped %d presignature pool entries shared with party %d (not live)", dropped, peer)
            self._report()
        return dropped

    def retain_version(self, public_key: bytes, version: int) -> int:
        """Drop the key's entries of every other share version (its refresh or resharing committed)."""
        with self._lock:
            stale = [tag for tag in self._entries if tag[0] == public_key and tag[1] != version]
            dropped = sum(len(self._entries.pop(tag)) for tag in stale)
        if dropped:
            log.info("dropped %d presignature pool entries of key %s: share version is now %d", dropped,
                     public_key.hex()[:16], version)
            self._report()
        return dropped

    def count(self, public_key: bytes, version: int, signers: tuple[int, ...]) -> int:
        with self._lock:
            return len(self._entries.get((public_key, version, tuple(sorted(signers))), ()))

    def _total(self) -> int:
        return sum(len(q) for q in self._entries.values())

    def size(self) -> int:
        with self._lock:
            return self._total()

    def sizes(self) -> dict[str, int]:
        """Entries held per zrChain key type (the metric's `key_type` label)."""
        out = dict.fromkeys(metrics.POOL_KEY_TYPES, 0)
        with self._lock:
            for queue in self._entries.values():
                for entry in queue:
                    label = metrics.pool_key_type(entry.key_type)
                    out[label] = out.get(label, 0) + 1
        return out

    def _report(self) -> None:
        for label, count in self.sizes().items():
            metrics.PRESIGNATURE_POOL.labels(label).set(count)


@dataclass
class _Armed:
    key_type: str
    count: int
    until: float


LoadShare = Callable[[str, bytes], tuple[Any, int]]  # (key type, public key) -> (share, its version)
VersionOf = Callable[[bytes], int]  # public key -> its active share version (no unseal)


class Presigner:
    """Runs a party's side of the pools: PresignJobs, fills a leader starts, taking and settling
    entries around a signing session."""

    def __init__(self, *, me: int, keyring: str, pool: PresignPool, runner: SessionRunner, state: PartyState,
                 rng_factory: Callable[[], Any], load_share: LoadShare, busy: Callable[[], bool],
                 version_of: VersionOf | None = None, now: Callable[[], float] = time.monotonic) -> None:
        self.me, self.keyring, self.pool, self.runner, self.state = me, keyring, pool, runner, state
        self.rng_factory, self.load_share, self.busy, self.now = rng_factory, load_share, busy, now
        self.version_of = version_of
        self._armed: dict[tuple[bytes, tuple[int, ...]], _Armed] = {}
        self._filling: set[tuple[bytes, tuple[int, ...]]] = set()  # (key, set) with a fill running here
        self._probed: dict[tuple[bytes, tuple[int, ...]], float] = {}  # (key, set) -> last probe fill
        self._joined: dict[bytes, None] = {}  # fill ids joined here (newest last)
        self._lock = threading.Lock()
        self.fills = 0

    @property
    def enabled(self) -> bool:
        return self.pool.capacity > 0

    # --- filling ----------------------------------------------------------------------------------

    def run(self, job: PresignJob) -> bytes:
        """A checked PresignJob (chain and signer set checked by the daemon): fill as the leader, arm as
        a member. Answers the entries now held for (key, set) as two bytes."""
        if not self.enabled:
            raise JobFailed(f"presignature pools are off on party {self.me} ([party] presign_pool_max = 0)")
        signers = tuple(sorted(job.signers))
        if self.version_of is not None:  # the store's word, without unsealing the share every second
            version = self.version_of(job.public_key)
        else:
            version = self.load_share(job.key_type, job.public_key)[1]
        self.pool.retain_version(job.public_key, version)
        if self.me == leader(signers):
            self._fill(job, signers, version)
        else:
            with self._lock:
                self._armed[(job.public_key, signers)] = _Armed(job.key_type, job.count, self.now() + ARM_S)
        return min(self.pool.count(job.public_key, version, signers), 0xFFFF).to_bytes(2, "big")

    def _fill(self, job: PresignJob, signers: tuple[int, ...], version: int) -> None:
        tag = (job.public_key, signers)
        with self._lock:
            if tag in self._filling:
                return  # the previous job's fills still run
            self._filling.add(tag)
        share: Any = None
        try:
            for _ in range(min(job.count, MAX_FILLS_PER_JOB)):
                if self.busy() or not self._fill_due(tag, version, job.count):
                    return
                if share is None:  # unsealed only when a fill runs, once per job
                    share, loaded = self.load_share(job.key_type, job.public_key)
                    if loaded != version:
                        return
                if not self._fill_once(job.key_type, share, version, signers, secrets.token_bytes(32),
                                       keep=job.count):
                    return
        finally:
            with self._lock:
                self._filling.discard(tag)

    def _fill_due(self, tag: tuple[bytes, tuple[int, ...]], version: int, count: int) -> bool:
        """Below the count (and under the capacity), or full and due for its probe (PROBE_S)."""
        if self.pool.count(tag[0], version, tag[1]) < count:
            return self.pool.size() < self.pool.capacity
        if self.now() - self._probed.get(tag, float("-inf")) < PROBE_S:
            return False
        self._probed[tag] = self.now()
        return True

    def _fill_once(self, key_type: str, share: Any, version: int, signers: tuple[int, ...], nonce: bytes,
                   keep: int) -> bool:
        public_key = FillSession.public_key_of(key_type, share)
        session = FillSession(self.keyring, key_type, share, version, signers, nonce, self.rng_factory(),
                              self.pool.newest(public_key, version, signers))
        if not self.state.claim_session(session.entry_id, "presign"):  # durable: a fill id never runs twice
            log.warning("party %d refuses fill %s: the id already ran", self.me, session.entry_id.hex()[:12])
            return False
        try:
            entry = self.runner.run(session.entry_id, session, join_timeout=True)
        except (SessionTimeout, ProtocolError) as exc:
            log.info("party %d: presignature fill %s for signers %s ended: %s", self.me,
                     session.entry_id.hex()[:12], list(signers), exc)
            return False
        self.fills += 1
        if session.out_of_step:  # a member's newest entry is not ours: start the set afresh, as it does
            dropped = self.pool.drop(public_key, version, signers)
            log.info("party %d: pool of signers %s out of step with a member; dropped %d entries", self.me,
                     list(signers), dropped)
        return self.pool.add(entry, keep)

    def on_unopened(self, env: Envelope) -> None:
        """Gate hook: the leader's first fill envelope. Joined only if our controller armed (key, set)
        recently, the sender is the set's leader, we are a member, the version is our active one, and no
        signing session runs here (the set's count and the capacity are kept when the entry is added)."""
        if env.protocol not in FILL_PROTOCOLS or env.round != 1 or not self.enabled:
            return
        try:
            header, _ = FillHeader.split(env.payload, env.sender)
        except ProtocolError:
            return
        tag = (header.public_key, header.signers)
        with self._lock:
            armed = self._armed.get(tag)
            if armed is None or armed.until < self.now() or tag in self._filling or env.session_id in self._joined:
                return
            if env.sender != leader(header.signers) or self.me not in header.signers or self.busy():
                return
            self._filling.add(tag)
            self._joined[env.session_id] = None
            while len(self._joined) > JOINED_KEPT:
                self._joined.pop(next(iter(self._joined)))
        threading.Thread(target=self._join_fill, args=(env, header, armed), daemon=True,
                         name=f"fill-from-{env.sender}").start()

    def _join_fill(self, env: Envelope, header: FillHeader, armed: _Armed) -> None:
        tag = (header.public_key, header.signers)
        try:
            share, version = self.load_share(armed.key_type, header.public_key)
            self.pool.retain_version(header.public_key, version)
            sid = fill_session_id(self.keyring, armed.key_type, header.public_key, version, header.signers,
                                  header.nonce)
            if version != header.version or sid != env.session_id:
                log.warning("party %d refuses a fill from party %d: it names version %d (ours %d) or another "
                            "id", self.me, env.sender, header.version, version, extra={"peer": env.sender})
                return
            self._fill_once(armed.key_type, share, version, header.signers, header.nonce, keep=armed.count)
        except Exception as exc:  # noqa: BLE001 - a fill is best effort; the signing path does not need it
            log.warning("party %d: joining a fill from party %d failed: %s", self.me, env.sender, exc,
                        extra={"peer": env.sender})
        finally:
            with self._lock:
                self._filling.discard(tag)

    # --- signing ----------------------------------------------------------------------------------

    def wrap(self, session: Session, key_type: str, public_key: bytes, version: int,
             signers: tuple[int, ...], share: Any, data: bytes) -> PoolSignSession:
        """The signing session from the pool: our oldest entry for (key, version, set), out of the pool
        before anything is sent; with none, the same one-round offer falls back to the full protocol."""
        entry = self.pool.take(public_key, version, tuple(sorted(signers)))
        return PoolSignSession(session, entry, share, data)

    def settle(self, session: PoolSignSession, key_type: str, public_key: bytes, version: int) -> None:
        """After the session, whatever its end: burn every entry a peer named (we never open it for
        anything else); when the signers were out of step (a miss or a mismatch), drop the set's whole
        pool, as every member does, so the next fills start in step; count the outcome."""
        if session.named:
            burned = self.pool.burn(public_key, session.named)
            if burned:
                log.info("party %d burned %d pool entries a peer named in a session", self.me, burned)
        if session.outcome and session.outcome != HIT:
            self.pool.drop(public_key, version, tuple(session.participants))
        if session.outcome:
            metrics.POOL_SIGNS.labels(metrics.pool_key_type(key_type),
                                      "hit" if session.outcome == HIT else session.outcome).inc()
