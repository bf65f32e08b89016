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
import logging
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.hsm import Hsm, HsmConfig, HsmError
from appliance.hsm.store import ShareStore, StoreError, open_share_checked
from appliance.mpc_party import metrics
from appliance.mpc_party.envelope import Gate, Outbox
from appliance.mpc_party.finality import KeygenFinality
from appliance.mpc_party.jobs import RequestRefused, check_on_chain, job_session_id
from appliance.mpc_party.keyrepair import KeyRepair
from appliance.mpc_party.local_api import Job, JobFailed, KeygenJob, LocalServer, SignJob, job_log_fields
from appliance.mpc_party.pairguard import PairBurned, PairGuard
from appliance.mpc_party.protocols import dispatch as protocols
from appliance.mpc_party.protocols.wire import ProtocolError
from appliance.mpc_party.runner import RunnerConfig, SessionRunner, SessionTimeout
from appliance.mpc_party.state import PartyState
from appliance.mpc_party.transport import PeerClient, PeerServer, TlsCredentials
from appliance.rules.attempts import attempt_at, quorum
from appliance.rules.keytypes import protocol_label
from appliance.rules.roster import Roster
from appliance.runtime.chain import ChainSection
from appliance.runtime.config import load_section, read_toml
from appliance.runtime.errors import ConfigError
from appliance.runtime.metrics_http import MeteredHsm, MetricsSection, load_metrics_section
from appliance.runtime.paths import ensure_dir
from appliance.runtime.readiness import cert_reasons
from chain_client.agreement import AgreeingReader
from chain_client.client import ChainClient

log = logging.getLogger("zrkeyring.party")

RESULT_CACHE = 4096


@dataclass(frozen=True)
class PartySection:
    """The `[party]` table."""

    index: int
    roster: str
    tls_dir: str
    data_dir: str
    local_socket: str
    listen: str = ""  # default: this party's address in the roster
    round_timeout_s: float = 10.0
    repair_interval_s: float = 30.0  # how often missing shares are looked for on chain, orphans swept
    attempt_blocks: int = 10  # must equal the controllers' [controller] attempt_blocks


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


