"""Keygen that is final only when whole: the party side of a key request (issue 14).

One keygen job, among the participant set P its controller chose (the live parties, at least t):

1. **Holdings exchange** (`confirm.HoldingsSession`): the members of P say what they hold for the
   request (nothing / a pending share / a committed share) and show their confirmation notes. If the
   notes make complete evidence for one statement (every participant of it confirmed it), every
   holder of a pending share of that statement commits it, every committed holder answers with its
   key, and a participant without a share is *missing* it: its job fails, and repair gives it the
   share once the key is on chain. Otherwise every pending share of the request is discarded and the
   attempt runs fresh on every member of P (unless the chain shows that someone posted the pending
   key: then its holder's evidence is awaited, the pending share kept).
2. **Keygen** among P (`dispatch.keygen_session(..., participants=P)`), session id bound to P.
3. **Pending + own note**: the share is sealed and stored as PENDING with our signed CONFIRM note;
   a keygen that failed, or a share that cannot be stored, sends a signed ABORT note instead.
4. **Confirmation** (`confirm.ConfirmSession`): only with a valid CONFIRM of the same statement from
   every member of P do we commit (evidence stored with the share) and return the public key, which
   the controller then posts. Anything else keeps the pending share and its notes for step 1 of the
   next job (or for the restart / sweep resolution in `repair.py`).

Blame: a timeout names the silent parties as missing (never as culprits); an ABORT names nobody; a
culprit is named only for what this party checked itself or what signed evidence proves
(equivocation: two notes of one signer).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.hsm import HsmError
from appliance.hsm.store import ShareMeta, ShareRecord, ShareStore, StoreError, open_share_checked, put_share
from appliance.mpc_party import evidence
from appliance.mpc_party.local_api import JobFailed, KeygenJob
from appliance.mpc_party.protocols import confirm
from appliance.mpc_party.protocols import dispatch as protocols
from appliance.mpc_party.protocols.dkg import EchoMismatch
from appliance.mpc_party.protocols.wire import ProtocolError, transcript_hash
from appliance.mpc_party.runner import SessionRunner, SessionTimeout

log = logging.getLogger("zrkeyring.party.keygen")

CONFIRM_TIMEOUT_FACTOR = 2.0
EXHIBITS_ROUND = 2  # on the confirmation's session: the round-1 broadcasts shown after an echo mismatch
LOCK_WAIT_ROUNDS = 10  # how long a second job of one request waits for the first, in round deadlines
MAX_LOCKS = 4096  # a peer's ABORT is sent at the end of its own round deadline
_SID_DOMAIN = b"zrkeyring/keygen-phase/v1"


def phase_session_id(sid: bytes, phase: str, participants: tuple[int, ...]) -> bytes:
    """The session id of one phase (holdings, keygen, confirm) of the job's attempt: bound to P, so
    parties that disagree on P never meet in a session."""
    return transcript_hash(_SID_DOMAIN, sid, phase.encode(), bytes(len(participants)),
                           b"".join(p.to_bytes(2, "big") for p in participants))


@dataclass(frozen=True)
class Holding:
    """What this party has for one request: the newest pending or committed version and its notes."""

    status: int
    record: ShareRecord | None
    notes: list[bytes]


class KeygenFinality:
    """Runs keygen jobs to a committed, confirmed share (see the module docstring)."""

    def __init__(self, *, me: int, keyring: str, n: int, t: int, store: ShareStore, sealer: Any,
                 runner: SessionRunner, identity_keys: dict[int, bytes], sign: Callable[[bytes], bytes],
                 rng_factory: Callable[[], Any], request_on_chain: Callable[[int], Any]) -> None:
        self.me, self.keyring, self.n, self.t = me, keyring, n, t
        self.store, self.sealer, self.runner = store, sealer, runner
        self.identity_keys, self.sign, self.rng_factory = identity_keys, sign, rng_factory
        self.request_on_chain = request_on_chain
        self.missing: dict[int, str] = {}  # request id -> why we have no share (status, repair)
        self._locks: OrderedDict[int, threading.Lock] = OrderedDict()
        self._locks_lock = threading.Lock()

    # --- the job -----------------------------------------------------------------------------------

    def participants(self, job: KeygenJob, members: list[int], t: int | None = None) -> tuple[int, ...]:
        """The job's participants, checked against the keyring's parties and threshold as this party
        read them (the chain's keyring once it names its parties; the roster's before)."""
        t = self.t if t is None else t
        chosen = tuple(sorted(set(job.parties)))
        if job.threshold != t or len(chosen) != len(job.parties):
            raise JobFailed(f"refused: keygen threshold must be {t}, parties distinct")
        if not set(chosen) <= set(members) or len(chosen) < t or self.me not in chosen:
            raise JobFailed(f"refused: keygen parties {list(job.parties)} must be at least {t} of the keyring's "
                            f"parties {sorted(members)} including party {self.me}")
        return chosen

    def run(self, job: KeygenJob, sid: bytes, participants: tuple[int, ...]) -> bytes:
        """One keygen job. Jobs of one request run one at a time: a second job (another attempt or
        another P) must not discard the pending share the first is confirming."""
        lock = self._request_lock(job.request_id)
        if not lock.acquire(timeout=self.runner.config.round_timeout_s * LOCK_WAIT_ROUNDS):
            raise JobFailed(f"another keygen of key request {job.request_id} is still running", retryable=True)
        try:
            resolved = self.resolve(job, sid, participants)
            if resolved is not None:
                return resolved
            return self.fresh(job, sid, participants)
        finally:
            lock.release()

    def request_lock(self, request_id: int) -> threading.Lock:
        """The lock every change to one request's shares holds (keygen jobs, repair, the sweep)."""
        return self._request_lock(request_id)

    def _request_lock(self, request_id: int) -> threading.Lock:
        with self._locks_lock:
            lock = self._locks.pop(request_id, None) or threading.Lock()
            self._locks[request_id] = lock  # most recent last; old idle locks are dropped
            while len(self._locks) > MAX_LOCKS:
                oldest, idle = next(iter(self._locks.items()))
                if idle.locked():
                    break
                del self._locks[oldest]
            return lock

    def holding(self, request_id: int) -> Holding:
        pending = self.store.pending(self.keyring, request_id, self.me)
        active = self.store.active(self.keyring, request_id, self.me)
        record = pending or active
        if record is None:
            return Holding(confirm.NONE, None, [])
        raw = (self.store.notes(self.keyring, request_id, self.me, record.meta.share_version) if pending
               else self.store.key_notes(self.keyring, request_id, self.me))
        notes = confirm.decode_notes(raw) if raw else []
        return Holding(confirm.PENDING if pending else confirm.COMMITTED, record, notes)

    def resolve(self, job: KeygenJob, sid: bytes, participants: tuple[int, ...]) -> bytes | None:
        """Step 1: the public key if the request is already final here, None to run fresh. A committed
        holder (complete evidence) answers at once, after showing its evidence to the others."""
        held = self.holding(job.request_id)
        if held.status == confirm.COMMITTED and not held.notes:
            return held.record.meta.group_public_key  # type: ignore[union-attr]  # made before issue 14
        session = confirm.HoldingsSession(self.me, participants, job.request_id, held.status, held.notes,
                                          self.identity_keys)
        resolution = self.runner.run(phase_session_id(sid, "holdings", participants), session)
        evidence = resolution.evidence
        if evidence is not None:
            return self._settle(job.request_id, held, evidence)
        if held.status == confirm.PENDING:
            self._discard_unless_posted(job.request_id, held)
        return None

    def _settle(self, request_id: int, held: Holding, evidence: confirm.Evidence) -> bytes:
        statement = evidence.statement
        mine = held.record
        if mine is not None and mine.meta.group_public_key == statement.group_public_key:
            if held.status == confirm.PENDING:
                self._commit(mine, evidence)
                log.info("party %d committed its pending share of key request %d: the others' evidence is "
                         "complete", self.me, request_id, extra={"request_id": request_id})
            return statement.group_public_key
        if mine is not None and held.status == confirm.PENDING:
            self._discard(mine, "another statement is final")
        self.missing[request_id] = "the key was made without this party (or it lost its share): repair"
        raise JobFailed(f"party {self.me} holds no share of the final key of request {request_id} (made "
                        f"among {list(statement.participants)}); it will be repaired once the key is on chain")

    def _discard_unless_posted(self, request_id: int, held: Holding) -> None:
        record = held.record
        assert record is not None
        request = self.request_on_chain(request_id)
        posted = bytes(getattr(request, "public_key", b"") or b"")
        if posted and posted == record.meta.group_public_key:
            raise JobFailed(f"key request {request_id}: our pending key is on chain, posted by a party that "
                            "holds the complete evidence; waiting for it", retryable=True)
        self._discard(record, "no complete confirmation evidence among the participants")

    # --- steps 2-4 ---------------------------------------------------------------------------------

    def fresh(self, job: KeygenJob, sid: bytes, participants: tuple[int, ...]) -> bytes:
        ksid = phase_session_id(sid, "keygen", participants)
        csid = phase_session_id(sid, "confirm", participants)
        session = protocols.keygen_session(job.key_type, ksid, self.me, self.n, job.threshold, self.rng_factory(),
                                           participants=participants)
        self.runner.gate.open_session(csid)  # peers' ABORT notes queue here while the keygen runs
        try:
            return self._fresh(job, participants, session, ksid, csid)
        finally:
            self.runner.gate.close_session(csid)

    def _fresh(self, job: KeygenJob, participants: tuple[int, ...], session: Any, ksid: bytes,
               csid: bytes) -> bytes:
        seen: list[Any] = []  # the broadcasts we accepted, signed: evidence if a dealer equivocates
        try:
            share = self.runner.run(ksid, session, record=seen)
        except EchoMismatch as exc:
            self._abort(ksid, csid, participants, f"keygen failed: {exc}")
            self._name_equivocator(csid, participants, exc.peer, seen)
            raise
        except SessionTimeout as exc:
            aborted = self._aborted(csid, exc.missing)
            self._abort(ksid, csid, participants, f"keygen failed: {exc}")
            if aborted:  # they stopped because of someone else: not silent, and not to blame
                party, reason = min(aborted.items())
                raise confirm.PeerAborted(party, reason) from None
            raise
        except ProtocolError as exc:
            self._abort(ksid, csid, participants, f"keygen failed: {exc}")
            raise
        statement = confirm.statement_for(protocols.keygen_dkg(session), job.request_id, job.key_type)
        public_key, plaintext = protocols.export_share(job.key_type, share)
        own = confirm.make_confirm(self.sign, self.me, statement)
        try:
            record = self._put_pending(job, public_key, plaintext, own)
        except (StoreError, sqlite3.Error, HsmError, OSError) as exc:
            self._abort(ksid, csid, participants, f"cannot store its share ({type(exc).__name__})")
            raise JobFailed(f"cannot store the new share: {exc}", retryable=True) from None
        session_c = confirm.ConfirmSession(self.me, participants, own, statement, self.identity_keys)
        timeout = self.runner.config.round_timeout_s * CONFIRM_TIMEOUT_FACTOR
        try:
            evidence = self.runner.run(csid, session_c, round_timeout_s=timeout)
        except (ProtocolError, SessionTimeout):
            self._keep_notes(record, session_c.notes())  # for the next job's holdings exchange
            raise
        self._commit(record, evidence)
        log.info("party %d committed its share of key request %d (public key %s, participants %s)", self.me,
                 job.request_id, public_key.hex(), list(participants), extra={"request_id": job.request_id})
        return public_key

    def _name_equivocator(self, csid: bytes, participants: tuple[int, ...], peer: int, seen: list[Any]) -> None:
        """After an echo mismatch with `peer`: show it the round-1 broadcasts we accepted and look at
        the ones it shows us; two different signed broadcasts of one dealer name that dealer."""
        timeout = self.runner.config.round_timeout_s
        others = tuple(p for p in participants if p != self.me)
        self.runner.send(csid, confirm.PROTOCOL, EXHIBITS_ROUND, evidence.encode_exhibits(seen), others, timeout)
        arrival = self.runner.gate.wait_for(csid, EXHIBITS_ROUND, [peer], timeout)
        for env in arrival.arrived.get(peer, []):
            found = evidence.find_equivocation(seen, env.payload, self.identity_keys)
            if found is not None:
                log.warning("party %d: party %d equivocated in keygen round 1 (two signed broadcasts kept as "
                            "evidence)", self.me, found.culprit, extra={"peer": found.culprit})
                raise evidence.DealerEquivocated(found)

    def _aborted(self, csid: bytes, silent: list[int]) -> dict[int, str]:
        """The silent parties that sent us a valid ABORT note meanwhile, and why they aborted."""
        arrival = self.runner.gate.wait_for(csid, 1, silent, 0.0)
        found = {}
        for sender, envelopes in arrival.arrived.items():
            for env in envelopes:
                try:
                    note = confirm.read_note(env.payload, self.identity_keys)
                except confirm.NoteError:
                    continue
                if note.signer == sender and not note.is_confirm:
                    found[sender] = note.reason
        return found

    def _abort(self, ksid: bytes, csid: bytes, participants: tuple[int, ...], reason: str) -> None:
        """Tell the other participants we will not commit the keygen `ksid` (best effort, on the
        confirmation's session id; sent outside a session, which stays open for the peers' notes)."""
        try:
            note = confirm.make_abort(self.sign, self.me, ksid, reason)
            others = tuple(p for p in participants if p != self.me)
            self.runner.send(csid, confirm.PROTOCOL, 1, note, others, self.runner.config.round_timeout_s)
        except Exception as exc:  # the abort is a courtesy; the peers time out without it
            log.warning("party %d: could not send its keygen abort: %s", self.me, exc)

    def _put_pending(self, job: KeygenJob, public_key: bytes, plaintext: bytes, own: bytes) -> ShareRecord:
        version = self.store.next_version(self.keyring, job.request_id, self.me)
        meta = ShareMeta(self.keyring, job.request_id, job.key_type, job.threshold, self.me, public_key, version)
        put_share(self.store, self.sealer, meta, plaintext)
        self.store.put_notes(self.keyring, job.request_id, self.me, version, confirm.encode_notes([own]))
        record = self.store.pending(self.keyring, job.request_id, self.me)
        assert record is not None
        return record

    def _keep_notes(self, record: ShareRecord, notes: list[bytes]) -> None:
        m = record.meta
        try:
            self.store.put_notes(m.keyring, m.key_id, m.party_index, m.share_version, confirm.encode_notes(notes))
        except (StoreError, sqlite3.Error) as exc:
            log.warning("party %d: cannot keep the keygen notes of request %d: %s", self.me, m.key_id, exc)

    def _commit(self, record: ShareRecord, evidence: confirm.Evidence) -> None:
        m = record.meta
        self.store.put_notes(m.keyring, m.key_id, m.party_index, m.share_version, evidence.encode())
        self.store.commit(m.keyring, m.key_id, m.party_index, m.share_version)
        self.missing.pop(m.key_id, None)

    def _discard(self, record: ShareRecord, why: str) -> None:
        m = record.meta
        self.store.discard(m.keyring, m.key_id, m.party_index, m.share_version)
        log.warning("party %d discarded its pending share of key request %d (version %d): %s", self.me,
                    m.key_id, m.share_version, why, extra={"request_id": m.key_id})

    # --- used by repair and the restart resolution --------------------------------------------------

    def open_share(self, record: ShareRecord) -> Any:
        return protocols.import_share(record.meta.key_type,
                                      open_share_checked(self.sealer, record, record.meta.group_public_key))
