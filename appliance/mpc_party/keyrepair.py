"""Shares for a party that was away, and no shares of keys that never were: the daemon's repair driver.

The protocol is `protocols/repair.py` (sans-IO); this module decides when to run it and checks who may.

- **Finding what is missing** (`scan`, at start-up and every `repair_interval_s`): the keyring's
  FULFILLED key requests on chain are compared with the store. A key with no share here, or with only
  a pending one (a crash between pending and commit, a missed confirmation), is repaired; the
  repaired share comes with complete confirmation evidence and replaces the pending one.
- **Orphans** (same scan): a share, pending or committed, of a key request that ended REJECTED
  (expired or refused) or that became a key with another public key, is destroyed. Every fact is
  re-read through the party's agreed chain reader before anything is destroyed or repaired.
- **As the target** (`repair`): t helpers are invited (every set of t other parties in turn, until
  one gives a share that matches the verification share of the evidence-authenticated commitments);
  the share is sealed, stored with the evidence, committed. A DKLs23 key then has no OT pairs: every
  pair is marked for re-setup, which `PairGuard` runs with each peer (the same path as a burned pair).
- **As a helper** (`on_unopened`, the gate's hook for a session a peer starts): the invitation must
  come from the roster party whose index it repairs (the envelope is signed by that party's identity
  key and came over mTLS pinned to its certificate), at most `MAX_REPAIRS_PER_MINUTE` per peer, for a
  key this party holds committed with complete evidence, which the chain lists as a FULFILLED key of
  this keyring. Issue 15 (host replacement) uses the same path.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from appliance.hsm.store import ShareMeta, ShareRecord, ShareState, ShareStore, put_share
from appliance.mpc_party.envelope import Envelope
from appliance.mpc_party.finality import KeygenFinality
from appliance.mpc_party.members import share_holders
from appliance.mpc_party.pairguard import PairGuard, PerPeerLimit, is_dkls
from appliance.mpc_party.protocols import confirm, repair
from appliance.mpc_party.protocols import dispatch as protocols
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group
from appliance.mpc_party.runner import SessionRunner
from appliance.mpc_party.state import PartyState

log = logging.getLogger("zrkeyring.party.repair")

MAX_REPAIRS_PER_MINUTE = 10
SEEN_MEMORY = 4096
FULFILLED = "KEY_REQUEST_STATUS_FULFILLED"
REJECTED = "KEY_REQUEST_STATUS_REJECTED"


def group_of(key_type: str) -> Group:
    return ED25519 if key_type == protocols.EDDSA else SECP256K1


class KeyRepair:
    """Repair (target and helper) and the orphan sweep of one party daemon; see the module docstring."""

    def __init__(self, *, me: int, keyring: str, parties: list[int], t: int, store: ShareStore, sealer: Any,
                 runner: SessionRunner, identity_keys: dict[int, bytes], keygen: KeygenFinality,
                 pairs: PairGuard, state: PartyState, reader: Any, lister: Callable[[], list[Any]],
                 rng_factory: Callable[[], Any], threshold: Callable[[], int] | None = None) -> None:
        self.me, self.keyring, self.parties, self.t = me, keyring, parties, t
        self.threshold = threshold  # the chain keyring's threshold, with which new keys are made
        self.store, self.sealer, self.runner = store, sealer, runner
        self.identity_keys, self.keygen, self.pairs, self.state = identity_keys, keygen, pairs, state
        self.reader, self.lister, self.rng_factory = reader, lister, rng_factory
        self._limiter = PerPeerLimit(MAX_REPAIRS_PER_MINUTE)
        self._lock = threading.Lock()
        self._busy: set[int] = set()  # request ids being repaired here
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # invitations already decided on
        self._settled: set[tuple[int, int]] = set()  # (request, version) of shares of keys on chain
        self._stop = threading.Event()
        self.repaired = 0
        self.destroyed = 0

    # --- the periodic scan --------------------------------------------------------------------------

    def start(self, interval_s: float) -> None:
        threading.Thread(target=self._loop, args=(interval_s,), daemon=True, name="key-repair").start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(min(1.0, interval_s)):
            try:
                self.scan()
            except Exception as exc:  # the chain or a peer may be away: next round
                log.warning("party %d: key scan failed: %s", self.me, exc)
            if self._stop.wait(max(0.0, interval_s - 1.0)):
                return

    def scan(self) -> None:
        """Repair what the chain has and we lack; destroy what we hold and the chain never made."""
        for request in self.lister():
            if request.keyring_addr == self.keyring and request.status == FULFILLED:
                self._check_fulfilled(int(request.id))
        self.sweep()

    def _check_fulfilled(self, request_id: int) -> None:
        if self.store.active(self.keyring, request_id, self.me) is not None:
            return
        request = self.reader.key_request(request_id)  # the agreed reader decides, not the listing
        if request is None or request.keyring_addr != self.keyring or request.status != FULFILLED:
            return
        self.keygen.missing[request_id] = "key on chain, no committed share here: repairing"
        try:
            self.repair(request_id, request.key_type, bytes(request.public_key))
        except Exception as exc:
            log.warning("party %d: repair of key request %d failed: %s", self.me, request_id, exc,
                        extra={"request_id": request_id})

    def sweep(self) -> None:
        """Destroy orphans: shares of requests that ended REJECTED, or whose key is another."""
        for record in [*self.store.all_pending(), *self.store.all_active()]:
            m = record.meta
            if m.keyring != self.keyring or m.party_index != self.me or m.key_id in self._busy \
                    or (m.key_id, m.share_version) in self._settled:
                continue
            request = self.reader.key_request(m.key_id)
            if request is None or request.keyring_addr != self.keyring:
                continue
            other_key = request.status == FULFILLED and bytes(request.public_key) != m.group_public_key
            if record.state is ShareState.ACTIVE and request.status == FULFILLED and not other_key:
                self._settled.add((m.key_id, m.share_version))  # a key on chain: never an orphan again
                continue
            lock = self.keygen.request_lock(m.key_id)
            if (request.status == REJECTED or other_key) and lock.acquire(blocking=False):
                try:
                    self.store.discard(m.keyring, m.key_id, m.party_index, m.share_version)
                finally:
                    lock.release()
                self.destroyed += 1
                log.warning("party %d destroyed its %s share (version %d) of key request %d: the request %s",
                            self.me, record.state, m.share_version, m.key_id,
                            "was rejected or expired" if request.status == REJECTED else "made another key",
                            extra={"request_id": m.key_id})

    # --- as the target ------------------------------------------------------------------------------

    def repair(self, request_id: int, key_type: str, public_key: bytes) -> bytes:
        """Get our share of a key on chain from t helpers; returns its public key once committed."""
        with self._lock:
            if request_id in self._busy:
                raise RuntimeError("already repairing")
            self._busy.add(request_id)
        lock = self.keygen.request_lock(request_id)
        try:
            if not lock.acquire(blocking=False):
                raise RuntimeError("a keygen job of this request is still running")
            try:
                return self._repair(request_id, key_type, public_key)
            finally:
                lock.release()
        finally:
            with self._lock:
                self._busy.discard(request_id)

    def _repair(self, request_id: int, key_type: str, public_key: bytes) -> bytes:
        group = group_of(key_type)
        others = [p for p in self.parties if p != self.me]
        failures = []
        for helpers in self._helper_sets(others):
            invitation = repair.Invitation(public_key, self.me, tuple(helpers), secrets.token_bytes(repair.NONCE_LEN))
            session = repair.RepairTargetSession(group, invitation, public_key, self.identity_keys)
            try:
                repaired = self.runner.run(invitation.session_id, session)
            except Exception as exc:  # down, refusing or cheating: the next set
                failures.append(f"{list(helpers)}: {exc}")
                continue
            self._store(request_id, key_type, public_key, repaired)
            return public_key
        raise RuntimeError(f"no helper set gave our share: {'; '.join(failures)}")

    def _helper_sets(self, others: list[int]) -> list[tuple[int, ...]]:
        """Every set of t other parties, for t the chain's threshold (new keys are made with it) and
        then the roster's (keys made before the chain named its parties)."""
        sizes = []
        for size in ((self.threshold() if self.threshold else self.t), self.t):
            if size not in sizes and 1 <= size <= len(others):
                sizes.append(size)
        return [h for size in sizes for h in itertools.combinations(others, size)]

    def _store(self, request_id: int, key_type: str, public_key: bytes, repaired: repair.Repaired) -> None:
        share = repaired.dkls23_key(self.me) if is_dkls(key_type) else repaired.key_share(self.me)
        _, plaintext = protocols.export_share(key_type, share)
        pending = self.store.pending(self.keyring, request_id, self.me)
        if pending is not None:  # superseded by the repaired share, which comes with its evidence
            self.store.discard(self.keyring, request_id, self.me, pending.meta.share_version)
        version = self.store.next_version(self.keyring, request_id, self.me)
        meta = ShareMeta(self.keyring, request_id, key_type, self.t, self.me, public_key, version)
        put_share(self.store, self.sealer, meta, plaintext)
        self.store.put_notes(self.keyring, request_id, self.me, version, repaired.evidence.encode())
        self.store.commit(self.keyring, request_id, self.me, version)
        self.keygen.missing.pop(request_id, None)
        self.repaired += 1
        log.warning("party %d: share of key request %d (key %s) repaired and committed (version %d)", self.me,
                    request_id, public_key.hex(), version, extra={"request_id": request_id})
        if is_dkls(key_type):
            for peer in self.parties:
                if peer != self.me:
                    self.state.burn(self.keyring, public_key, peer, "no OT pair yet (share repaired)")
                    self.pairs.schedule(public_key, peer)

    # --- as a helper --------------------------------------------------------------------------------

    def on_unopened(self, env: Envelope) -> None:
        """Gate hook: a peer's repair invitation for a session we have not opened."""
        if env.protocol != repair.PROTOCOL or env.round != 1 or env.recipient != self.me:
            return
        with self._lock:  # the target re-sends its invitation until it lands: decide once per session
            if env.session_id in self._seen:
                return
            self._seen[env.session_id] = None
            while len(self._seen) > SEEN_MEMORY:
                self._seen.popitem(last=False)
        try:
            invitation = repair.Invitation.decode(env.payload, env.sender)
            repair.check_invitation(invitation, self.me, env.session_id)
            if not self._limiter.allow(env.sender):
                raise PermissionError(f"more than {MAX_REPAIRS_PER_MINUTE} repair invitations a minute")
            record, evidence = self._helpable(invitation.public_key)
            share = self.keygen.open_share(record)
            if invitation.target not in share_holders(share):
                # repair gives a holder back its own point; a party the key was never dealt to gets a
                # share only by resharing (lifecycle.py), which moves the whole key to the chain's set
                raise PermissionError(f"party {invitation.target} holds no share of this key (holders "
                                      f"{share_holders(share)}): it joins by resharing, not by repair")
            session = repair.RepairHelperSession(group_of(record.meta.key_type), invitation, self.me,
                                                 repair.helper_secret(share), evidence, self.rng_factory())
            self.runner.gate.open_session(invitation.session_id)  # the target's resend then lands
        except Exception as exc:
            log.warning("party %d refused a share repair for party %d: %s", self.me, env.sender, exc,
                        extra={"peer": env.sender})
            return
        threading.Thread(target=self._help, args=(invitation, session), daemon=True,
                         name=f"repair-for-{env.sender}").start()

    def _help(self, invitation: repair.Invitation, session: repair.RepairHelperSession) -> None:
        try:
            self.runner.run(invitation.session_id, session)
            log.warning("party %d helped repair party %d's share of key %s (helpers %s)", self.me,
                        invitation.target, invitation.public_key.hex(), list(invitation.helpers))
        except Exception as exc:
            log.warning("party %d: share repair for party %d failed: %s", self.me, invitation.target, exc,
                        extra={"peer": invitation.target})

    def _helpable(self, public_key: bytes) -> tuple[ShareRecord, confirm.Evidence]:
        record = self.store.active_by_public_key(self.keyring, public_key, self.me)
        if record is None:
            raise LookupError(f"no committed share of key {public_key.hex()} here")
        request = self.reader.key_request(record.meta.key_id)
        if request is None or request.keyring_addr != self.keyring or request.status != FULFILLED \
                or bytes(request.public_key) != public_key:
            raise LookupError(f"key {public_key.hex()} is not a fulfilled key of {self.keyring} on chain")
        raw = self.store.key_notes(self.keyring, record.meta.key_id, self.me)
        evidence = confirm.complete_evidence(confirm.decode_notes(raw) if raw else [], self.identity_keys,
                                             request_id=record.meta.key_id)
        if evidence is None or evidence.statement.group_public_key != public_key:
            raise LookupError(f"no complete confirmation evidence for key {public_key.hex()}")
        return record, evidence
