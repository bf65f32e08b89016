"""The MPC party daemon of one party host (`zrkeyring party run`).

It joins the pieces: the HSM (identity key for envelopes, sealing key for shares, randomness), the
cluster roster and mutual-TLS transport to the other parties, the share store, a read-only view of the
chain, and the local unix-socket API its own controller calls. For each job it re-checks the request on
chain, derives the session id itself, runs the protocol session, and (for keygen) seals the new share.

Jobs are idempotent by session id: a controller that restarts and asks again gets the result of the
session already run (or joins the one in flight) instead of starting a second one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.hsm import Hsm, HsmConfig, HsmError
from appliance.hsm.store import ShareStore, StoreError, open_share_checked
from appliance.mpc_party import metrics
from appliance.mpc_party.envelope import Gate, Outbox
from appliance.mpc_party.envelope_cert import EnvelopeKeys
from appliance.mpc_party.finality import KeygenFinality
from appliance.mpc_party.jobs import OPEN_SIGN_STATUSES, KeyCache, RequestRefused, check_on_chain, job_session_id
from appliance.mpc_party.join import JoinAnswered, JoinRefused, PeerJoiner, hello_session_id
from appliance.mpc_party.joined import JoinedSignatures
from appliance.mpc_party.keyrepair import KeyRepair
from appliance.mpc_party.lifecycle import LOCK_WAIT_S, Refresher
from appliance.mpc_party.liveness import Liveness
from appliance.mpc_party.local_api import (
    Job,
    JobFailed,
    KeygenJob,
    LocalServer,
    PresignJob,
    RefreshJob,
    SignJob,
    job_log_fields,
)
from appliance.mpc_party.members import KeyMembers
from appliance.mpc_party.pairguard import PairBurned, PairGuard
from appliance.mpc_party.presign import Presigner, PresignPool
from appliance.mpc_party.protocols import dispatch as protocols
from appliance.mpc_party.protocols.hello import (
    HELLO_PROTOCOL,
    HELLO_ROUND,
    LEAVE_PROTOCOL,
    LEAVE_ROUND,
    RESULT_PROTOCOL,
    RESULT_ROUND,
    Hello,
    LeaveReason,
)
from appliance.mpc_party.protocols.pool import PoolSignSession
from appliance.mpc_party.protocols.wire import ProtocolError, StateMismatch
from appliance.mpc_party.runner import RunnerConfig, SessionCancelled, SessionRunner, SessionTimeout
from appliance.mpc_party.state import PartyState
from appliance.mpc_party.transport import PeerClient, PeerServer, TlsCredentials
from appliance.rules.attempts import MAX_SET_RETRIES, attempt_at
from appliance.rules.keytypes import protocol_label
from appliance.rules.lifecycle import RefreshSchedule
from appliance.rules.membership import Membership, chain_membership
from appliance.rules.requests import Decision, plan_sign
from appliance.rules.roster import MAX_INDEX, Roster, split_address
from appliance.rules.verify import ResultInvalid, check_signature
from appliance.runtime.chain import ChainSection
from appliance.runtime.config import bounded, load_section, read_toml
from appliance.runtime.drain import Drain
from appliance.runtime.errors import ConfigError
from appliance.runtime.metrics_http import MeteredHsm, MetricsSection, load_metrics_section
from appliance.runtime.paths import ensure_dir
from appliance.runtime.readiness import cert_expiry, cert_reasons
from chain_client.agreement import AgreeingReader
from chain_client.client import ChainClient
from chain_client.errors import ChainDisagreement, ChainUnavailable

FULFILLED_KEY = "KEY_REQUEST_STATUS_FULFILLED"
log = logging.getLogger("zrkeyring.party")

RESULT_CACHE = 4096
LEAVE_SEND_S = 2.0  # a leave note is worth a few tries, not a round deadline: its session is over for us
# Signing sessions (distinct signer set, retry) this party joins per (request, attempt): enough for a
# controller to move past a party that went down mid-attempt and to rerun a set once, too few for the
# local socket to mint sessions.
MAX_SIGNER_SETS = 4


@dataclass(frozen=True)
class PartySection:
    """The `[party]` table."""

    index: int = bounded(1, MAX_INDEX)
    roster: str
    tls_dir: str
    data_dir: str
    local_socket: str
    listen: str = ""  # default: this party's address in the roster
    round_timeout_s: float = bounded(0.01, 3600.0, 10.0)
    # a signing session no peer has joined by then is given up (runner.py)
    join_timeout_s: float = bounded(0.0, 3600.0, 3.0)
    # signing sessions a peer opened that this party joins at once, without its controller (join.py); 0: off
    join_workers: int = bounded(0, 256, 8)
    # how often missing shares are looked for on chain and orphans swept (keyrepair.py)
    repair_interval_s: float = bounded(0.1, 86400.0, 30.0)
    attempt_blocks: int = bounded(1, 1 << 32, 10)  # must equal the controllers' [controller] attempt_blocks
    # scheduled refresh: every key once per period (0: off); must equal the controllers'
    refresh_period_blocks: int = bounded(0, 1 << 32, 0)
    # each phase of a key's refresh slot lasts this long; must equal the controllers'
    refresh_window_blocks: int = bounded(1, 1 << 32, 30)
    # presignature pool entries held in memory, all keys together (0: pools off, every signature runs
    # the full protocol); must be 0 on every party or on none (presign.py)
    presign_pool_max: int = bounded(0, 4096, 0)

    def __post_init__(self) -> None:
        if self.listen:
            split_address(self.listen, "party.listen")


@dataclass(frozen=True)
class PartyMetricsSection(MetricsSection):
    """The `[metrics]` table of the party daemon (absent: no /metrics server)."""

    address: str = "127.0.0.1:9810"


@dataclass(frozen=True)
class PartyConfig:
    party: PartySection
    hsm: HsmConfig
    chain: ChainSection
    metrics: PartyMetricsSection = PartyMetricsSection(address="")  # no [metrics] table: no server

    @classmethod
    def load(cls, path: str | Path) -> PartyConfig:
        data = read_toml(path)
        return cls(load_section(data, "party", PartySection), load_section(data, "hsm", HsmConfig),
                   load_section(data, "chain", ChainSection), load_metrics_section(data, PartyMetricsSection))


def mixed_rng(hsm: Hsm) -> protocols.Rng:
    """Randomness for one session: OS randomness hashed with a seed from the HSM's RNG, so a weak
    source on either side alone does not make nonces predictable."""
    seed = hsm.random(32)
    counter = [0]
    lock = threading.Lock()

    def rng(n: int) -> bytes:
        with lock:
            counter[0] += 1
            ctr = counter[0]
        return hashlib.shake_256(seed + ctr.to_bytes(8, "big") + secrets.token_bytes(32)).digest(n)

    return rng


def chain_reader(section: ChainSection, chain: ChainClient) -> ChainClient | AgreeingReader:
    """What the chain check reads: the failover client, or with `agree` >= 2 a k-of-m reader over one
    client per endpoint, whose disagreements are counted (zrkeyring_party_chain_disagreements_total)."""
    if section.agree < 2:
        return chain
    clients = [ChainClient(config) for config in section.endpoint_configs()]
    log.info("chain check needs %d of %d endpoints to agree: %s", section.agree, len(clients),
             ", ".join(section.endpoints))
    return AgreeingReader(clients, section.agree, wait_s=section.agree_wait_s,
                          on_disagreement=metrics.chain_disagreement)


def _leave_reason(exc: Exception) -> int:
    """The leave note's byte for why our run of a signing session ended (refusals say "refused: ...")."""
    if isinstance(exc, SessionTimeout):
        return LeaveReason.TIMEOUT
    if isinstance(exc, JobFailed) and exc.error.startswith("refused"):
        return LeaveReason.REFUSED
    return LeaveReason.FAILED


