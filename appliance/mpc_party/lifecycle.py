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
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from appliance.hsm.store import ShareMeta, ShareRecord, ShareStore, StoreError, open_share_checked, put_share
from appliance.mpc_party.jobs import RequestRefused
from appliance.mpc_party.local_api import JobFailed, RefreshJob, job_log_fields
from appliance.mpc_party.members import share_holders
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23.common import CorrelationAbort
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Rng
from appliance.mpc_party.protocols.reshare import ReshareSpec
from appliance.mpc_party.protocols.reshare_sessions import reshare_session
from appliance.mpc_party.protocols.versionsync import (
    NONE,
    PROTOCOL_INVITE,
    Holding,
    VersionSyncSession,
    invite_header,
    sharing_digest,
    split_invite_header,
)
from appliance.mpc_party.protocols.wire import ProtocolError, transcript_hash
from appliance.mpc_party.runner import SessionRunner, SessionTimeout
from appliance.mpc_party.state import PartyState
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
from appliance.rules.membership import Membership, ResharePlan, reshare_plan
from chain_client.errors import ChainDisagreement, ChainUnavailable

log = logging.getLogger("zrkeyring.party.lifecycle")

LOCK_WAIT_S = 30.0
URGENT_INTERVAL_S = 60.0  # at most one refresh at once per key per minute (a peer's aborts cannot loop it)
MAX_INVITES_PER_MINUTE = 20
PHASE_URGENT = "urgent"
URGENT_DOMAIN = b"zrkeyring/refresh-now/v1"


def urgent_session_id(chain_id: str, keyring: str, public_key: bytes, nonce: bytes, initiator: int,
                      step: str) -> bytes:
    """The id of one step of an unscheduled refresh: bound to the key, the initiator and its nonce."""
    return transcript_hash(URGENT_DOMAIN, chain_id.encode(), keyring.encode(), bytes(public_key), bytes(nonce),
                           initiator.to_bytes(2, "big"), step.encode())


@dataclass(frozen=True)
class Run:
    """One refresh run, scheduled or at once: what `_run` needs besides the store."""

    public_key: bytes
    label: int  # the key's number in log lines (chain key id, or key request id for a run at once)
    slot: Slot  # dealers rotate with it
    allow_refresh: bool
    header: bytes  # the invitation header of an unscheduled run's first sync (else empty)
    sid: Callable[[str], bytes]
    fields: dict[str, Any]
    key_type: str = ""  # the chain's key type (a joining party has no stored share to read it from)


@dataclass
class RefreshCounts:
    """What `status` shows: outcomes of refresh jobs since start."""

    refreshed: int = 0
    committed: int = 0
    retired: int = 0
    waiting: int = 0
    removed: int = 0  # keys reshared away from this party (removed from the keyring): its share destroyed
    failed: int = 0
    urgent: int = 0  # runs at once after a burned OT pair (any outcome)


