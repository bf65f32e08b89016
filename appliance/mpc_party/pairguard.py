"""Selective-abort containment for DKLs23: burn an OT pair on a secret-dependent abort, re-set it up.

A DKLs23 party keeps, per key and peer, a long-lived OT correlation (Delta) for the direction where it
is the OT-extension sender. The KOS consistency check passes or fails depending on Delta when the
peer cheats, so the peer learns one bit of Delta from every outcome it provokes. The guard keeps that
to a few bits per Delta (docs/protocols/dkls23.md, "Selective aborts"):

1. `check_signers` refuses a signing session of a key with any peer whose pair is burned;
2. `on_abort` burns the (key, peer) pair on a `CorrelationAbort` (durably, in `PartyState`), logs a
   CRITICAL line naming key and peer, and starts a re-setup;
3. a re-setup (`dkls23/resetup.py`) runs the pair's base OTs again with a new Delta on both sides and
   leaves the shares unchanged; the new key material is sealed as a new share version, the old version
   destroyed, and the mark cleared. The initiator retries with backoff until the peer answers; a
   restarted daemon resumes every marked pair (`resume`).
4. `on_unopened` lets a peer start a re-setup with us: the first envelope's header names the key and
   nonce, from which we recompute the session id before joining. At most one re-setup runs per key
   on this party at a time (a busy key refuses the invitation, the initiator retries), and each peer
   may start at most `MAX_INVITES_PER_MINUTE`. The limit counts distinct invitations (session ids):
   the initiator re-sends its first envelope every 0.1 s until we open the session, and counting
   those re-sends used up the whole minute's allowance in two seconds of a busy key, leaving honest
   pairs burned for a minute.
5. Both sides of a pair may burn it and invite each other at once; each then holds its key lock for
   its own initiation and refuses the other's, until both time out and retry in step. The tie-break:
   the lower-indexed party's re-setup goes on, the higher-indexed one cancels its own initiation when
   the lower one's invitation arrives, and answers that invitation's next re-send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from appliance.hsm.store import ShareRecord, ShareStore, open_share_checked, put_share
from appliance.mpc_party import metrics
from appliance.mpc_party.envelope import Envelope
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23 import resetup
from appliance.mpc_party.protocols.dkls23.common import CorrelationAbort
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.group import Rng
from appliance.mpc_party.runner import SessionRunner
from appliance.mpc_party.state import PartyState
from appliance.rules.keytypes import KeyType, parse_key_type

log = logging.getLogger("zrkeyring.party.pairs")

MAX_INVITES_PER_MINUTE = 20
INVITATIONS_KEPT = 1024  # session ids of invitations already counted (their re-sends are not)
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0


class PerPeerLimit:
    """At most `per_minute` events per peer in any sliding minute (invitations a peer may send us)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: dict[int, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, peer: int) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._times[peer]
            while times and now - times[0] > 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


class PairBurned(Exception):
    """A signing session would include a peer whose OT pair for this key is burned."""

    def __init__(self, public_key: bytes, peers: set[int]) -> None:
        self.peers = peers
        super().__init__(f"OT pair(s) of key {public_key.hex()} with part{'ies' if len(peers) > 1 else 'y'} "
                         f"{sorted(peers)} burned after a failed OT-extension check; re-setup in progress")


def is_dkls(key_type: str) -> bool:
    parsed = parse_key_type(key_type)
    return parsed is not None and parsed is not KeyType.EDDSA_ED25519


