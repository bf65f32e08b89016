"""Scheduled key refresh on the party: the two-phase version switch around a resharing.

A `RefreshJob` from the controller names a key and the slot the controller computed
(appliance/rules/lifecycle.py). The party trusts neither: it re-reads the key from the chain
(keyring, type, public key) and re-derives the slot from the chain height. Then, with every holder
of the key:

1. **sync 1**: every party reports the digests of the sharings it holds, active and pending
   (`protocols/versionsync.py`), and applies `decide` to the reports: commit a pending sharing
   every party holds (catch-up), retire one that can never be committed, refresh, or wait;
2. **reshare** (refresh only): t dealers (rotating with slot and attempt) reshare the key to the same
   set and threshold (`protocols/reshare.py`; DKLs23 keys also get fresh OT pairs); the new share is
   sealed and stored *pending* — the active one is untouched and keeps signing;
3. **sync 2**: every party reports again; a party commits (new version active, every older version
   destroyed by the store) only when every party reported holding the new sharing durably.

A party that misses step 3 (down, or a report lost) keeps both versions and signs with the old one;
the catch-up phase of the same slot runs step 1 again and it commits there. While step 3 runs the
key's signing waits (`key_lock`), so a signing session never starts with the old share on a party
that is about to commit while a peer already has.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from appliance.hsm.store import ShareRecord, ShareStore, StoreError, open_share_checked, put_share
from appliance.mpc_party.jobs import RequestRefused
from appliance.mpc_party.local_api import JobFailed, RefreshJob, job_log_fields
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Rng
from appliance.mpc_party.protocols.reshare import ReshareSpec
from appliance.mpc_party.protocols.reshare_sessions import reshare_session
from appliance.mpc_party.protocols.versionsync import NONE, Holding, VersionSyncSession, sharing_digest
from appliance.mpc_party.protocols.wire import ProtocolError
from appliance.mpc_party.runner import SessionRunner, SessionTimeout
from appliance.rules.lifecycle import (
    PHASE_REFRESH,
    Action,
    RefreshSchedule,
    Slot,
    dealers,
    decide,
    refresh_session_id,
    slot_at,
)
from chain_client.errors import ChainDisagreement, ChainUnavailable

log = logging.getLogger("zrkeyring.party.lifecycle")

LOCK_WAIT_S = 30.0


@dataclass
class RefreshCounts:
    """What `status` shows: outcomes of refresh jobs since start."""

    refreshed: int = 0
    committed: int = 0
    retired: int = 0
    waiting: int = 0
    failed: int = 0


class Refresher:
    """Runs `RefreshJob`s for one party daemon (see the module docstring)."""

    def __init__(self, *, me: int, keyring: str, chain_id: str, store: ShareStore, sealer: Any,
                 runner: SessionRunner, reader: Any, height: Callable[[], int], schedule: RefreshSchedule,
                 rng_factory: Callable[[], Rng]) -> None:
        self.me, self.keyring, self.chain_id = me, keyring, chain_id
        self.store, self.sealer, self.runner, self.reader = store, sealer, runner, reader
        self.height, self.schedule, self.rng_factory = height, schedule, rng_factory
        self._key_locks: dict[bytes, threading.Lock] = defaultdict(threading.Lock)
        self._job_locks: dict[bytes, threading.Lock] = defaultdict(threading.Lock)
        self.counts = RefreshCounts()

    def key_lock(self, public_key: bytes) -> threading.Lock:
        """Held by a refresh while it may commit; signing takes it to load its share."""
        return self._key_locks[bytes(public_key)]

    # --- the job -----------------------------------------------------------------------------------

    def run(self, job: RefreshJob) -> bytes:
        """Check the job against the chain, then sync / reshare / sync / commit; returns the outcome."""
        lock = self._job_locks[job.public_key]
        if not lock.acquire(blocking=False):
            raise JobFailed(f"a refresh of key {job.key_id} is already running here", retryable=True)
        try:
            slot = self._check(job)
            outcome = self._run(job, slot)
        except (SessionTimeout, ProtocolError) as exc:
            self.counts.failed += 1
            log.warning("party %d: refresh of key %d (period %d %s attempt %d) failed: %s", self.me, job.key_id,
                        job.period, job.phase, job.attempt, exc, extra=job_log_fields(job))
            raise JobFailed(f"refresh failed: {exc}", retryable=True,
                            culprit=getattr(exc, "culprit", None), missing=getattr(exc, "missing", [])) from None
        except (StoreError, RequestRefused) as exc:
            self.counts.failed += 1
            raise JobFailed(f"refused: {exc}") from None
        finally:
            lock.release()
        setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
        return outcome.encode()

    def _check(self, job: RefreshJob) -> Slot:
        """The key is ours on chain, of this type and public key, and its slot is open now."""
        try:
            key = self.reader.key(job.key_id)
        except (ChainDisagreement, ChainUnavailable) as exc:
            raise RequestRefused(f"no agreed chain answer: {exc}") from None
        if key is None or key.keyring_addr != self.keyring:
            raise RequestRefused(f"key {job.key_id} is not a key of keyring {self.keyring}")
        if bytes(key.public_key) != job.public_key or key.type != job.key_type:
            raise RequestRefused(f"key {job.key_id} has another public key or type on chain")
        current = slot_at(self.schedule, self.keyring, job.key_id, self.height())
        if current is None or (current.period, current.phase) != (job.period, job.phase) \
                or not current.attempt - 1 <= job.attempt <= current.attempt + 1:
            raise RequestRefused(f"key {job.key_id}: no refresh slot (period {job.period} {job.phase} attempt "
                                 f"{job.attempt}) open at this height (open: {current})")
        return replace(current, attempt=job.attempt)

    def _run(self, job: RefreshJob, slot: Slot) -> str:
        active = self.store.active_by_public_key(self.keyring, job.public_key, self.me)
        if active is None:
            raise StoreError(f"no active share of key {job.key_id} on party {self.me}")
        old = self._open(active, job.public_key)
        parties = tuple(sorted(_holders(old)))
        pending = self.store.pending_of(self.keyring, active.meta.key_id, self.me)
        mine = Holding(self._digest(old), self._digest(self._open(pending, job.public_key)) if pending else NONE)
        holdings = self._sync(slot, "sync1", parties, mine)
        action = decide(self.me, holdings, allow_refresh=slot.phase == PHASE_REFRESH)
        if action is Action.COMMIT and pending is not None:
            return self._commit(job, pending, "committed")
        if action is Action.RETIRE and pending is not None:
            self.store.retire(self.keyring, pending.meta.key_id, self.me, pending.meta.share_version)
            log.warning("party %d: key %d: pending sharing not held by every party retired", self.me, job.key_id,
                        extra=job_log_fields(job))
            return "retired"
        if action is not Action.REFRESH:
            return "waiting"
        new_record = self._reshare(job, slot, active, old, parties)
        with self.key_lock(job.public_key):  # signing of this key waits while we may commit
            new = self._open(new_record, job.public_key)
            holdings = self._sync(slot, "sync2", parties, Holding(mine.active, self._digest(new)))
            if decide(self.me, holdings, allow_refresh=False) is Action.COMMIT:
                return self._commit(job, new_record, "refreshed")
        return "waiting"

    def _reshare(self, job: RefreshJob, slot: Slot, active: ShareRecord, old: Any,
                 parties: tuple[int, ...]) -> ShareRecord:
        """Reshare to the same set and threshold; the result is stored pending (sealed)."""
        t = old.t
        group = ED25519 if job.key_type == dispatch.EDDSA else SECP256K1
        sid = refresh_session_id(self.chain_id, self.keyring, slot, "reshare")
        spec = ReshareSpec(group, sid, job.public_key, tuple(dealers(list(parties), t, slot)), parties, t)
        new = self.runner.run(sid, reshare_session(job.key_type, spec, self.me, old, self.rng_factory()))
        _, plaintext = dispatch.export_share(job.key_type, new)
        version = self.store.latest_version(self.keyring, active.meta.key_id, self.me) + 1
        meta = replace(active.meta, share_version=version)
        put_share(self.store, self.sealer, meta, plaintext)
        record = self.store.pending_of(self.keyring, active.meta.key_id, self.me)
        assert record is not None and record.meta.share_version == version
        log.info("party %d: key %d reshared: new share stored pending (version %d), the active one still "
                 "signs until every party holds the new one", self.me, job.key_id, version,
                 extra=job_log_fields(job))
        return record

    def _commit(self, job: RefreshJob, record: ShareRecord, outcome: str) -> str:
        m = record.meta
        self.store.commit(m.keyring, m.key_id, m.party_index, m.share_version)
        log.info("party %d: key %d refreshed: share version %d active, older versions destroyed", self.me,
                 job.key_id, m.share_version, extra=job_log_fields(job))
        return outcome

    def _sync(self, slot: Slot, step: str, parties: tuple[int, ...], mine: Holding) -> dict[int, Holding]:
        sid = refresh_session_id(self.chain_id, self.keyring, slot, step)
        return self.runner.run(sid, VersionSyncSession(sid, self.me, parties, mine))

    def _open(self, record: ShareRecord, public_key: bytes) -> Any:
        return dispatch.import_share(record.meta.key_type, open_share_checked(self.sealer, record, public_key))

    @staticmethod
    def _digest(share: Any) -> bytes:
        if isinstance(share, Dkls23Key):
            return sharing_digest(share.public_key, share.public_shares)
        return sharing_digest(share.group_public_key, share.verification_shares)


def _holders(share: Any) -> list[int]:
    return list(share.public_shares if isinstance(share, Dkls23Key) else share.verification_shares)