class PartyDaemon:
    """One party: transport server and client, session runner, share store, local API."""

    def __init__(self, config: PartyConfig, hsm: Hsm, chain: ChainClient) -> None:
        self.config, self.hsm, self.chain = config, MeteredHsm.wrap(hsm, metrics.HSM), chain
        self.reader = chain_reader(config.chain, chain)
        self.checked = KeyCache(self.reader)  # the job check; a key's public key and keyring never change
        hsm = self.hsm
        p = config.party
        self.me = p.index
        self.roster = Roster.load(p.roster).require_complete()
        metrics.prepare_for_cluster(self.roster.indices(), self.me)
        self.keyring = config.chain.keyring or self.roster.cluster.keyring
        if not self.keyring:
            raise ConfigError("chain.keyring: not set, and the roster has no cluster.keyring")
        self._check_identity()
        tls = TlsCredentials.from_bundle(p.tls_dir, sealer=self.hsm)
        # Envelopes: signed with an in-memory key the HSM identity key certifies hourly (envelope_cert.py)
        cluster = self.roster.cluster.name
        self.gate = Gate(self.me, self.roster.identity_keys(), cluster=cluster,
                         announcements=(HELLO_PROTOCOL, RESULT_PROTOCOL, LEAVE_PROTOCOL))
        self.server = PeerServer.from_roster(self.roster, self.me, self.gate, tls, p.listen or None)
        self.client = PeerClient.from_roster(self.roster, self.me, tls, timeout=2.0)
        self.pool = PresignPool(p.presign_pool_max)  # in memory only (presign.py)
        self.liveness = Liveness(self.me, self.roster.indices(), self.client.ping, on_change=self._peer_changed)
        self.server.controller_active = self.liveness.controller_active
        envelope_keys = EnvelopeKeys(self.me, cluster, hsm.sign_identity, random=hsm.random)
        self.runner = SessionRunner(self.me, self.gate, Outbox(self.me, envelope_keys), self.client.send,
                                    RunnerConfig(p.round_timeout_s, p.join_timeout_s), on_contact=self._peer_contact,
                                    is_down=self.liveness.is_down)
        self.gate.on_authenticated = self.liveness.heard
        ensure_dir(p.data_dir, "party.data_dir")
        self.store = ShareStore(Path(p.data_dir) / "shares.sqlite", self.hsm)
        self.state = PartyState(Path(p.data_dir) / "party_state.sqlite")
        self.members = KeyMembers(self.store, hsm, self.keyring, self.me)
        self._key_listing: dict[tuple[int, int, int], dict[str, Any]] = {}  # keys(): per versions
        self.pairs = PairGuard(me=self.me, keyring=self.keyring, store=self.store, state=self.state,
                               sealer=hsm, runner=self.runner, rng_factory=lambda: mixed_rng(self.hsm))
        self.refresher = Refresher(
            me=self.me, keyring=self.keyring, chain_id=config.chain.chain_id, store=self.store, sealer=hsm,
            runner=self.runner, reader=self.reader, height=self.chain.latest_height,
            schedule=RefreshSchedule(p.refresh_period_blocks, p.refresh_window_blocks, p.attempt_blocks),
            rng_factory=lambda: mixed_rng(self.hsm), state=self.state, membership=self._chain_membership,
            request_of=self._request_of)
        self.gate.on_unopened = self._on_unopened
        self.gate.on_announcement = self._on_announcement
        self._signing: dict[bytes, SignJob] = {}  # signing sessions running here, by session id
        self._left: OrderedDict[bytes, set[int]] = OrderedDict()  # leave notes' senders, sessions not begun
        self.joiner = PeerJoiner(self.me, config.chain.chain_id, self.keyring, self._join_peer_session,
                                 p.join_workers, max_age_s=p.join_timeout_s or p.round_timeout_s)
        self.keygen = KeygenFinality(
            me=self.me, keyring=self.keyring, n=len(self.roster.parties), t=self.roster.cluster.threshold,
            store=self.store, sealer=hsm, runner=self.runner, identity_keys=self.roster.identity_keys(),
            sign=hsm.sign_identity, rng_factory=lambda: mixed_rng(self.hsm), request_on_chain=self.reader.key_request)
        self.repair = KeyRepair(
            me=self.me, keyring=self.keyring, parties=self.roster.indices(), t=self.roster.cluster.threshold,
            store=self.store, sealer=hsm, runner=self.runner, identity_keys=self.roster.identity_keys(),
            keygen=self.keygen, pairs=self.pairs, state=self.state, reader=self.reader,
            lister=lambda: self.chain.key_requests(self.keyring, status=FULFILLED_KEY),
            rng_factory=lambda: mixed_rng(self.hsm), threshold=self._repair_threshold)
        self.presigner = Presigner(me=self.me, keyring=self.keyring, pool=self.pool, runner=self.runner,
                                   state=self.state, rng_factory=lambda: mixed_rng(self.hsm),
                                   load_share=self._active_share, busy=self._pool_busy,
                                   version_of=self._active_version)
        self._default_btl: int | None = None
        self.joined = JoinedSignatures()  # signatures of joined sessions, for our controller (joined.py)
        self.local = LocalServer(p.local_socket, self.run_job, self.status, keys=self.keys,
                                 signature=lambda request_id: self.state.signature_of(self.keyring, request_id),
                                 liveness=self.liveness_view, joined=self.joined.since)
        self._lock = threading.Lock()
        self._sessions: OrderedDict[bytes, Future] = OrderedDict()
        self._signer_sets: OrderedDict[tuple[int, int], set[tuple[tuple[int, ...], int]]] = OrderedDict()
        self._request_locks: dict[int, threading.Lock] = {}
        self.sessions_run = 0
        self.drain = Drain(p.data_dir)

    def _chain_membership(self) -> Membership | None:
        """The chain keyring's parties (as roster indices) and threshold, which every key is reshared to
        when its own differ (lifecycle.py); ConfigError when the chain names a party the roster lacks."""
        keyring = self.chain.keyring(self.keyring)
        if keyring is None:
            return None
        return chain_membership(list(keyring.parties), keyring.party_threshold, self.roster)

    def _request_of(self, public_key: bytes) -> int | None:
        """The id of this keyring's fulfilled key request that made `public_key` (the store keys shares
        by request id): found in the listing, then confirmed by the agreed by-id reader."""
        wanted = bytes(public_key)
        for listed in self.chain.key_requests(self.keyring, status=FULFILLED_KEY):
            if bytes(listed.public_key) != wanted:
                continue
            request = self.reader.key_request(int(listed.id))
            if request is not None and request.keyring_addr == self.keyring and request.status == FULFILLED_KEY \
                    and hmac.compare_digest(bytes(request.public_key), wanted):
                return int(listed.id)
        return None

    def _pool_busy(self) -> bool:
        """No fills while a session runs here or the party drains (pools are for idle time)."""
        return self.running_sessions() > 0 or self.drain.on

    def _peer_changed(self, peer: int, live: bool) -> None:
        """A peer that stops being live may come back restarted, with empty pools: our entries shared
        with it would only mismatch, so they go now and are refilled with it once it is back."""
        metrics.peer_live(peer, live)
        if not live:
            self.pool.drop_peer(peer)

    def _on_unopened(self, env: Any) -> None:
        """Sessions a peer starts with us: an OT re-setup, a refresh at once, or a share repair we help
        with."""
        self.pairs.on_unopened(env)
        self.refresher.on_unopened(env)
        self.repair.on_unopened(env)
        self.presigner.on_unopened(env)
        self.joiner.on_unopened(env)
        self._on_leave(env)

    def _check_identity(self) -> None:
        ours = self.hsm.identity_public_key()
        listed = self.roster.party(self.me).identity_key_bytes()
        if ours != listed:
            raise ConfigError(f"party.index: the roster lists identity key {listed.hex()} for party "
                              f"{self.me}, but this HSM's is {ours.hex()} (wrong index or wrong token?)")

    def running_sessions(self) -> int:
        """Sessions started here and not finished (what drain mode waits for)."""
        with self._lock:
            return sum(not future.done() for future in self._sessions.values())

    def tls_reasons(self) -> list[str]:
        """Readiness: this party's certificate and every peer's in the roster are issued by the CA in
        its TLS bundle (the one the transport trusts) and valid now; else no peer handshake can work."""
        tls = Path(self.config.party.tls_dir)
        certs = {"this party's certificate": tls / "party.pem"}
        certs.update({f"party {i}'s certificate (roster)": self.roster.tls_cert_path(i)
                      for i in self.roster.indices() if i != self.me})
        metrics.set_cert_expiry(cert_expiry({"ca": tls / "ca.pem", f"party-{self.me}": tls / "party.pem",
                                             **{f"party-{i}": self.roster.tls_cert_path(i)
                                                for i in self.roster.indices() if i != self.me}}))
        return cert_reasons(tls / "ca.pem", certs)

    def start(self) -> PartyDaemon:
        self.server.start()
        self.local.start()
        self.liveness.start()
        metrics.ENVELOPES.watch(self.gate.counters)
        self.pairs.resume()
        self.repair.start(self.config.party.repair_interval_s)  # missing shares, pending ones, orphans
        log.info("party %d of %s serving peers on %s, controller socket %s", self.me, self.keyring,
                 self.server.listen, self.config.party.local_socket)
        return self

    def stop(self) -> None:
        metrics.ENVELOPES.forget(self.gate.counters)
        self.liveness.stop()
        self.pairs.stop()
        self.repair.stop()
        self.local.stop()
        self.server.stop(grace=1.0)
        self.joiner.close()
        self.runner.close()
        self.client.close()
        self.store.close()
        if isinstance(self.reader, AgreeingReader):
            self.reader.close()
        self.state.close()

    # --- jobs --------------------------------------------------------------------------------------

    def run_job(self, job: Job, peer: int | None = None) -> bytes:
        """Check the job on chain, then run it once per session id (joining a run in flight). `peer`: the
        party whose hello brought the job (join.py), None for a job from our controller."""
        if isinstance(job, RefreshJob):
            return self.refresher.run(job)
        if isinstance(job, PresignJob):
            return self._presign(job)
        try:
            request = check_on_chain(job, self.checked, self.keyring)
        except RequestRefused as exc:
            log.warning("party %d refuses %s request %d: %s", self.me, job.kind, job.request_id, exc,
                        extra={"request_id": job.request_id})
            metrics.SESSIONS_ABORTED.labels(protocol_label(job.key_type), "chain_check",
                                            metrics.NO_CULPRIT).inc()
            raise JobFailed(f"refused: {exc}") from None
        sid = job_session_id(job, self.config.chain.chain_id, self.keyring)
        key = sid  # binds the member set (jobs.job_session_id): jobs naming another P or signer set are other runs
        with self._lock:
            future = self._sessions.get(key)
            owner = future is None
            if owner and self.drain.on:  # drain mode: a session already running is joined, none started
                raise JobFailed(f"party {self.me} is draining: no new sessions (zrkeyring drain off)",
                                retryable=True)
            if owner:
                future = self._sessions[key] = Future()
                while len(self._sessions) > RESULT_CACHE:
                    self._sessions.popitem(last=False)
        if owner:
            try:
                future.set_result(self._execute(job, sid, request, peer))
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def _execute(self, job: Job, sid: bytes, request: Any, peer: int | None = None) -> bytes:
        extra = job_log_fields(job, sid)
        protocol, phase = protocol_label(job.key_type), "keygen" if isinstance(job, KeygenJob) else "sign"
        log.info("party %d runs %s request %d attempt %d (session %s)", self.me, job.kind, job.request_id,
                 job.attempt, sid.hex()[:12], extra=extra)
        metrics.SESSIONS_STARTED.labels(protocol, phase).inc()
        active = metrics.SESSIONS_ACTIVE.labels(protocol)
        active.inc()
        started = time.monotonic()
        reason, culprit = "local_error", None
        try:
            if isinstance(job, KeygenJob):
                result = self._keygen(job, sid)
            else:
                result = self._sign(job, sid, request.mpc_btl, peer)
            metrics.SESSION_SECONDS.labels(protocol, phase).observe(time.monotonic() - started)
            reason = ""
            return result
        except SessionTimeout as exc:
            reason, culprit = "timeout", min(exc.missing, default=None)
            log.warning("party %d: session %s timed out: %s", self.me, sid.hex()[:12], exc, extra=extra)
            raise JobFailed(str(exc), retryable=True, missing=exc.missing) from None
        except SessionCancelled as exc:  # a signer left (its leave note): another set or attempt next
            reason = "peer_left"
            log.warning("party %d: session %s ended: %s", self.me, sid.hex()[:12], exc, extra=extra)
            raise JobFailed(str(exc), retryable=True) from None
        except StateMismatch as exc:  # honest between two parties' commits of a refresh or resharing
            reason = "state_mismatch"
            log.warning("party %d: session %s stopped before any secret-dependent check: %s", self.me,
                        sid.hex()[:12], exc, extra=extra)
            raise JobFailed(f"protocol aborted: {exc}", retryable=True) from None
        except ProtocolError as exc:
            reason, culprit = "peer_misbehaviour", getattr(exc, "culprit", None)
            log.warning("party %d: session %s aborted: %s", self.me, sid.hex()[:12], exc,
                        extra={**extra, "peer": culprit} if culprit is not None else extra)
            raise JobFailed(f"protocol aborted: {exc}", retryable=True, culprit=culprit) from None
        except HsmError:
            reason = "hsm_error"
            raise
        finally:
            active.dec()
            if reason:
                metrics.SESSIONS_ABORTED.labels(protocol, reason, metrics.culprit_label(culprit)).inc()
            self.sessions_run += 1

    def _keygen(self, job: KeygenJob, sid: bytes) -> bytes:
        """Keygen among the job's participants, answered only once final (`finality.py`)."""
        members, t = self._keygen_members()
        participants = self.keygen.participants(job, members, t)
        return self.keygen.run(job, sid, participants)

    def _repair_threshold(self) -> int:
        """The threshold new keys are made with (repair needs that many helpers); the roster's when the
        chain cannot be read or mapped now."""
        try:
            return self._keygen_members()[1]
        except JobFailed:
            return self.roster.cluster.threshold

    def _keygen_members(self) -> tuple[list[int], int]:
        """Who may make a new key and with which threshold: the chain's keyring as this party reads it
        (parties added, removed or a threshold changed since set-up), the roster's before the chain
        names its parties. A keyring the roster cannot map refuses the job (ConfigError)."""
        try:
            membership = self._chain_membership()
        except (ChainDisagreement, ChainUnavailable) as exc:
            raise JobFailed(f"keyring membership unreadable on chain: {exc}", retryable=True) from None
        except ConfigError as exc:
            raise JobFailed(f"refused: {exc}") from None
        if membership is None or not membership.parties:
            return self.roster.indices(), self.roster.cluster.threshold
        return list(membership.parties), membership.threshold

    def _sign(self, job: SignJob, sid: bytes, mpc_btl: int, peer: int | None = None) -> bytes:
        if self.me not in job.signers:
            raise JobFailed(f"party {self.me} is not in the signer set {list(job.signers)}")
        self._check_attempt(job, mpc_btl)
        with self._request_lock(job.request_id):  # one signing session per request at a time
            made = self.state.signature_of(self.keyring, job.request_id)
            if made is not None:  # never a second, different signature for one request
                if peer is not None:  # the peer waits in its session for us: hand it the signature
                    self._send_result(sid, peer, made)
                log.info("party %d already signed request %d: same signature again", self.me, job.request_id,
                         extra=job_log_fields(job, sid))
                return made
            try:
                self._join_signer_set(job, peer)
                signature = self._sign_session(job, sid)
            except SessionCancelled:
                raise  # a signer left: it told the others itself
            except Exception as exc:
                self._send_leave(job, sid, _leave_reason(exc))
                raise
            self.state.record_signature(self.keyring, job.request_id, signature)
            if peer is not None:  # a session a peer opened: our controller may not know of it (joined.py)
                self.joined.add(job.request_id, signature)
            return signature

    def _request_lock(self, request_id: int) -> threading.Lock:
        with self._lock:
            lock = self._request_locks.get(request_id)
            if lock is None:
                if len(self._request_locks) > RESULT_CACHE:  # drop idle locks of old requests
                    for rid in [r for r, lk in self._request_locks.items() if not lk.locked()]:
                        del self._request_locks[rid]
                lock = self._request_locks[request_id] = threading.Lock()
            return lock

    def _join_signer_set(self, job: SignJob, peer: int | None = None) -> None:
        """Count the job's signer set against its budget: MAX_SIGNER_SETS per (request, attempt) for our
        controller's jobs; one signer set (and its retries) per (request, attempt) for each peer whose
        hello we act on (join.py), kept apart so that a peer naming sets cannot use up our controller's."""
        run = (tuple(sorted(job.signers)), job.retry)
        tag = (job.request_id, job.attempt) if peer is None else (job.request_id, job.attempt, peer)
        with self._lock:
            joined = self._signer_sets.setdefault(tag, set())
            if peer is None:
                over = run not in joined and len(joined) >= MAX_SIGNER_SETS
            else:
                over = any(signers != run[0] for signers, _ in joined)
            if over:
                whose = f"(at most {MAX_SIGNER_SETS})" if peer is None else f"from party {peer} (one set each)"
                raise JobFailed(f"refused: party {self.me} already joined {len(joined)} signing sessions of "
                                f"request {job.request_id} attempt {job.attempt} {whose}", retryable=True)
            joined.add(run)
            while len(self._signer_sets) > RESULT_CACHE:
                self._signer_sets.popitem(last=False)

    def _presign(self, job: PresignJob) -> bytes:
        """A pool fill job from our controller: the key must be our keyring's on chain (same public key
        and type) and the signers `threshold` distinct holders of it including us, as for signing."""
        try:
            key = self.checked.key(job.key_id)
        except (ChainDisagreement, ChainUnavailable) as exc:
            raise JobFailed(f"refused: no agreed chain answer for key {job.key_id}: {exc}", retryable=True) from None
        if key is None or key.keyring_addr != self.keyring or bytes(key.public_key) != job.public_key \
                or key.type != job.key_type:
            raise JobFailed(f"refused: key {job.key_id} is not a {job.key_type} key of keyring {self.keyring} "
                            "with that public key")
        self._check_signers(job.public_key, job.signers, f"presign for key {job.key_id}")
        try:
            self.pairs.check_signers(job.key_type, job.public_key, job.signers)
        except PairBurned as exc:
            raise JobFailed(f"refused: {exc}", retryable=True) from None
        return self.presigner.run(job)

    def _sign_session(self, job: SignJob, sid: bytes) -> bytes:
        try:
            self.pairs.check_signers(job.key_type, job.public_key, job.signers)
        except PairBurned as exc:
            raise JobFailed(f"refused: {exc}", retryable=True) from None
        share, version = self._active_share(job.key_type, job.public_key)
        session = protocols.sign_session(job.key_type, share, sid, job.signers, job.data, mixed_rng(self.hsm))
        if self.presigner.enabled:  # one round from our oldest entry, or the full protocol (protocols/pool.py)
            session = self.presigner.wrap(session, job.key_type, job.public_key, version, job.signers, share,
                                          job.data)
        # Durable before the first message leaves: a restart never runs this session id again.
        if not self.state.claim_session(sid, "sign"):
            log.warning("party %d refuses signing session %s already ran (a restart or a replay)", self.me,
                        sid.hex()[:12], extra=job_log_fields(job, sid))
            raise JobFailed(f"refused: signing session {sid.hex()[:12]} already ran on party {self.me} "
                            "(a restart or a replay); a session id is never run twice", retryable=True)
        hello = Hello(job.request_id, job.attempt, job.retry, tuple(sorted(job.signers))).encode()
        with self._lock:
            self._signing[sid] = job
            left = sorted(self._left.pop(sid, set()) & (set(job.signers) - {self.me}))
        if left:  # a signer's note came before we began (a non-signer's counts for nothing)
            self.runner.cancel(sid, f"party {left[0]} left the session before it began here", ahead=True)
        try:
            return self.runner.run(sid, session, join_timeout=True, hello=(HELLO_PROTOCOL, HELLO_ROUND, hello))
        except ProtocolError as exc:
            self.pairs.on_abort(exc, job.public_key)
            self.refresher.on_abort(exc, job.public_key)  # burned a pair: refresh the whole key at once
            raise
        finally:
            with self._lock:
                self._signing.pop(sid, None)
            if isinstance(session, PoolSignSession):
                self.presigner.settle(session, job.key_type, job.public_key, version)

    def _join_peer_session(self, hello: Hello, sender: int) -> None:
        """A peer opened a signing session and announced it (join.py): build the job from the chain
        alone and run it like one from our controller, if our own rules would sign the request (the
        checks of rules/requests.plan_sign, then run_job's). Nothing of the job comes from the peer
        but the session id's fields."""
        try:
            request = self.checked.sign_request(hello.request_id)
            if request is None or request.status not in OPEN_SIGN_STATUSES:
                raise JoinRefused(f"sign request {hello.request_id} is not open on chain")
            sid = hello_session_id(hello, self.config.chain.chain_id, self.keyring)
            made = self.state.signature_of(self.keyring, hello.request_id)
            if made is not None or request.signed_data:  # signed already: hand the opener the signature
                self._send_result(sid, sender, made or bytes(request.signed_data[0].signed_data))
                raise JoinAnswered()
            key = self.checked.key(request.key_ids[0]) if len(request.key_ids) == 1 else None
            plan = plan_sign(request, key, self.keyring, self.chain.latest_height(), margin=0)
        except (ChainDisagreement, ChainUnavailable) as exc:
            raise JoinRefused(f"no agreed chain answer: {exc}") from None
        if plan.decision is not Decision.RUN:
            raise JoinRefused(plan.reason)
        job = SignJob(hello.request_id, request.key_type, key.id, bytes(key.public_key),
                      bytes(request.data_for_signing[0]), hello.signers, hello.attempt, hello.retry)
        log.debug("party %d joins party %d's session of sign request %d attempt %d", self.me, sender,
                 hello.request_id, hello.attempt, extra=job_log_fields(job))
        self.run_job(job, peer=sender)

    def _send_result(self, sid: bytes, peer: int, signature: bytes) -> None:
        """A result note to the peer waiting in session `sid` (join.py): the request's signature."""
        self.runner.note(sid, RESULT_PROTOCOL, RESULT_ROUND, signature, (peer,), self.config.party.round_timeout_s)
        log.info("party %d sent party %d the signature it already had for session %s", self.me, peer,
                 sid.hex()[:12], extra={"peer": peer})

    def _send_leave(self, job: SignJob, sid: bytes, reason: int) -> None:
        """Tell the session's other signers we are out of it (hello.py, the leave note), so none waits a
        round deadline for us; we never run this session id again (the durable claim)."""
        others = tuple(p for p in job.signers if p != self.me)
        self.runner.note(sid, LEAVE_PROTOCOL, LEAVE_ROUND, bytes([reason]), others, LEAVE_SEND_S)

    def _on_announcement(self, env: Any) -> None:
        """Gate hook: an announcement for a session open here (a result note or a leave note)."""
        if env.protocol == LEAVE_PROTOCOL:
            self._on_leave(env)
        else:
            self._on_result_note(env)

    def _on_leave(self, env: Any) -> None:
        """A peer's leave note: end our run of that signing session at once if the sender is one of its
        signers; for a session not begun here yet, keep the note for when it begins (`_sign_session`)."""
        if env.protocol != LEAVE_PROTOCOL or env.round != LEAVE_ROUND:
            return
        with self._lock:
            job = self._signing.get(env.session_id)
            if job is None:  # every sender kept: a non-signer's note must not hide a signer's
                self._left.setdefault(env.session_id, set()).add(env.sender)
                while len(self._left) > RESULT_CACHE:
                    self._left.popitem(last=False)
                return
        if env.sender in job.signers and env.sender != self.me:
            why = LeaveReason.describe(bytes(env.payload))
            self.runner.cancel(env.session_id, f"party {env.sender} {why} and left the session", ahead=True)

    def _on_result_note(self, env: Any) -> None:
        """Gate hook: a peer's result note for a signing session running here. Taken only from a signer
        of that session, and only if it verifies under the key with an independent library: then the
        session ends with it (a bad note is logged and ignored; the session goes on)."""
        if env.protocol != RESULT_PROTOCOL or env.round != RESULT_ROUND:
            return
        with self._lock:
            job = self._signing.get(env.session_id)
        if job is None or env.sender not in job.signers:
            return
        try:
            check_signature(job.key_type, job.public_key, job.data, bytes(env.payload))
        except ResultInvalid as exc:
            log.warning("party %d ignores party %d's result note for sign request %d: %s", self.me, env.sender,
                        job.request_id, exc, extra={"peer": env.sender, "request_id": job.request_id})
            return
        if self.runner.finish(env.session_id, bytes(env.payload)):
            log.info("party %d: party %d had signed request %d already; session %s ends with that signature",
                     self.me, env.sender, job.request_id, env.session_id.hex()[:12],
                     extra={"peer": env.sender, "request_id": job.request_id})

    def _active_version(self, public_key: bytes) -> int:
        """The share version of a key's active share here (the store row, no unseal)."""
        try:
            record = self.store.active_by_public_key(self.keyring, public_key, self.me)
        except StoreError as exc:
            raise JobFailed(f"refused: {exc}") from None
        if record is None:
            raise JobFailed(f"no share of key {public_key.hex()} on party {self.me}")
        return record.meta.share_version

    def _active_share(self, key_type: str, public_key: bytes) -> tuple[Any, int]:
        """The active share of a key and its share version, read while no refresh of that key may be
        committing (so all signers load the same version; lifecycle.py)."""
        lock = self.refresher.key_lock(public_key)
        if not lock.acquire(timeout=LOCK_WAIT_S):
            raise JobFailed(f"key {public_key.hex()[:16]} busy committing a refresh", retryable=True)
        try:  # the store's state and the share's own key are checked against the HSM and the job
            record = self.store.active_by_public_key(self.keyring, public_key, self.me)
            if record is None:
                raise JobFailed(f"no share of key {public_key.hex()} on party {self.me}")
            share = protocols.import_share(key_type, open_share_checked(self.hsm, record, public_key))
            return share, record.meta.share_version
        except StoreError as exc:
            raise JobFailed(f"refused: {exc}") from None
        finally:
            lock.release()

    def _check_signers(self, public_key: bytes, signers: tuple[int, ...], what: str) -> None:
        """`signers` must be the key's threshold of distinct holders, this party among them."""
        try:
            members = self.members.of(public_key)
        except StoreError as exc:
            raise JobFailed(f"refused: {exc}") from None
        if members is None:
            raise JobFailed(f"no share of key {public_key.hex()} on party {self.me}")
        holders, t = list(members[0]), members[1]
        ordered = sorted(set(signers))
        if len(ordered) != len(signers) or len(ordered) != t or not set(ordered) <= set(holders) \
                or self.me not in ordered:
            raise JobFailed(f"refused: signers {list(signers)} are not {t} distinct parties among the "
                            f"key's holders {holders} ({what})")

    def _check_attempt(self, job: SignJob, mpc_btl: int) -> None:
        """The signer set must be `threshold` distinct holders of the key including this one, with the
        key's own holders and threshold read from its authenticated active share (members.py; during a
        resharing they differ from the roster's), and the attempt one the chain height allows now. Every
        such set is a candidate of every attempt (attempts.candidate_sets); with MAX_SIGNER_SETS per
        (request, attempt) and the signer set bound into the session id, the local socket cannot mint
        more than a few sessions per attempt."""
        # the key's own holders and threshold, from its authenticated active share (members.py)
        self._check_signers(job.public_key, job.signers, f"request {job.request_id} attempt {job.attempt}")
        if not 0 <= job.retry < MAX_SET_RETRIES:
            raise JobFailed(f"refused: retry {job.retry} of a signer set (at most {MAX_SET_RETRIES - 1})")
        if self._default_btl is None:
            self._default_btl = self.chain.params().default_btl
        current = attempt_at(self.chain.latest_height(), mpc_btl, self._default_btl,
                             self.config.party.attempt_blocks)
        if not current - 2 <= job.attempt <= current + 1:
            raise JobFailed(f"refused: attempt {job.attempt} of request {job.request_id} is not current "
                            f"(the chain height gives attempt {current})", retryable=True)

    def keys(self) -> list[dict[str, Any]]:
        """Every key this party holds a share of: versions and when the active one was stored.

        Every controller asks every 2 s, so the listing is built from the store's heads (authenticated
        against the HSM-tagged root, no per-row HSM call) and a key's entry is read from its share row
        (tag check, unseal for the holders) only when its (active, pending) versions are new to us."""
        heads = [h for h in self.store.heads() if h.meta.keyring == self.keyring and h.meta.party_index == self.me]
        listing: dict[tuple[int, int, int], dict[str, Any]] = {}
        for head in heads:
            if not head.active_version:
                continue
            versions = (head.meta.key_id, head.active_version, head.pending_version)
            entry = self._key_listing.get(versions)
            if entry is None:
                entry = self._key_entry(head)
            if entry is not None:
                listing[versions] = entry
        self._key_listing = listing
        return list(listing.values())

    def _key_entry(self, head: Any) -> dict[str, Any] | None:
        record = self.store.active(self.keyring, head.meta.key_id, self.me)
        if record is None or record.meta.share_version != head.active_version:
            return None  # changed between the two reads: the next listing has it
        m = record.meta
        return {"public_key": m.group_public_key.hex(), "key_type": m.key_type, "version": m.share_version,
                "pending_version": head.pending_version, "threshold": m.threshold,
                "parties": list(self.members.of_record(record)[0]), "stored_at": record.created_at,
                "request_id": m.key_id}

    def _peer_contact(self, peer: int, ok: bool) -> None:
        """One delivery attempt's outcome: the metric, and an answer is a sign of life (liveness.heard)."""
        metrics.peer_contact(peer, ok)
        if ok:
            self.liveness.heard(peer)

    def liveness_view(self) -> dict[str, Any]:
        """The local API's `Liveness`: who can sign now. Being asked means our controller is active."""
        self.liveness.note_controller()
        return {"live": sorted(self.liveness.live()),
                "peers": {str(p): v for p, v in self.liveness.snapshot().items()}}

    def status(self) -> dict[str, Any]:
        heads = [h for h in self.store.heads() if h.meta.keyring == self.keyring and h.meta.party_index == self.me]
        return {
            "party": self.me,
            "keyring": self.keyring,
            "identity_key": self.hsm.identity_public_key().hex(),
            "chain_address": self.hsm.chain_address(),
            "hsm": self.hsm.token_label,
            "hsm_ready": self.hsm.ready,  # False while the HSM link reconnects (hsm/token.py)
            "sessions": self.sessions_run,
            "envelopes": self.gate.counters(),
            "burned_pairs": [{"public_key": b.public_key.hex(), "peer": b.peer, "reason": b.reason}
                             for b in self.state.burned() if b.keyring == self.keyring],
            "resetups": self.pairs.resetups_done,
            "refresh": asdict(self.refresher.counts),
            "live": sorted(self.liveness.live()),
            "peers_live": {str(p): v for p, v in self.liveness.snapshot().items()},
            # key requests whose share here is pending (awaiting confirmation evidence) or missing
            # (the key was made without this party, or its share was lost: repair gives it back)
            "committed_keys": sorted(h.meta.key_id for h in heads if h.active_version),
            "pending_keys": sorted(h.meta.key_id for h in heads if h.pending_version),
            "missing_keys": {str(k): why for k, why in sorted(self.keygen.missing.items())},
            "repaired_keys": self.repair.repaired,
            "orphans_destroyed": self.repair.destroyed,
            # presignature pools (in memory only: 0 after a restart until refilled; presign.py)
            "presign_pool": self.pool.size(),
            "presign_fills": self.presigner.fills,
        }