class PairGuard:
    """The burn / refuse / re-setup rules of one party daemon (see the module docstring)."""

    def __init__(self, *, me: int, keyring: str, store: ShareStore, state: PartyState, sealer: Any,
                 runner: SessionRunner, rng_factory: Callable[[], Rng]) -> None:
        self.me, self.keyring, self.store, self.state = me, keyring, store, state
        self.sealer, self.runner, self.rng_factory = sealer, runner, rng_factory
        self._key_locks: dict[bytes, threading.Lock] = defaultdict(threading.Lock)
        self._running: set[tuple[bytes, int]] = set()  # (public key, peer) re-setups we initiated
        self._initiating: dict[tuple[bytes, int], bytes] = {}  # ... and the session id of the one running
        self._invitations: OrderedDict[bytes, None] = OrderedDict()  # session ids counted against the limit
        self._limiter = PerPeerLimit(MAX_INVITES_PER_MINUTE)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.resetups_done = 0
        metrics.OT_PAIRS_BURNED.set_function(lambda: len(self.state.burned()))

    # --- signing -----------------------------------------------------------------------------------

    def check_signers(self, key_type: str, public_key: bytes, signers: tuple[int, ...]) -> None:
        """Raise PairBurned (and make sure a re-setup runs) if any signer's pair with us is burned."""
        if not is_dkls(key_type):
            return
        burned = self.state.burned_peers(self.keyring, public_key) & (set(signers) - {self.me})
        for peer in burned:
            self.schedule(public_key, peer)
        if burned:
            raise PairBurned(public_key, burned)

    def on_abort(self, exc: BaseException, public_key: bytes) -> None:
        """Burn the pair when the abort's outcome could depend on our Delta toward the culprit."""
        if not isinstance(exc, CorrelationAbort) or exc.culprit is None:
            return
        peer = exc.culprit
        if self.state.burn(self.keyring, public_key, peer, exc.reason):
            metrics.OT_PAIR_BURNS.labels(str(peer)).inc()
            log.critical("party %d: OT pair of key %s with party %d BURNED (%s): no signing with that party "
                         "for this key until the pair's base OTs are re-run (starting now)", self.me,
                         public_key.hex(), peer, exc.reason, extra={"peer": peer})
        self.schedule(public_key, peer)

    # --- re-setup as initiator ---------------------------------------------------------------------

    def resume(self) -> None:
        """After a start: re-set-up every pair still marked (the mark survives restarts)."""
        for pair in self.state.burned():
            if pair.keyring == self.keyring:
                log.warning("party %d: OT pair of key %s with party %d is burned since %s; re-setup",
                            self.me, pair.public_key.hex(), pair.peer, time.ctime(pair.at))
                self.schedule(pair.public_key, pair.peer)

    def schedule(self, public_key: bytes, peer: int) -> None:
        with self._lock:
            if (public_key, peer) in self._running or self._stop.is_set():
                return
            self._running.add((public_key, peer))
        threading.Thread(target=self._retry_loop, args=(public_key, peer), daemon=True,
                         name=f"resetup-{peer}").start()

    def _retry_loop(self, public_key: bytes, peer: int) -> None:
        pause = RETRY_MIN_S
        try:
            while not self._stop.is_set() and peer in self.state.burned_peers(self.keyring, public_key):
                try:
                    self.initiate(public_key, peer)
                    return
                except Exception as exc:  # the peer may be down, busy or cheating: try again later
                    metrics.OT_RESETUPS.labels("failed").inc()
                    log.warning("party %d: OT re-setup of key %s with party %d failed: %s; again in %.1f s",
                                self.me, public_key.hex()[:16], peer, exc, pause, extra={"peer": peer})
                self._stop.wait(pause)
                pause = min(RETRY_MAX_S, pause * 2)
        finally:
            with self._lock:
                self._running.discard((public_key, peer))

    def initiate(self, public_key: bytes, peer: int) -> Dkls23Key:
        """Run one re-setup with `peer` as its initiator; stores the result."""
        lock = self._key_locks[public_key]
        if not lock.acquire(timeout=60):
            raise TimeoutError("another re-setup of this key is still running")
        try:
            record, key = self._load(public_key)
            if peer not in self.state.burned_peers(self.keyring, public_key):
                return key  # the peer's re-setup of this pair ran while we waited for the lock
            rng = self.rng_factory()
            nonce = rng(resetup.NONCE_LEN)
            sid = resetup.resetup_session_id(key.key_id, key.public_key, self.me, peer, nonce)
            with self._lock:
                self._initiating[(public_key, peer)] = sid
            try:
                new = self.runner.run(sid, dispatch.resetup_session(key, sid, peer, nonce, rng))
            finally:
                with self._lock:
                    self._initiating.pop((public_key, peer), None)
            self._store(record, new, peer)
            return new
        finally:
            lock.release()

    # --- re-setup as responder ---------------------------------------------------------------------

    def on_unopened(self, env: Envelope) -> None:
        """Gate hook: a peer's first re-setup envelope for a session we have not opened."""
        if env.protocol != dispatch.DklsResetupSession.protocol or env.round != 1:
            return
        peer = env.sender
        try:
            public_key, nonce, _ = resetup.split_header(env.payload)
        except ValueError:
            return
        if not self._invite_allowed(peer, env.session_id):
            log.warning("party %d: too many OT re-setup invitations from party %d; ignored", self.me, peer,
                        extra={"peer": peer})
            return
        lock = self._key_locks[public_key]
        if not lock.acquire(blocking=False):
            self._give_way(public_key, peer)
            return  # busy with this key: the initiator re-sends, and retries
        try:
            record, key = self._load(public_key)
            if not 1 <= peer <= key.n or peer == self.me:  # a peer without a pair yet (absent at keygen)
                raise LookupError(f"party {peer} is not a party of key {public_key.hex()}")
            sid = resetup.resetup_session_id(key.key_id, key.public_key, peer, self.me, nonce)
            if sid != env.session_id:
                raise LookupError("re-setup session id does not match its header")
            self.runner.gate.open_session(sid)  # before returning: the initiator's resend then lands
        except Exception as exc:
            lock.release()
            log.warning("party %d: refused an OT re-setup from party %d: %s", self.me, peer, exc,
                        extra={"peer": peer})
            return
        threading.Thread(target=self._respond, args=(lock, record, key, sid, peer, nonce), daemon=True,
                         name=f"resetup-from-{peer}").start()

    def _respond(self, lock: threading.Lock, record: ShareRecord, key: Dkls23Key, sid: bytes, peer: int,
                 nonce: bytes) -> None:
        try:
            new = self.runner.run(sid, dispatch.resetup_session(key, sid, peer, nonce, self.rng_factory()))
            self._store(record, new, peer)
        except Exception as exc:
            metrics.OT_RESETUPS.labels("failed").inc()
            log.warning("party %d: OT re-setup started by party %d failed: %s", self.me, peer, exc,
                        extra={"peer": peer})
        finally:
            lock.release()

    def _invite_allowed(self, peer: int, session_id: bytes) -> bool:
        """Each distinct invitation counts once against the peer's limit; its re-sends are free."""
        with self._lock:
            if session_id in self._invitations:
                return True
        if not self._limiter.allow(peer):
            return False
        with self._lock:
            self._invitations[session_id] = None
            while len(self._invitations) > INVITATIONS_KEPT:
                self._invitations.popitem(last=False)
        return True

    def _give_way(self, public_key: bytes, peer: int) -> None:
        """A lower-indexed peer invites us to re-set up the pair we are initiating ourselves: cancel
        ours (its lock frees), so the peer's next re-send finds us ready (rule 5 of the docstring)."""
        with self._lock:
            ours = self._initiating.get((public_key, peer)) if peer < self.me else None
        if ours is not None and self.runner.cancel(ours, f"party {peer} re-sets up the pair itself"):
            log.info("party %d: party %d is re-setting up the OT pair of key %s too; joining its session, "
                     "ours stops", self.me, peer, public_key.hex()[:16], extra={"peer": peer})

    # --- storage -----------------------------------------------------------------------------------

    def _load(self, public_key: bytes) -> tuple[ShareRecord, Dkls23Key]:
        record = self.store.active_by_public_key(self.keyring, public_key, self.me)
        if record is None or not is_dkls(record.meta.key_type):
            raise LookupError(f"no DKLs23 share of key {public_key.hex()} on party {self.me}")
        key = dispatch.import_share(record.meta.key_type, open_share_checked(self.sealer, record, public_key))
        assert isinstance(key, Dkls23Key)
        return record, key

    def _store(self, record: ShareRecord, new: Dkls23Key, peer: int) -> None:
        """Seal the re-set-up key as the next share version (committing destroys the old one), clear
        the mark."""
        _, plaintext = dispatch.export_share(record.meta.key_type, new)
        meta = replace(record.meta, share_version=record.meta.share_version + 1)
        put_share(self.store, self.sealer, meta, plaintext)
        self.store.commit(meta.keyring, meta.key_id, meta.party_index, meta.share_version)
        self.state.clear_burn(self.keyring, new.public_key, peer)
        self.resetups_done += 1
        metrics.OT_RESETUPS.labels("done").inc()
        log.warning("party %d: OT pair of key %s with party %d re-set up (share version %d)", self.me,
                    new.public_key.hex(), peer, meta.share_version, extra={"peer": peer})

    def stop(self) -> None:
        self._stop.set()