class PartyDaemon:
    """One party: transport server and client, session runner, share store, local API."""

    def __init__(self, config: PartyConfig, hsm: Hsm, chain: ChainClient) -> None:
        self.config, self.hsm, self.chain = config, MeteredHsm.wrap(hsm, metrics.HSM), chain
        self.reader = chain_reader(config.chain, chain)
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
        self.gate = Gate(self.me, self.roster.identity_keys())
        self.server = PeerServer.from_roster(self.roster, self.me, self.gate, tls, p.listen or None)
        self.client = PeerClient.from_roster(self.roster, self.me, tls, timeout=2.0)
        self.runner = SessionRunner(self.me, self.gate, Outbox(self.me, hsm.sign_identity), self.client.send,
                                    RunnerConfig(p.round_timeout_s), on_contact=metrics.peer_contact)
        ensure_dir(p.data_dir, "party.data_dir")
        self.store = ShareStore(Path(p.data_dir) / "shares.sqlite", self.hsm)
        self.state = PartyState(Path(p.data_dir) / "party_state.sqlite")
        self.pairs = PairGuard(me=self.me, keyring=self.keyring, store=self.store, state=self.state,
                               sealer=hsm, runner=self.runner, rng_factory=lambda: mixed_rng(self.hsm))
        self.gate.on_unopened = self._on_unopened
        self.keygen = KeygenFinality(
            me=self.me, keyring=self.keyring, n=len(self.roster.parties), t=self.roster.cluster.threshold,
            store=self.store, sealer=hsm, runner=self.runner, identity_keys=self.roster.identity_keys(),
            sign=hsm.sign_identity, rng_factory=lambda: mixed_rng(self.hsm), request_on_chain=self.reader.key_request)
        self.repair = KeyRepair(
            me=self.me, keyring=self.keyring, parties=self.roster.indices(), t=self.roster.cluster.threshold,
            store=self.store, sealer=hsm, runner=self.runner, identity_keys=self.roster.identity_keys(),
            keygen=self.keygen, pairs=self.pairs, state=self.state, reader=self.reader,
            lister=lambda: self.chain.key_requests(self.keyring, status="KEY_REQUEST_STATUS_FULFILLED"),
            rng_factory=lambda: mixed_rng(self.hsm))
        self._default_btl: int | None = None
        self.local = LocalServer(p.local_socket, self.run_job, self.status)
        self._lock = threading.Lock()
        self._sessions: OrderedDict[bytes, Future] = OrderedDict()  # by job (session id, keygen participants)
        self.sessions_run = 0

    def _on_unopened(self, env: Any) -> None:
        """Sessions a peer starts with us: an OT re-setup, or a share repair we help with."""
        self.pairs.on_unopened(env)
        self.repair.on_unopened(env)

    def _check_identity(self) -> None:
        ours = self.hsm.identity_public_key()
        listed = self.roster.party(self.me).identity_key_bytes()
        if ours != listed:
            raise ConfigError(f"party.index: the roster lists identity key {listed.hex()} for party "
                              f"{self.me}, but this HSM's is {ours.hex()} (wrong index or wrong token?)")

    def tls_reasons(self) -> list[str]:
        """Readiness: this party's certificate and every peer's in the roster are issued by the CA in
        its TLS bundle (the one the transport trusts) and valid now; else no peer handshake can work."""
        tls = Path(self.config.party.tls_dir)
        certs = {"this party's certificate": tls / "party.pem"}
        certs.update({f"party {i}'s certificate (roster)": self.roster.tls_cert_path(i)
                      for i in self.roster.indices() if i != self.me})
        return cert_reasons(tls / "ca.pem", certs)

    def start(self) -> PartyDaemon:
        self.server.start()
        self.local.start()
        metrics.ENVELOPES.watch(self.gate.counters)
        self.pairs.resume()
        self.repair.start(self.config.party.repair_interval_s)  # missing shares, pending ones, orphans
        log.info("party %d of %s serving peers on %s, controller socket %s", self.me, self.keyring,
                 self.server.listen, self.config.party.local_socket)
        return self

    def stop(self) -> None:
        metrics.ENVELOPES.forget(self.gate.counters)
        self.pairs.stop()
        self.repair.stop()
        self.local.stop()
        self.server.stop(grace=1.0)
        self.runner.close()
        self.client.close()
        self.store.close()
        if isinstance(self.reader, AgreeingReader):
            self.reader.close()
        self.state.close()

    # --- jobs --------------------------------------------------------------------------------------

    def run_job(self, job: Job) -> bytes:
        """Check the job on chain, then run it once per session id (joining a run in flight)."""
        try:
            request = check_on_chain(job, self.reader, self.keyring)
        except RequestRefused as exc:
            log.warning("party %d refuses %s request %d: %s", self.me, job.kind, job.request_id, exc,
                        extra={"request_id": job.request_id})
            metrics.SESSIONS_ABORTED.labels(protocol_label(job.key_type), "chain_check",
                                            metrics.NO_CULPRIT).inc()
            raise JobFailed(f"refused: {exc}") from None
        sid = job_session_id(job, self.config.chain.chain_id, self.keyring)
        # a keygen's sessions are bound to its participants too: jobs naming another P are other runs
        key = sid + b"".join(p.to_bytes(2, "big") for p in sorted(job.parties)) if isinstance(job, KeygenJob) else sid
        with self._lock:
            future = self._sessions.get(key)
            owner = future is None
            if owner:
                future = self._sessions[key] = Future()
                while len(self._sessions) > RESULT_CACHE:
                    self._sessions.popitem(last=False)
        if owner:
            try:
                future.set_result(self._execute(job, sid, request))
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def _execute(self, job: Job, sid: bytes, request: Any) -> bytes:
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
                result = self._sign(job, sid, request.mpc_btl)
            metrics.SESSION_SECONDS.labels(protocol, phase).observe(time.monotonic() - started)
            reason = ""
            return result
        except SessionTimeout as exc:
            reason, culprit = "timeout", min(exc.missing, default=None)
            log.warning("party %d: session %s timed out: %s", self.me, sid.hex()[:12], exc, extra=extra)
            raise JobFailed(str(exc), retryable=True, missing=exc.missing) from None
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
        participants = self.keygen.participants(job, self.roster.indices())
        return self.keygen.run(job, sid, participants)

    def _sign(self, job: SignJob, sid: bytes, mpc_btl: int) -> bytes:
        if self.me not in job.signers:
            raise JobFailed(f"party {self.me} is not in the signer set {list(job.signers)}")
        self._check_attempt(job, mpc_btl)
        try:
            self.pairs.check_signers(job.key_type, job.public_key, job.signers)
        except PairBurned as exc:
            raise JobFailed(f"refused: {exc}", retryable=True) from None
        try:  # the store's state and the share's own key are checked against the HSM and the job
            record = self.store.active_by_public_key(self.keyring, job.public_key, self.me)
            if record is None:
                raise JobFailed(f"no share of key {job.public_key.hex()} on party {self.me}")
            share = protocols.import_share(job.key_type, open_share_checked(self.hsm, record, job.public_key))
        except StoreError as exc:
            raise JobFailed(f"refused: {exc}") from None
        session = protocols.sign_session(job.key_type, share, sid, job.signers, job.data, mixed_rng(self.hsm))
        # Durable before the first message leaves: a restart never runs this session id again.
        if not self.state.claim_session(sid, "sign"):
            log.warning("party %d refuses signing session %s already ran (a restart or a replay)", self.me,
                        sid.hex()[:12], extra=job_log_fields(job, sid))
            raise JobFailed(f"refused: signing session {sid.hex()[:12]} already ran on party {self.me} "
                            "(a restart or a replay); a session id is never run twice", retryable=True)
        try:
            return self.runner.run(sid, session)
        except ProtocolError as exc:
            self.pairs.on_abort(exc, job.public_key)
            raise

    def _check_attempt(self, job: SignJob, mpc_btl: int) -> None:
        """The signer set must be the quorum rule's for the job's attempt, and the attempt one the
        chain height allows now: the local socket cannot choose signers or mint extra sessions."""
        expected = quorum(self.roster.indices(), self.roster.cluster.threshold, job.request_id, job.attempt)
        if sorted(job.signers) != expected:
            raise JobFailed(f"refused: signers {sorted(job.signers)} are not the quorum {expected} of "
                            f"request {job.request_id} attempt {job.attempt}")
        if self._default_btl is None:
            self._default_btl = self.chain.params().default_btl
        current = attempt_at(self.chain.latest_height(), mpc_btl, self._default_btl,
                             self.config.party.attempt_blocks)
        if not current - 2 <= job.attempt <= current + 1:
            raise JobFailed(f"refused: attempt {job.attempt} of request {job.request_id} is not current "
                            f"(the chain height gives attempt {current})", retryable=True)

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
            # key requests whose share here is pending (awaiting confirmation evidence) or missing
            # (the key was made without this party, or its share was lost: repair gives it back)
            "committed_keys": sorted(h.meta.key_id for h in heads if h.active_version),
            "pending_keys": sorted(h.meta.key_id for h in heads if h.pending_version),
            "missing_keys": {str(k): why for k, why in sorted(self.keygen.missing.items())},
            "repaired_keys": self.repair.repaired,
            "orphans_destroyed": self.repair.destroyed,
        }