class Refresher:
    """Runs `RefreshJob`s for one party daemon (see the module docstring)."""

    def __init__(self, *, me: int, keyring: str, chain_id: str, store: ShareStore, sealer: Any,
                 runner: SessionRunner, reader: Any, height: Callable[[], int], schedule: RefreshSchedule,
                 rng_factory: Callable[[], Rng], state: PartyState,
                 membership: Callable[[], Membership | None] = lambda: None,
                 request_of: Callable[[bytes], int | None] = lambda _pk: None) -> None:
        self.me, self.keyring, self.chain_id = me, keyring, chain_id
        self.store, self.sealer, self.runner, self.reader, self.state = store, sealer, runner, reader, state
        self._urgent_keys: dict[bytes, deque[float]] = {}
        self._invites: dict[int, deque[float]] = {}
        self.height, self.schedule, self.rng_factory = height, schedule, rng_factory
        self.membership = membership  # the chain keyring's parties and threshold (None: unknown)
        self.request_of = request_of  # a key's request id on chain (the store's key id), by public key
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
            fields = job_log_fields(job)
            run = Run(job.public_key, job.key_id, slot, slot.phase == PHASE_REFRESH, b"",
                      lambda step: refresh_session_id(self.chain_id, self.keyring, slot, step), fields,
                      job.key_type)
            outcome = self._run(run)
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

    def _run(self, run: Run) -> str:
        active = self.store.active_by_public_key(self.keyring, run.public_key, self.me)
        if active is None:
            return self._join(run)
        old = self._open(active, run.public_key)
        parties = tuple(share_holders(old))
        plan = self._plan(run, parties, old.t)
        pending = self.store.pending_of(self.keyring, active.meta.key_id, self.me)
        pending_share = self._open(pending, run.public_key) if pending else None
        # A pending sharing is settled among the parties it was dealt to: those that committed it sync
        # among the same set (their active holders), and a removed dealer has nothing left to report.
        syncing = tuple(share_holders(pending_share)) if pending_share else _syncing(parties, plan, old.t)
        if self.me not in syncing:
            return self._drop(run, active)
        mine = Holding(self._digest(old), self._digest(pending_share) if pending_share else NONE, old.t, parties)
        holdings = self._sync(run, "sync1", syncing, mine, run.header)
        action = decide(self.me, _among(holdings, pending_share), allow_refresh=run.allow_refresh,
                        joining=_joining(parties, plan))
        if action is Action.COMMIT and pending is not None:
            return self._commit(run, pending, "committed")
        if action is Action.RETIRE and pending is not None:
            self.store.retire(self.keyring, pending.meta.key_id, self.me, pending.meta.share_version)
            log.warning("party %d: key %d: pending sharing not held by every party retired", self.me, run.label,
                        extra=run.fields)
            return "retired"
        if action is not Action.REFRESH:
            return "waiting"
        spec = self._spec(run, active.meta.key_type, parties, old.t, plan)
        new_record = self._reshare(run, active, old, spec)
        with self.key_lock(run.public_key):  # signing of this key waits while we may commit
            new = self._open(new_record, run.public_key) if new_record is not None else None
            holdings = self._sync(run, "sync2", syncing, replace(mine, pending=self._digest(new) if new else NONE))
            if new_record is None:
                return self._leave(run, active, holdings, spec.new_parties)
            if decide(self.me, _among(holdings, new), allow_refresh=False) is Action.COMMIT:
                return self._commit(run, new_record, "refreshed")
        return "waiting"

    def _plan(self, run: Run, parties: tuple[int, ...], t: int) -> ResharePlan | None:
        """None for a refresh in place; else the resharing to the chain keyring's set and threshold,
        when they differ from the key's (membership.py picks the dealers among the holders)."""
        try:
            target = self.membership()
        except Exception as exc:  # unreadable or unmappable keyring: refresh in place, say why
            log.warning("party %d: key %d: keyring membership from the chain unusable (%s); refreshing the "
                        "key with its own set", self.me, run.label, exc, extra=run.fields)
            return None
        if target is None:
            return None
        return reshare_plan(parties, t, target, run.label, run.slot.period * 1000 + run.slot.attempt)

    # --- joining a key: the chain added this party, which holds nothing of the key yet --------------

    def _join(self, run: Run) -> str:
        """Take part in the key's resharing as a receiver only: the chain's keyring (read by this party)
        must list us, and the key must be a key of that keyring (`_check`). Holders report their sharing
        in sync 1; we reshare to the chain's set when every holder agrees on it, store our share pending
        and commit it like every holder, once every new holder reports it."""
        target = self._joining_target(run)
        request_id = self.request_of(run.public_key)
        if request_id is None:
            raise RequestRefused(f"key {run.label}: no fulfilled key request of {self.keyring} has this "
                                 "public key on chain")
        pending = self.store.pending_of(self.keyring, request_id, self.me)
        if pending is not None:
            return self._settle_joined(run, pending)
        holdings = self._sync(run, "sync1", target.parties, Holding(), run.header)
        learned = self._learn(run, target, holdings)
        if learned is None:
            return "waiting"
        agreed, plan = learned
        spec = self._spec(run, run.key_type, agreed.holders, agreed.t, plan)
        record = self._receive(run, request_id, spec)
        with self.key_lock(run.public_key):
            new = self._open(record, run.public_key)
            holdings = self._sync(run, "sync2", target.parties, Holding(NONE, self._digest(new)))
            if decide(self.me, _among(holdings, new), allow_refresh=False) is Action.COMMIT:
                return self._commit(run, record, "refreshed")
        return "waiting"

    def _learn(self, run: Run, target: Membership,
               holdings: dict[int, Holding]) -> tuple[Holding, ResharePlan] | None:
        """The key's sharing and its resharing plan, from the holders' sync-1 reports, when every party
        agrees to reshare now (`decide`, the same rule the holders apply); None means wait."""
        agreed = next((h for h in holdings.values() if h.active != NONE), None)
        if agreed is None:
            return None
        if self.me in agreed.holders:  # our index holds a point of the key: share repair gives it back
            log.warning("party %d: key %d: the holders name this party, which holds nothing of the key; waiting "
                        "for share repair", self.me, run.label, extra=run.fields)
            return None
        plan = reshare_plan(agreed.holders, agreed.t, target, run.label, run.slot.period * 1000 + run.slot.attempt)
        if plan is None or _syncing(agreed.holders, plan, agreed.t) != target.parties:
            log.warning("party %d: key %d: holders %s (t=%d) cannot reshare to %s without parties outside it; "
                        "waiting", self.me, run.label, list(agreed.holders), agreed.t, list(target.parties),
                        extra=run.fields)
            return None
        joining = _joining(agreed.holders, plan)
        if decide(self.me, holdings, allow_refresh=run.allow_refresh, joining=joining) is not Action.REFRESH:
            return None
        return agreed, plan

    def _joining_target(self, run: Run) -> Membership:
        """The chain's membership, read by this party itself, when it lists us; else the job is refused."""
        try:
            target = self.membership()
        except Exception as exc:
            raise RequestRefused(f"key {run.label}: no share here and the chain's keyring is unusable: {exc}") \
                from None
        if target is None or self.me not in target.parties:
            raise RequestRefused(f"no share of key {run.label} on party {self.me}, and the chain's keyring "
                                 f"{self.keyring} does not list this party")
        return target

    def _settle_joined(self, run: Run, pending: ShareRecord) -> str:
        """A share received earlier and not committed yet: commit it once every new holder holds it
        (or retire it when nobody ever committed it and someone lacks it)."""
        share = self._open(pending, run.public_key)
        holdings = self._sync(run, "sync1", tuple(share_holders(share)), Holding(NONE, self._digest(share)),
                              run.header)
        action = decide(self.me, _among(holdings, share), allow_refresh=False)
        if action is Action.COMMIT:
            return self._commit(run, pending, "committed")
        if action is Action.RETIRE:
            self.store.retire(self.keyring, pending.meta.key_id, self.me, pending.meta.share_version)
            return "retired"
        return "waiting"

    def _receive(self, run: Run, request_id: int, spec: ReshareSpec) -> ShareRecord:
        """Run the resharing as a receiver; the share (checked by the protocol against the dealers'
        commitments, which sum to the chain's public key) is sealed and stored pending."""
        key_type = run.key_type
        new = self.runner.run(spec.session_id, reshare_session(key_type, spec, self.me, None, self.rng_factory()))
        _, plaintext = dispatch.export_share(key_type, new)
        version = self.store.latest_version(self.keyring, request_id, self.me) + 1
        meta = ShareMeta(self.keyring, request_id, key_type, spec.new_t, self.me, bytes(run.public_key), version)
        put_share(self.store, self.sealer, meta, plaintext)
        record = self.store.pending_of(self.keyring, request_id, self.me)
        assert record is not None and record.meta.share_version == version
        log.info("party %d: key %d: joined the key: share received from dealers %s, stored pending (version "
                 "%d)", self.me, run.label, list(spec.dealers), version, extra=run.fields)
        return record

    def _spec(self, run: Run, key_type: str, parties: tuple[int, ...], t: int,
              plan: ResharePlan | None) -> ReshareSpec:
        group = ED25519 if key_type == dispatch.EDDSA else SECP256K1
        sid = run.sid("reshare")
        if plan is None:
            return ReshareSpec(group, sid, run.public_key, tuple(dealers(list(parties), t, run.slot)), parties, t)
        log.info("party %d: key %d: resharing from %s (t=%d) to %s (t=%d) as the chain's keyring says, "
                 "dealers %s", self.me, run.label, list(parties), t, list(plan.new_parties), plan.new_threshold,
                 list(plan.dealers), extra=run.fields)
        return ReshareSpec(group, sid, run.public_key, plan.dealers, plan.new_parties, plan.new_threshold)

    def _drop(self, run: Run, active: ShareRecord) -> str:
        """The chain removed this party and the staying holders are enough to deal without it: its share
        has no use left (it will not combine with the new ones), so every version of it is destroyed."""
        m = active.meta
        for record in self.store.versions(m.keyring, m.key_id, m.party_index):
            v = record.meta.share_version
            self.store.retire(m.keyring, m.key_id, m.party_index, v)
            self.store.delete_retired(m.keyring, m.key_id, m.party_index, v)
        log.info("party %d: key %d: this party is no longer in the chain's keyring and the staying holders "
                 "reshare without it: share destroyed", self.me, run.label, extra=run.fields)
        return "removed"

    def _leave(self, run: Run, active: ShareRecord, holdings: dict[int, Holding],
               new_parties: tuple[int, ...]) -> str:
        """This party dealt but is not in the key's new set: once every new holder reports the same new
        sharing (each commits on that report), destroy our share, which no longer combines with theirs."""
        reported = {holdings[p].pending for p in new_parties if p in holdings}
        if len(reported) != 1 or NONE in reported or len(holdings) < len(new_parties):
            return "waiting"
        m = active.meta
        self.store.retire(m.keyring, m.key_id, m.party_index, m.share_version)
        self.store.delete_retired(m.keyring, m.key_id, m.party_index, m.share_version)
        log.info("party %d: key %d reshared to parties %s without this party: share version %d destroyed",
                 self.me, run.label, list(new_parties), m.share_version, extra=run.fields)
        return "removed"

    def _reshare(self, run: Run, active: ShareRecord, old: Any, spec: ReshareSpec) -> ShareRecord | None:
        """Run the resharing; our new share (None if we only deal) is stored pending (sealed)."""
        key_type = active.meta.key_type
        if self.me not in spec.participants:  # removed from the key and not needed as a dealer
            return None
        new = self.runner.run(spec.session_id, reshare_session(key_type, spec, self.me, old, self.rng_factory()))
        if new is None:
            return None
        _, plaintext = dispatch.export_share(key_type, new)
        version = self.store.latest_version(self.keyring, active.meta.key_id, self.me) + 1
        meta = replace(active.meta, share_version=version, threshold=spec.new_t)
        put_share(self.store, self.sealer, meta, plaintext)
        record = self.store.pending_of(self.keyring, active.meta.key_id, self.me)
        assert record is not None and record.meta.share_version == version
        log.info("party %d: key %d reshared: new share stored pending (version %d), the active one still "
                 "signs until every party holds the new one", self.me, run.label, version, extra=run.fields)
        return record

    def _commit(self, run: Run, record: ShareRecord, outcome: str) -> str:
        m = record.meta
        self.store.commit(m.keyring, m.key_id, m.party_index, m.share_version)
        for peer in self.state.burned_peers(self.keyring, run.public_key):  # every pair is new now
            self.state.clear_burn(self.keyring, run.public_key, peer)
        log.info("party %d: key %d refreshed: share version %d active, older versions destroyed", self.me,
                 run.label, m.share_version, extra=run.fields)
        return outcome

    def _sync(self, run: Run, step: str, parties: tuple[int, ...], mine: Holding,
              header: bytes = b"") -> dict[int, Holding]:
        sid = run.sid(step)
        return self.runner.run(sid, VersionSyncSession(sid, self.me, parties, mine, header))

    # --- an unscheduled refresh, at once after an OT pair is burned ----------------------------------

    def on_abort(self, exc: BaseException, public_key: bytes) -> None:
        """A signing abort that burns an OT pair (pairguard.py) also refreshes the whole key at once."""
        if isinstance(exc, CorrelationAbort) and exc.culprit is not None:
            self.refresh_now(public_key)

    def refresh_now(self, public_key: bytes) -> bool:
        """Invite every holder to refresh the key now (at most once per URGENT_INTERVAL_S per key)."""
        if not self._allowed(self._urgent_keys, bytes(public_key), 1, URGENT_INTERVAL_S):
            return False
        nonce = self.rng_factory()(32)
        threading.Thread(target=self._urgent, args=(bytes(public_key), nonce, self.me, None), daemon=True,
                         name="refresh-now").start()
        return True

    def on_unopened(self, env: Any) -> None:
        """Gate hook: a peer's invitation (its first sync report) to an unscheduled refresh."""
        if env.protocol != PROTOCOL_INVITE or env.round != 1:
            return
        try:
            public_key, nonce = split_invite_header(env.payload)
        except ValueError:
            return
        if urgent_session_id(self.chain_id, self.keyring, public_key, nonce, env.sender, "sync1") != env.session_id:
            return
        lock = self._job_locks[public_key]
        if not lock.acquire(blocking=False):
            return  # busy with this key (the initiator resends until its deadline; the next slot refreshes it)
        try:  # only invitations we would act on count against the peer's budget
            if self.store.active_by_public_key(self.keyring, public_key, self.me) is None:
                raise LookupError(f"no share of key {public_key.hex()[:16]} here")
            if not self._allowed(self._invites, env.sender, MAX_INVITES_PER_MINUTE, 60.0):
                raise LookupError("too many refresh invitations in the last minute")
        except Exception as exc:
            lock.release()
            log.debug("party %d: refresh invitation from party %d ignored: %s", self.me, env.sender, exc,
                      extra={"peer": env.sender})
            return
        self.runner.gate.open_session(env.session_id)  # before returning: the initiator's resend lands
        threading.Thread(target=self._urgent, args=(public_key, nonce, env.sender, lock), daemon=True,
                         name=f"refresh-from-{env.sender}").start()

    def _urgent(self, public_key: bytes, nonce: bytes, initiator: int, held: threading.Lock | None) -> None:
        lock = held or self._job_locks[public_key]
        if held is None and not lock.acquire(timeout=LOCK_WAIT_S):
            return
        try:
            record = self.store.active_by_public_key(self.keyring, public_key, self.me)
            if record is None:
                return
            key_id = record.meta.key_id  # the key request id: the same on every party
            slot = Slot(key_id, 0, PHASE_URGENT, 0, int.from_bytes(nonce[:4], "big"))
            run = Run(public_key, key_id, slot, True, invite_header(public_key, nonce),
                      lambda step: urgent_session_id(self.chain_id, self.keyring, public_key, nonce, initiator, step),
                      {"request_id": key_id})
            log.warning("party %d: refreshing key %d at once (invited by party %d) after a burned OT pair",
                        self.me, key_id, initiator, extra=run.fields)
            outcome = self._run(run)
            setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
            self.counts.urgent += 1
        except Exception as exc:  # peers down or cheating: the key's next slot refreshes it
            self.counts.failed += 1
            log.warning("party %d: refresh at once of key %s failed: %s", self.me, public_key.hex()[:16], exc)
        finally:
            lock.release()

    @staticmethod
    def _allowed(book: dict, who: Any, limit: int, window_s: float) -> bool:
        now = time.monotonic()
        times = book.setdefault(who, deque())
        while times and now - times[0] > window_s:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True

    def _open(self, record: ShareRecord, public_key: bytes) -> Any:
        return dispatch.import_share(record.meta.key_type, open_share_checked(self.sealer, record, public_key))

    @staticmethod
    def _digest(share: Any) -> bytes:
        if isinstance(share, Dkls23Key):
            return sharing_digest(share.public_key, share.public_shares)
        return sharing_digest(share.group_public_key, share.verification_shares)


def _among(holdings: dict[int, Holding], share: Any) -> dict[int, Holding]:
    """The reports of a sharing's own holders: a new sharing is committed once every party it was
    dealt to holds it (after a resharing that drops a party, that party never will)."""
    if share is None:
        return holdings
    holders = share_holders(share)
    return {p: h for p, h in holdings.items() if p in holders}


def _joining(parties: tuple[int, ...], plan: ResharePlan | None) -> tuple[int, ...]:
    """The parties a resharing adds to the key (they hold nothing of it yet)."""
    return tuple(p for p in plan.new_parties if p not in parties) if plan is not None else ()


def _syncing(parties: tuple[int, ...], plan: ResharePlan | None, t: int) -> tuple[int, ...]:
    """Who takes part in the version syncs: every holder, except that holders the chain removed are left
    out when the staying ones are at least t (then they alone deal, and a lost host need not answer);
    plus every party joining the key, whose report of nothing is part of the agreement to reshare and
    whose report of the new sharing is needed before anybody commits it."""
    if plan is None:
        return parties
    staying = tuple(p for p in parties if p in plan.new_parties)
    return tuple(sorted({*(staying if len(staying) >= t else parties), *_joining(parties, plan)}))
