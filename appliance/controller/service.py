"""The controller (`zrkeyring controller run`): this party's view of the chain and its voice on it.

Each tick (every `poll_interval_s`):
1. read the chain height and every PENDING/PARTIAL key and signature request of our keyring;
2. plan each request the same way every party does (`planner`): reject bad ones, skip parents and
   requests near their timeout, and start a job on the local party daemon for the rest — keygen with
   every live party; signing only if this party is in the quorum: the first live set of the attempt's
   candidates it has not tried yet (`quorum.py`, on its party daemon's liveness view). The attempt
   number comes from the chain height; a failed session is followed at once by the next live set;
3. a signature that another party already posted (request PARTIAL) is verified and repeated: parties
   outside the quorum learn it that way;
4. post every verified result and rejection in one transaction, after recording its exact bytes in the
   journal (fsynced), never for a request whose `keyring_party_sigs` already holds our address, and
   only as many as this party's account can pay for (the chain charges each fulfilment to its poster;
   an unpaid one would fail the whole tx): the rest wait in the journal, with one warning per
   `FUNDS_WARNING_INTERVAL_S` instead of a failing tx per tick (`fees.py`);
5. follow the transaction to inclusion; if it expires unincluded (timeout height passed) or fails,
   the requests go back to be posted again after a fresh check of the chain.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from appliance.controller import ica, metrics
from appliance.controller.deadlines import Deadlines
from appliance.controller.fees import Fees
from appliance.controller.journal import Entry, Journal, State
from appliance.controller.lifecycle import RefreshDriver
from appliance.controller.members import KeyMembers
from appliance.controller.outbox import answers_to_post
from appliance.controller.presign import PoolFiller
from appliance.controller.quorum import QuorumPicker
from appliance.controller.scheduler import (
    SHED_ADMISSION,
    SHED_DEADLINE,
    SHED_EXPIRING_ANSWER,
    BlockClock,
    EdfQueue,
    JobScheduler,
    OpenSign,
    ShedLog,
    admitted,
    next_poll_wait,
)
from appliance.hsm import Hsm, HsmConfig
from appliance.mpc_party.local_api import U64, JobFailed, KeygenJob, PartyClient, SignJob, job_log_fields
from appliance.rules.attempts import attempt_at, rotation_order
from appliance.rules.lifecycle import RefreshSchedule
from appliance.rules.membership import Membership, chain_membership
from appliance.rules.requests import Decision, clip_reason, plan_key_request, plan_sign
from appliance.rules.roster import MAX_INDEX, Roster
from appliance.rules.verify import ResultInvalid, check_public_key, check_signature
from appliance.runtime.chain import ChainSection
from appliance.runtime.config import bounded, load_section, read_toml
from appliance.runtime.drain import Drain
from appliance.runtime.logs import log_failure
from appliance.runtime.metrics_http import MeteredHsm, MetricsSection, load_metrics_section
from appliance.runtime.paths import ensure_dir
from chain_client import messages
from chain_client.client import ChainClient
from chain_client.crypto import signer_address
from chain_client.errors import WRONG_SEQUENCE, ChainTxError, ChainUnavailable

log = logging.getLogger("zrkeyring.controller")

OPEN_STATUSES = ("PENDING", "PARTIAL")
LIST_PAGE_LIMIT = 500  # open requests per list query page (fewer round trips when the backlog is long)
MAX_ANSWERS_PER_TX = 20  # keeps a fulfilment tx well inside the default 300k gas
LATE_POST_BLOCKS = 2  # parties outside the eager set wait this long before repeating an answer
NEAR_TIMEOUT_BLOCKS = 5  # a pending request this close to mpc_btl counts as near its timeout
KIND_LABELS = {"key": "key", "sign": "signature"}  # journal kind -> metrics `kind` label
FUNDS_REFRESH_S = 5.0  # balance and keyring fees are re-read at least this often (every post reads the balance)
FUNDS_WARNING_INTERVAL_S = 60.0  # an account that cannot pay is warned about once per interval, not per tick
RECONSIDER_ALL_S = 10.0  # every open request is planned afresh at least this often (`_settled` is a cache)
PENDING_METRICS_S = 1.0  # the pending-request gauges are recounted at most this often (a pass over every one)
JOINED_KEPT = 4096  # joined-session signatures held until their request is next considered
STOP_CHECK_S = 0.1  # a paused loop looks at its stop event at least this often
MEMBERSHIP_REFRESH_S = 5.0  # the chain keyring's parties and threshold (who makes new keys) are re-read this often


@dataclass(frozen=True)
class ControllerSection:
    """The `[controller]` table."""

    index: int = bounded(1, MAX_INDEX)
    roster: str
    party_socket: str
    data_dir: str
    poll_interval_s: float = bounded(0.01, 3600.0, 0.5)
    # the chain's default request lifetime in blocks (anchors the attempt clock)
    default_btl: int = bounded(1, U64, 20)
    attempt_blocks: int = bounded(1, 1 << 32, 10)  # blocks per attempt before the quorum rotates
    start_margin_blocks: int = bounded(0, U64, 2)  # do not start work this close to a request's timeout
    # a posted tx not included within this many blocks can never land
    tx_timeout_blocks: int = bounded(1, U64, 10)
    job_timeout_s: float = bounded(0.1, 86400.0, 60.0)
    workers: int = bounded(1, 256, 8)
    # scheduled refresh of every key once per period (0: off); must equal the parties'
    refresh_period_blocks: int = bounded(0, 1 << 32, 0)
    refresh_window_blocks: int = bounded(1, 1 << 32, 30)  # each phase of a key's refresh slot; = parties'
    # an answer is posted only if its request stays open this many blocks more
    post_margin_blocks: int = bounded(0, U64, 2)
    shed_log_interval_s: float = bounded(0.1, 86400.0, 60.0)  # shed jobs summarised at most this often
    # presignature pool entries kept per (hot key, signer set) in idle time (0: no fill jobs; presign.py)
    presign_pool_per_key: int = bounded(0, 64, 0)
    presign_hot_keys: int = bounded(1, 1024, 8)  # the keys most recently signed with that are kept warm
    # keyring-wide admission (scheduler.admitted): signing sessions a block the keyring takes on; 0: off.
    # Must equal the other parties' (every party then drops the same requests past capacity).
    admission_per_block: float = bounded(0.0, 100000.0, 0.0)


@dataclass(frozen=True)
class ControllerMetricsSection(MetricsSection):
    """The `[metrics]` table of the controller (absent: no /metrics server)."""

    address: str = "127.0.0.1:9811"


@dataclass(frozen=True)
class ControllerConfig:
    controller: ControllerSection
    hsm: HsmConfig
    chain: ChainSection
    metrics: ControllerMetricsSection = ControllerMetricsSection(address="")  # no [metrics] table: no server

    @classmethod
    def load(cls, path: str | Path) -> ControllerConfig:
        data = read_toml(path)
        return cls(load_section(data, "controller", ControllerSection), load_section(data, "hsm", HsmConfig),
                   load_section(data, "chain", ChainSection), load_metrics_section(data, ControllerMetricsSection))


def reject_label(reason: str) -> str:
    """The metrics `reason` label of a planner/controller rejection text."""
    text = reason.lower()
    if "unsupported key type" in text:
        return "unsupported_key_type"
    if "unknown key" in text or "belongs to keyring" in text:
        return "unknown_key"
    return "invalid_request"


def signature_verifies(req: Any, public_key: bytes, data: bytes, signature: bytes, what: str) -> bool:
    """Does `signature` verify under the request's key and data? One that does not is named in the log
    (as `what`) and never posted."""
    try:
        check_signature(req.key_type, public_key, data, signature)
    except ResultInvalid as exc:
        log.warning("sign request %d: %s is invalid: %s", req.id, what, exc, extra={"request_id": req.id})
        return False
    return True


class HsmChainSigner:
    """chain_client's Signer backed by the HSM chain account key (which never leaves the token)."""

    def __init__(self, hsm: Hsm) -> None:
        self._hsm = MeteredHsm.wrap(hsm, metrics.HSM)
        self._public = hsm.chain_public_key()

    def public_key(self) -> bytes:
        return self._public

    def sign_digest(self, digest: bytes) -> bytes:
        return self._hsm.sign_chain(digest)


@dataclass(frozen=True)
class _QueuedJob:
    """A job waiting for a worker, with its request's deadline (the scheduler's order)."""

    job: KeygenJob | SignJob
    key_type: str
    sign_ctx: tuple[bytes, bytes] | None
    deadline: int


@dataclass
class _Open:
    """One open request as seen this tick."""

    kind: str
    request: Any  # KeyReqResponse or SignReqResponse


class Controller:
    def __init__(self, config: ControllerConfig, chain: ChainClient, signer: Any, party: PartyClient) -> None:
        self.config, self.chain, self.signer, self.party = config, chain, signer, party
        c = config.controller
        self.roster = Roster.load(c.roster).require_complete()
        self.keyring = config.chain.keyring or self.roster.cluster.keyring
        self.me, self.parties = c.index, self.roster.indices()
        self.threshold = self.roster.cluster.threshold
        self.address = signer_address(signer)
        ensure_dir(c.data_dir, "controller.data_dir")
        self.journal = Journal(Path(c.data_dir) / "journal.sqlite")
        self.quorum = QuorumPicker(self.me, self.parties, self.threshold)  # liveness view, sets tried
        queue = EdfQueue(BlockClock(), ShedLog(c.shed_log_interval_s, metrics.job_shed), c.post_margin_blocks,
                         max_job_blocks=max(1, c.attempt_blocks // 2))  # a job may always start early in its attempt
        self.scheduler = JobScheduler(c.workers, self._run_queued, self._job_shed, queue, check=self._stale_job)
        self._started: set[tuple] = set()  # (kind, request id, attempt, members, retry) of jobs started
        self._running: set[tuple[str, int]] = set()  # requests with a job queued or running here
        self.drain = Drain(c.data_dir)
        self._eager: set[tuple[str, int]] = set()  # answers this party posts at once (it was in the quorum)
        self._ready_height: dict[tuple[str, int], int] = {}  # when a late poster first had its answer
        self._job_answered: dict[tuple[str, int], int] = {}  # height when our own job's answer was ready
        self._first_seen: dict[tuple[str, int], float] = {}  # open requests: when first seen (metrics)
        self._keys: dict[int, Any] = {}
        self._expiring: set[tuple[str, int]] = set()  # answers counted as shed: expiring before a tx lands
        self._admitted: set[int] | None = None  # sign requests the admission rule takes at this height
        self._not_admitted: set[int] = set()  # counted as shed (once per request)
        self._listing: tuple[int, dict[tuple[str, int], _Open]] | None = None  # (height, open requests)
        self._fresh = True  # this tick read a new listing (a new height)
        self._block_unix: float | None = None  # the chain's time of the newest block seen (next_poll_wait)
        self._pending_counted = float("-inf")  # monotonic time of the last _count_pending
        self._listers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="list")
        # Sign requests whose plan for the current attempt is made (job queued, not ours, skipped), with the
        # request's view then (attempt, status, signatures on chain): under a backlog of hundreds of
        # open requests, planning every one of them afresh every tick was most of the controller's CPU.
        self._settled: dict[int, tuple[int, str, int, int]] = {}
        # Sign requests no job of ours can finish any more (their deadline is too close), with their view
        # then (status, signatures on chain): under overload most of the open backlog, which was planned
        # and shed again at every attempt. Planned again only when that view changes, our party signs
        # one in a peer's session, or every plan is (`_expire_settled`).
        self._doomed: dict[int, tuple[str, int, int]] = {}
        self._settled_view: tuple[Any, ...] = ()  # what every plan depends on beside the request itself
        self._attempts: tuple[int, dict[int, int]] = (-1, {})  # (height, mpc_btl -> attempt then): `_attempt`
        self._settled_at = float("-inf")
        self._reconsider: set[int] = set()  # sign requests to plan again at once (their job ended; job threads)
        self._shed_signs: list[SignJob] = []  # sign jobs shed unstarted, for the tick to unmark (`_job_shed`)
        self._joined_boot, self._joined_next = "", 0  # our party's joined-session log: its run and our cursor
        self._joined: OrderedDict[int, bytes] = OrderedDict()  # sign request id -> signature made on a peer's hello
        self._sent_height: dict[str, int] = {}  # tx hash -> height when we broadcast it (this run)
        self.inclusion_blocks = 1.0  # moving average: blocks from our broadcast to inclusion
        self.members = KeyMembers(party)
        self.membership: Membership | None = None  # the chain keyring's parties and threshold (None: roster)
        self._membership_read = float("-inf")
        self.deadlines = Deadlines(chain)  # mpc_btl: the key request list leaves it empty
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by a job thread with an answer to post now (`_pause`)
        self.height = 0
        self.last_fulfilment = 0.0
        self._key_types: dict[tuple[str, int], str] = {}  # metrics labels of requests seen this run
        self._reject_reasons: dict[tuple[str, int], str] = {}
        self._fees: Fees | None = None  # the keyring's fees and our tx fee, re-read every FUNDS_REFRESH_S
        self._funds_read = float("-inf")
        self._funds_warned = float("-inf")  # monotonic time of the last "cannot pay" warning
        self._short_of_funds = False
        self.balance: int | None = None
        self.presign = PoolFiller(party, self.me, c.presign_pool_per_key, c.presign_hot_keys, self.members.of)
        self.refresh = RefreshDriver(chain=chain, party=party, keyring=self.keyring, job_timeout_s=c.job_timeout_s,
                                     schedule=RefreshSchedule(c.refresh_period_blocks, c.refresh_window_blocks,
                                                              c.attempt_blocks))

    # --- the loop ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a restart: re-send the exact bytes of every transaction that was in flight."""
        for tx in self.journal.open_txs():
            log.info("re-broadcasting journalled tx %s (sequence %d)", tx.tx_hash[:12], tx.sequence)
            self._broadcast(tx.tx_hash, tx.tx_bytes)

    def tick(self) -> None:
        started = time.monotonic()
        _chain_id, self.height, block_time = self.chain.latest_block()
        self._block_unix = block_time.timestamp() if block_time is not None else None
        metrics.CHAIN_HEIGHT.set(self.height)
        self.scheduler.observe(self.height, block_time.timestamp() if block_time is not None else None)
        self._follow_txs()  # settle in-flight txs first, so the requests read next reflect them
        opened = self._open_requests()
        self.deadlines.forget(set(opened))
        with self._lock:
            for tag in [t for t in self._job_answered if t not in opened]:
                del self._job_answered[tag]
        self.quorum.refresh(self.party)
        self._read_membership()
        self.quorum.forget({request_id for kind, request_id in opened if kind == "sign"})
        if self._fresh:  # admission reads only the listing and the height
            self._admitted = self._admission(opened)
        self._read_joined()
        self._expire_settled()
        for item in opened.values():
            self._consider(item)
        self._post(opened)
        self.refresh.tick(self.height)  # scheduled refresh: its own worker, one key at a time
        if time.monotonic() - self._funds_read >= FUNDS_REFRESH_S:
            self._read_funds()  # keeps the balance gauges fresh while nothing is waiting to be posted
        if self._fresh and time.monotonic() - self._pending_counted >= PENDING_METRICS_S:
            self._count_pending(opened)
            self._pending_counted = time.monotonic()
        with self._lock:
            idle = not self._running and not self.scheduler.queued() and not self.drain.on
        self.presign.tick(idle, self.quorum.live)  # presignature pools, only while nothing else is to do
        self.journal.flush()  # this tick's new "seen" rows and attempts, in one write
        metrics.JOBS_QUEUED.set(self.scheduler.queued())
        metrics.CHAIN_PROCESSED_HEIGHT.set(self.height)
        now = time.time()
        lag = now - block_time.timestamp() if block_time is not None else time.monotonic() - started
        metrics.CHAIN_POLL_LAG.set(max(0.0, lag))
        metrics.CHAIN_LAST_POLL.set(now)

    def _read_membership(self) -> None:
        """The chain keyring's parties (roster indices) and threshold, re-read every MEMBERSHIP_REFRESH_S:
        new keys are made among them (each party checks the same against its own reading)."""
        if time.monotonic() - self._membership_read < MEMBERSHIP_REFRESH_S:
            return
        try:
            keyring = self.chain.keyring(self.keyring)
            self.membership = (chain_membership(list(keyring.parties), keyring.party_threshold, self.roster)
                               if keyring is not None and keyring.parties else None)
        except Exception as exc:  # unreachable, or a party the roster lacks: keep the last reading
            log.warning("keyring membership from the chain unusable (%s); new keys use the last reading", exc)
            return
        self._membership_read = time.monotonic()

    def _keygen_members(self) -> tuple[list[int], int]:
        if self.membership is None:
            return self.parties, self.threshold
        return list(self.membership.parties), self.membership.threshold

    def _count_pending(self, opened: dict[tuple[str, int], _Open]) -> None:
        """Open on chain and not yet answered by us (journal entry not done): how many, how many close to
        their timeout, and how long the oldest has waited since this controller first saw it."""
        counts = dict.fromkeys(KIND_LABELS.values(), 0)
        near = dict.fromkeys(KIND_LABELS.values(), 0)
        oldest = dict.fromkeys(KIND_LABELS.values(), 0.0)
        now = time.time()
        for (kind, request_id), item in opened.items():
            entry = self.journal.get(kind, request_id)
            if entry is not None and entry.state is State.DONE:
                continue
            label = KIND_LABELS[kind]
            counts[label] += 1
            deadline = self.deadlines.of(kind, item.request)
            if deadline and deadline - self.height <= NEAR_TIMEOUT_BLOCKS:
                near[label] += 1
            seen = self._first_seen.setdefault((kind, request_id), now)
            oldest[label] = max(oldest[label], now - seen)
        for label, count in counts.items():
            metrics.PENDING_REQUESTS.labels(label).set(count)
            metrics.REQUESTS_NEAR_TIMEOUT.labels(label).set(near[label])
            metrics.OLDEST_PENDING_AGE.labels(label).set(oldest[label])
        for tag in [t for t in self._first_seen if t not in opened]:
            del self._first_seen[tag]

    def _open_requests(self) -> dict[tuple[str, int], _Open]:
        """Every open request of our keyring. Chain state changes only from one block to the next, so
        while the height is the one of the last listing that listing is still exact and is reused (the
        controller polls faster than blocks come; under load the listing is hundreds of requests)."""
        self._fresh = self._listing is None or self._listing[0] != self.height
        if not self._fresh:
            return dict(self._listing[1])
        # The four lists are asked at once: a tick's length is what paces posting (one tx in flight).
        queries = [(kind, query, f"{prefix}_{status}") for status in OPEN_STATUSES for kind, query, prefix in
                   (("key", self.chain.key_requests, "KEY_REQUEST_STATUS"),
                    ("sign", self.chain.sign_requests, "SIGN_REQUEST_STATUS"))]
        pending = [(kind, self._listers.submit(query, self.keyring, status, page_limit=LIST_PAGE_LIMIT))
                   for kind, query, status in queries]
        found: dict[tuple[str, int], _Open] = {}
        # A request moving from PENDING to PARTIAL while the lists are read may miss both for one block:
        # its absence decides nothing (a journalled answer is settled only after reading it by id).
        for kind, future in pending:
            for req in future.result():
                found[(kind, req.id)] = _Open(kind, req)
        self._listing = (self.height, found)
        return dict(found)

    @staticmethod
    def _party_sigs(request: Any) -> Any:
        """The request's PartySignature list: SignReqResponse names it `keyring_party_sigs`, KeyReqResponse
        `keyring_party_signatures` (../shared/zrchain-wire.md, "Query responses")."""
        sigs = getattr(request, "keyring_party_sigs", None)
        return request.keyring_party_signatures if sigs is None else sigs

    def _posted_by_us(self, request: Any) -> bool:
        return any(s.creator == self.address for s in self._party_sigs(request))

    def _plan_view(self, req: Any) -> tuple[int, str, int, int]:
        """What a sign request's plan depends on that can change while it is open: its attempt (from
        the height), its status and the signatures on chain."""
        return self._attempt(self.deadlines.of("sign", req)), *self._chain_view(req)

    @staticmethod
    def _chain_view(req: Any) -> tuple[str, int, int]:
        """A sign request's status and the signatures on chain: what the parties have done with it."""
        return req.status, len(req.signed_data), len(req.keyring_party_sigs)

    def _expire_settled(self) -> None:
        """Plans hold until their request's view changes, or their job ends (`_reconsider`), or what every
        plan reads changes (live parties, the chain keyring's membership, drain mode), and never longer
        than RECONSIDER_ALL_S."""
        view = (frozenset(self.quorum.live), self.membership, self.drain.on)
        now = time.monotonic()
        if view != self._settled_view or now - self._settled_at >= RECONSIDER_ALL_S:
            self._settled.clear()
            self._doomed.clear()  # the job estimates may have come down since
            self._settled_view, self._settled_at = view, now
        with self._lock:
            again, self._reconsider = self._reconsider, set()
            shed, self._shed_signs = self._shed_signs, []
        for request_id in again:
            self._settled.pop(request_id, None)
            self._doomed.pop(request_id, None)
        for job in shed:
            self.quorum.unmark_tried(job.request_id, job.attempt, tuple(job.signers))

    def _consider(self, item: _Open) -> None:
        req = item.request
        if item.kind == "sign":
            if req.id in self._doomed and self._doomed[req.id] == self._chain_view(req):
                return  # no job of ours can finish it, and nobody has signed it since
            if req.id in self._settled and self._settled[req.id] == self._plan_view(req):
                return  # planned for this attempt already, and nothing it depends on has changed
        tag = (item.kind, req.id)
        self._key_types[tag] = metrics.key_type_label(req.key_type)
        if self.journal.get(item.kind, req.id) is None:
            metrics.REQUESTS_SEEN.labels(KIND_LABELS[item.kind], self._key_types[tag]).inc()
        entry = self.journal.observe(item.kind, req.id)
        if entry.state in (State.DONE, State.POSTING):
            return
        if self._posted_by_us(req):
            self.journal.mark_done(item.kind, req.id, "our fulfilment is on chain")
            return
        if entry.state in (State.RESULT, State.REJECT):
            return
        if item.kind == "key":
            self._consider_key(req)
        else:
            self._consider_sign(req)

    def _attempt(self, mpc_btl: int) -> int:
        """The attempt in force now; one computation per deadline and height (requests created in one
        block share it, and a tick asks for hundreds)."""
        if self._attempts[0] != self.height:
            self._attempts = (self.height, {})
        found = self._attempts[1].get(mpc_btl)
        if found is None:
            found = self._attempts[1][mpc_btl] = self._attempt_at(self.height, mpc_btl)
        return found

    def _attempt_at(self, height: int, mpc_btl: int) -> int:
        c = self.config.controller
        return attempt_at(height, mpc_btl, c.default_btl, c.attempt_blocks)

    def _consider_key(self, req: Any) -> None:
        c = self.config.controller
        deadline = self.deadlines.of("key", req)
        plan = plan_key_request(req.key_type, deadline, self.height, c.start_margin_blocks)
        if plan.decision is Decision.REJECT:
            self._reject("key", req.id, plan.reason)
        elif plan.decision is Decision.RUN:
            attempt = self._attempt(deadline)
            if self.quorum.eager(req.id, attempt):
                self._eager.add(("key", req.id))  # every party makes the key; a quorum posts it first
            parties, threshold = self._keygen_members()
            job = KeygenJob(req.id, req.key_type, self.quorum.keygen_parties(parties, threshold), threshold, attempt)
            self._start(job, req.key_type, None)

    def _consider_sign(self, req: Any) -> None:
        c = self.config.controller
        deadline = self.deadlines.of("sign", req)
        # the ICA rule, the request's shape and timing, its key: rules/requests.py (the party daemon
        # applies the same before joining a session a peer opened)
        key = self._key(req.key_ids[0]) if len(req.key_ids) == 1 and not req.child_req_ids else None
        plan = plan_sign(req, key, self.keyring, self.height, c.start_margin_blocks, mpc_btl=deadline)
        if plan.decision is Decision.SKIP:
            self._settled[req.id] = self._plan_view(req)
            return
        if plan.decision is Decision.REJECT:
            self._reject("sign", req.id, plan.reason)
            return
        public_key, data = bytes(key.public_key), bytes(req.data_for_signing[0])
        if self._adopt_posted_signature(req, public_key, data) or self._post_joined(req, public_key, data):
            return
        if self._admitted is not None and req.id not in self._admitted:
            self._shed_by_admission(req.id)
            return  # not settled: the next height's admission may take it
        if deadline and not self.scheduler.could_finish(KIND_LABELS["sign"], deadline):
            self._doom(req)
            return
        self._settled[req.id] = self._plan_view(req)  # whatever follows holds for this attempt
        attempt = self._attempt(deadline)
        self.presign.note_sign(key.id, req.key_type, public_key)  # a hot key: its pools are kept warm
        members = self.members.of(public_key)  # the key's own holders and threshold (members.py)
        run = self.quorum.signers(req.id, attempt, *members) if members else None
        if run is not None and self.me in run[0]:
            self._eager.add(("sign", req.id))
            job = SignJob(req.id, req.key_type, key.id, public_key, data, run[0], attempt, run[1])
            self._start(job, req.key_type, (public_key, data))

    def _admission(self, opened: dict[tuple[str, int], _Open]) -> set[int] | None:
        """The keyring-wide admission decision at this height (None: the rule is off). Only chain data
        goes in (ids, deadlines, whether a signature is already on chain, parents), so every party
        that reads the same height decides alike (scheduler.admitted). A request's deadline here is the
        end of its current attempt: one admitted must be reached while the quorum that admitted it is
        still its quorum, or its session starts after the rotation and meets nobody; the backlog taken
        on is then at most an attempt deep, not a lifetime."""
        c = self.config.controller
        if c.admission_per_block <= 0:
            return None
        signs = [OpenSign(req.id, self._attempt_end(self.deadlines.of("sign", req)),
                          not (req.signed_data or req.child_req_ids))
                 for (kind, _), item in opened.items() if kind == "sign" for req in (item.request,)]
        self._not_admitted &= {s.request_id for s in signs}
        return admitted(signs, self.height, c.admission_per_block, c.post_margin_blocks)

    def _doom(self, req: Any) -> None:
        """No job of ours could finish this request and have its answer posted before its deadline
        (the scheduler's own test): shed it once, and plan it again only when its view changes."""
        self._doomed[req.id] = self._chain_view(req)
        self.scheduler.queue.shed_log.shed(KIND_LABELS["sign"], SHED_DEADLINE, time.monotonic())
        log.debug("sign request %d: too close to its deadline for a job of ours", req.id,
                  extra={"request_id": req.id})

    def _shed_by_admission(self, request_id: int) -> None:
        if request_id in self._not_admitted:
            return
        self._not_admitted.add(request_id)
        self.scheduler.queue.shed_log.shed(KIND_LABELS["sign"], SHED_ADMISSION, time.monotonic())
        log.debug("sign request %d: not admitted (the backlog ahead fills its lifetime)", request_id,
                  extra={"request_id": request_id})

    def _adopt_posted_signature(self, req: Any, public_key: bytes, data: bytes) -> bool:
        """A PARTIAL request carries the first party's signature: verify it and post the same."""
        for item in req.signed_data:
            signature = bytes(item.signed_data)
            if not signature_verifies(req, public_key, data, signature, "signature posted by another party"):
                return False
            # Our party made this very signature (it was in the poster's session, often joined on the
            # poster's hello before our own job ran): we are that session's partner and complete the
            # request at once. Otherwise the poster has a partner posting too, and racing it to a
            # FULFILLED request fails our tx: a copy is late (staggered, _late_rank).
            if self.party.signature(req.id) == signature:
                log.info("sign request %d: our party made the signature another party posted; posting it",
                         req.id, extra={"request_id": req.id})
                self._eager.add(("sign", req.id))
            else:
                log.info("sign request %d: repeating the verified signature another party posted", req.id,
                         extra={"request_id": req.id})
                self._eager.discard(("sign", req.id))
            self.journal.record_result("sign", req.id, signature)
            return True
        return False

    def _read_joined(self) -> None:
        """What our party signed since the last tick in sessions a peer opened (mpc_party/joined.py):
        our controller may never have queued those requests (it shed them, or had not reached them),
        yet we are the session's partner and our post completes the request."""
        answer = self.party.joined(self._joined_next)
        if answer is not None and answer[0] != self._joined_boot:  # the daemon restarted: read from its start
            self._joined_boot, self._joined_next = answer[0], 0
            answer = self.party.joined(0)
        if answer is None:
            return  # unreachable for now: the next tick asks from the same cursor
        _boot, self._joined_next, found = answer
        for request_id, signature in found:
            self._joined[request_id] = signature
            self._joined.move_to_end(request_id)
            self._settled.pop(request_id, None)  # planned again this tick: posted as the session's partner
            self._doomed.pop(request_id, None)
        while len(self._joined) > JOINED_KEPT:
            self._joined.popitem(last=False)

    def _post_joined(self, req: Any, public_key: bytes, data: bytes) -> bool:
        """Our party made this request's signature in a session a peer opened: verify it and post it
        with the next tx, as that session's partner (eager: the opener posts too, and nobody else)."""
        signature = self._joined.pop(req.id, None)
        if signature is None or not signature_verifies(req, public_key, data, signature,
                                                   "our party's signature from a joined session"):
            return False
        log.info("sign request %d: our party signed it in a session a peer opened; posting it", req.id,
                 extra={"request_id": req.id})
        self._eager.add(("sign", req.id))
        self.journal.record_result("sign", req.id, signature)
        return True

    def _agree_with_chain(self, entry: Entry, req: Any) -> Entry | None:
        """Post the signature the chain already holds, not a second one: zrChain rejects the whole request
        on a signature that differs from the first posted (x/treasury/keeper/
        msg_server_fulfil_signature_request.go, "signed data mismatch"), and two quorums of one request
        may each have made a valid one (docs/architecture.md, "Choosing signers"). None: nothing to post."""
        posted = [bytes(item.signed_data) for item in req.signed_data]
        if not posted or posted[0] == entry.result:
            return entry
        key = self._key(req.key_ids[0]) if req.key_ids else None
        try:
            if key is None:
                raise ResultInvalid(f"unknown key {list(req.key_ids)}")
            check_signature(req.key_type, bytes(key.public_key), bytes(req.data_for_signing[0]), posted[0])
        except ResultInvalid as exc:
            log.warning("sign request %d: the chain holds a signature that does not verify (%s); not posting",
                        req.id, exc, extra={"request_id": req.id})
            return None
        log.info("sign request %d: another quorum's signature is on chain first; posting that one instead of "
                 "ours", req.id, extra={"request_id": req.id})
        self.journal.record_result("sign", req.id, posted[0])
        return self.journal.get("sign", req.id)

    def _key(self, key_id: int) -> Any:
        key = self._keys.get(key_id)
        if key is None:
            key = self.chain.key(key_id)
            if key is not None:
                self._keys[key_id] = key
        return key

    def _reject(self, kind: str, request_id: int, reason: str) -> None:
        log.info("%s request %d will be rejected: %s", kind, request_id, reason,
                 extra={"request_id": request_id})
        self._reject_reasons[(kind, request_id)] = reject_label(reason)
        if self.quorum.eager(request_id, 0):
            self._eager.add((kind, request_id))
        self.journal.record_reject(kind, request_id, clip_reason(reason))

    # --- jobs on the party daemon ------------------------------------------------------------------

    def _start(self, job: KeygenJob | SignJob, key_type: str, sign_ctx: tuple[bytes, bytes] | None) -> None:
        members = tuple(job.parties) if isinstance(job, KeygenJob) else tuple(job.signers)
        tag = (job.kind, job.request_id, job.attempt, members, getattr(job, "retry", 0))
        if self.drain.on:  # drain mode (runtime/drain.py): no new job; the request is reconsidered later
            return
        with self._lock:
            # One job per request at a time: a backlog must not turn into stacked attempts.
            if tag in self._started or (job.kind, job.request_id) in self._running:
                return
            self._started.add(tag)
            self._running.add((job.kind, job.request_id))
        if isinstance(job, SignJob):
            self.quorum.mark_tried(job.request_id, job.attempt, members)
        self.journal.set_attempt(job.kind, job.request_id, job.attempt)
        deadline = self.deadlines.known(job.kind, job.request_id)
        queued = _QueuedJob(job, key_type, sign_ctx, deadline)
        self.scheduler.submit(KIND_LABELS[job.kind], self._session_deadline(queued), queued,
                              tiebreak=job.request_id)

    def _session_deadline(self, queued: _QueuedJob) -> int:
        """The height by which the job's session must be over: the end of its attempt, or the request's
        deadline if sooner. After its attempt the next quorum takes over: its new member starts a
        session of the next attempt, so a session of the old one started that late would only keep
        the members of both waiting for each other (under a backlog: sessions timing out by the
        hundred) and post a second answer that races the first."""
        if not queued.deadline or queued.job.kind == "key":
            return queued.deadline  # every party runs every keygen attempt: only the request's deadline
        return self._attempt_end(queued.deadline, queued.job.attempt)

    def _attempt_end(self, deadline: int, attempt: int | None = None) -> int:
        """The height at which `attempt` (default: the current one) of a request with this deadline
        ends, or the deadline if sooner; 0 for no deadline. Chain data and shared settings only."""
        if not deadline:
            return 0
        c = self.config.controller
        attempt = self._attempt(deadline) if attempt is None else attempt
        created = max(0, deadline - c.default_btl)
        return min(deadline, created + (attempt + 1) * max(1, c.attempt_blocks))

    def _run_queued(self, queued: _QueuedJob) -> bool:
        return self._run_job(queued.job, queued.key_type, queued.sign_ctx)

    def _job_shed(self, queued: _QueuedJob) -> None:
        """A job the scheduler will not start (called from the tick or a job thread). Its request is
        planned again at its next attempt, not at once: a plan made again in the same attempt found
        the shed set marked tried and moved to another signer set or a rerun, queued that, had it shed
        too, and so on every tick (under 3x, 17 sheds per request and quorum partners on different
        sets). The set is unmarked by the tick thread, which owns the quorum picker (`_expire_settled`);
        the `_started` tag stays, so this attempt's job is not queued again."""
        with self._lock:
            self._running.discard((queued.job.kind, queued.job.request_id))
            if isinstance(queued.job, SignJob):
                self._shed_signs.append(queued.job)

    def _stale_job(self, queued: _QueuedJob) -> str | None:
        """Just before a queued job starts: will the parties still accept its attempt? They take the
        current attempt and the two before it (party `_check_attempt`); a job that waited longer would
        only be refused, so it is dropped and the request planned afresh at the current attempt. Jobs
        within that window keep their attempt (and quorum), which the other quorum members still hold."""
        if not queued.deadline:
            return None
        clock = self.scheduler.queue.clock
        height = clock.now_height(time.monotonic()) + 1  # the partner may start a block later
        current = self._attempt_at(height, queued.deadline)
        return f"attempt {queued.job.attempt} passed" if queued.job.attempt < current - 2 else None

    def _run_job(self, job: KeygenJob | SignJob, key_type: str, sign_ctx: tuple[bytes, bytes] | None) -> bool:
        try:
            return self._run_job_once(job, key_type, sign_ctx)
        finally:
            with self._lock:
                self._running.discard((job.kind, job.request_id))
                if job.kind == "sign":
                    self._reconsider.add(job.request_id)  # a failed session: the next live set at once

    def _run_job_once(self, job: KeygenJob | SignJob, key_type: str, sign_ctx: tuple[bytes, bytes] | None) -> bool:
        """Run one job on the party and journal its verified result; True if it produced one (only
        those durations teach the scheduler how long a job takes)."""
        extra = job_log_fields(job)
        started = time.monotonic()
        try:
            try:
                result = self.party.run(job, timeout=self.config.controller.job_timeout_s)
            except JobFailed as exc:
                metrics.PARTY_UP.set(0 if "party daemon unreachable" in str(exc) else 1)
                raise
            metrics.PARTY_UP.set(1)
            if sign_ctx is None:
                check_public_key(key_type, result)
            else:
                check_signature(key_type, sign_ctx[0], sign_ctx[1], result)
        except JobFailed as exc:
            log.warning("%s request %d attempt %d failed: %s", job.kind, job.request_id, job.attempt, exc,
                        extra=extra)
            return False
        except ResultInvalid as exc:
            log.error("%s request %d: party returned an invalid result: %s", job.kind, job.request_id, exc,
                      extra=extra)
            return False
        except Exception as exc:  # a job thread must never die silently
            log_failure(log, f"{job.kind} request {job.request_id}: job crashed", exc, extra=extra)
            return False
        entry = self.journal.get(job.kind, job.request_id)
        if entry is not None and entry.state is State.SEEN:
            self.journal.record_result(job.kind, job.request_id, result)
            with self._lock:  # the posting delay the scheduler leaves room for is measured from here
                self._job_answered[(job.kind, job.request_id)] = self.scheduler.height_now()
            if not self.journal.open_txs():  # nothing in flight: tick now and post it (`_pause`)
                self._wake.set()
        log.info("%s request %d: result ready in %.3f s", job.kind, job.request_id,
                 time.monotonic() - started, extra=extra)
        return True

    # --- posting -----------------------------------------------------------------------------------

    def _messages(self, entry: Entry, request: Any) -> Any:
        if entry.kind == "sign" and ica.is_ica(request):  # answered with MsgFulfilICATransactionRequest
            reason = entry.reject_reason or "" if entry.state is State.REJECT else None
            return ica.answer(self.signer, entry.request_id, entry.result, reason)
        if entry.kind == "key":
            if entry.state is State.REJECT:
                return messages.reject_key_request(self.signer, entry.request_id, entry.reject_reason or "")
            return messages.fulfil_key_request(self.signer, entry.request_id, entry.result or b"")
        if entry.state is State.REJECT:
            return messages.reject_sign_request(self.signer, entry.request_id, entry.reject_reason or "")
        return messages.fulfil_sign_request(self.signer, entry.request_id, entry.result or b"")

    def _post(self, opened: dict[tuple[str, int], _Open]) -> None:
        if self.journal.open_txs():
            return  # one transaction in flight at a time keeps the account sequence simple
        ready = []
        waiting = self.journal.entries(State.RESULT, State.REJECT)
        late_blocks = self._late_post_blocks(len(waiting))  # once per post, not once per answer
        for entry in waiting:
            item = opened.get((entry.kind, entry.request_id))
            if item is None:
                self._settle_closed(entry)
                continue
            if self._posted_by_us(item.request):
                self.journal.mark_done(entry.kind, entry.request_id, "our fulfilment is on chain")
                continue
            if self._wait_before_posting(entry, late_blocks):
                continue
            if entry.kind == "sign" and entry.state is State.RESULT:
                entry = self._agree_with_chain(entry, item.request)
                if entry is None:
                    continue
            ready.append(entry)
        c = self.config.controller
        deadlines = {(e.kind, e.request_id): self.deadlines.of(e.kind, opened[(e.kind, e.request_id)].request)
                     for e in ready}
        # the height this tx meets, not the one this tick began at: under load a tick spans blocks, and an
        # answer (or a timeout height) judged by the stale one gets the whole tx refused by the node
        height = max(self.height, self.scheduler.height_now())
        plan = answers_to_post(ready, deadlines, height, c.post_margin_blocks, c.tx_timeout_blocks)
        for entry in plan.expiring:  # left in the journal: settled once the chain times the request out
            if (entry.kind, entry.request_id) not in self._expiring:
                self._expiring.add((entry.kind, entry.request_id))
                self.scheduler.queue.shed_log.shed(KIND_LABELS[entry.kind], SHED_EXPIRING_ANSWER,
                                                   time.monotonic())
        self._expiring &= set(opened)
        ready = self._payable(plan.answers)
        if not ready:
            return
        msgs = [self._messages(e, opened[(e.kind, e.request_id)].request) for e in ready]
        timeout_height = plan.timeout_height(ready)
        try:
            prepared = self.chain.prepare(self.signer, msgs, memo="zrkeyring", timeout_height=timeout_height)
        except (ChainTxError, ChainUnavailable) as exc:
            log.warning("cannot prepare fulfilment tx: %s", exc)
            return
        self.journal.record_tx(prepared.tx_hash, prepared.tx_bytes, prepared.sequence, timeout_height,
                               [(e.kind, e.request_id) for e in ready])
        for e in ready:
            log.info("posting %s request %d in tx %s", e.kind, e.request_id, prepared.tx_hash[:12],
                     extra={"request_id": e.request_id})
        self._sent_height[prepared.tx_hash] = self.height
        self._broadcast(prepared.tx_hash, prepared.tx_bytes)

    # --- fees ------------------------------------------------------------------------------------------

    def _tx_fee(self) -> int:
        """What one fulfilment tx pays in gas fees (with Simulate: the most `gas_limit` can cost)."""
        config = self.chain.config
        return math.ceil(config.gas_limit * config.gas_price) if config.simulate else config.fee_amount

    def _read_funds(self) -> tuple[Fees, int] | None:
        """Read our balance (bank Balance) and the keyring's fees; None when the chain will not say
        (then posting goes on as before: the chain remains the judge)."""
        try:
            balance = self.chain.balance(self.address)
            if self._fees is None or time.monotonic() - self._funds_read >= FUNDS_REFRESH_S:
                keyring = self.chain.keyring(self.keyring)
                if keyring is not None:
                    self._fees = Fees(keyring.key_req_fee, keyring.sig_req_fee, self._tx_fee())
        except grpc.RpcError as exc:
            log.warning("cannot read the balance of %s or the fees of %s: %s", self.address, self.keyring,
                        exc.details() if hasattr(exc, "details") else exc)
            return None
        self._funds_read = time.monotonic()
        if self._fees is None:
            return None
        self.balance = balance
        metrics.BALANCE.set(balance)
        metrics.ANSWERS_AFFORDABLE.set(self._fees.answers_affordable(balance, MAX_ANSWERS_PER_TX))
        return self._fees, balance

    def _payable(self, ready: list[Entry]) -> list[Entry]:
        """The ready answers of the next tx that our balance pays for (a prefix of at most
        MAX_ANSWERS_PER_TX); the others stay RESULT/REJECT in the journal and are posted once funded."""
        if not ready:
            metrics.FEES_OWED.set(0)
            metrics.ANSWERS_WAITING_FOR_FUNDS.set(0)
            return []
        funds = self._read_funds()
        if funds is None:
            return ready[:MAX_ANSWERS_PER_TX]
        fees, balance = funds
        answers = [(e.kind, e.state is State.REJECT) for e in ready]
        owed = fees.cost(answers, MAX_ANSWERS_PER_TX)
        metrics.FEES_OWED.set(owed)
        batch = ready[:MAX_ANSWERS_PER_TX]
        count = fees.affordable_prefix(answers[:MAX_ANSWERS_PER_TX], balance)
        metrics.ANSWERS_WAITING_FOR_FUNDS.set(len(batch) - count)
        now = time.monotonic()
        if count < len(batch):
            if not self._short_of_funds or now - self._funds_warned >= FUNDS_WARNING_INTERVAL_S:
                log.warning("account %s holds %d urock, needs %d for %d answers; fund it (docs/operations.md); "
                            "%d answers wait, none is dropped", self.address, balance, owed, len(ready),
                            len(ready) - count)
                self._funds_warned = now
            self._short_of_funds = True
        elif self._short_of_funds:
            log.info("account %s holds %d urock again: posting the %d answers that waited for funds",
                     self.address, balance, len(ready))
            self._short_of_funds = False
        return batch[:count]

    def _wait_before_posting(self, entry: Entry, late_blocks: int | None = None) -> bool:
        """Parties outside the eager set hold an answer back for LATE_POST_BLOCKS: the chain rejects a
        post to a request that is already FULFILLED, and that would fail every other answer in the same
        tx. They still post if the request stays open (an eager party is down or slow)."""
        tag = (entry.kind, entry.request_id)
        if tag in self._eager:
            return False
        first = self._ready_height.setdefault(tag, self.height)
        late_blocks = self._late_post_blocks() if late_blocks is None else late_blocks
        return self.height - first < late_blocks * (1 + self._late_rank(entry.request_id))

    def _late_rank(self, request_id: int) -> int:
        """Late posters are staggered, each by its place in the request's rotation order (the same on
        every party): two of them that saw the same PARTIAL request at the same height would otherwise
        post together, and the second fulfilment past the threshold fails its whole tx."""
        return rotation_order(self.parties, request_id, 0).index(self.me)

    def _late_post_blocks(self, backlog_answers: int | None = None) -> int:
        """How long a late poster waits: LATE_POST_BLOCKS, stretched under load to twice the blocks our
        own txs take to be included, times the txs our own backlog of answers fills (the eager parties'
        answers queue the same way, one tx in flight each; a copy posted before theirs land races them,
        and a post to a request they have just fulfilled fails our whole tx)."""
        if backlog_answers is None:
            backlog_answers = len(self.journal.entries(State.RESULT, State.REJECT))
        backlog = backlog_answers / MAX_ANSWERS_PER_TX
        return max(LATE_POST_BLOCKS, math.ceil(2 * self.inclusion_blocks * (1 + backlog)))

    def _settle_closed(self, entry: Entry) -> None:
        """A request no longer open: fulfilled or rejected without us, or timed out."""
        req = self.chain.key_request(entry.request_id) if entry.kind == "key" else \
            self.chain.sign_request(entry.request_id)
        status = req.status if req is not None else "missing"
        if not status.endswith(OPEN_STATUSES):
            self.journal.mark_done(entry.kind, entry.request_id, f"closed on chain: {status}")

    def _broadcast(self, tx_hash: str, tx_bytes: bytes) -> None:
        """Send journalled bytes. The tx is given up (its answers re-planned) only when it provably cannot
        land: refused by CheckTx for a reason other than the sequence, failed in a block, or past its
        timeout height. A sequence mismatch on a re-broadcast may mean it already landed: wait and see."""
        try:
            self.chain.broadcast_raw(tx_bytes)  # code 0, or 19: already in the mempool / cache
        except ChainUnavailable as exc:
            log.warning("broadcast of %s failed (left to land or expire): %s", tx_hash[:12], exc)
            metrics.TX_BROADCASTS.labels("error").inc()
        except ChainTxError as exc:
            metrics.TX_BROADCASTS.labels("rejected").inc()
            if exc.code == WRONG_SEQUENCE:
                log.warning("tx %s: sequence mismatch (left to land or expire): %s", tx_hash[:12], exc.raw_log)
                return
            log.warning("tx %s refused by the node: code %d: %s", tx_hash[:12], exc.code, exc.raw_log)
            self._fail_tx(tx_hash, exc.code, exc.raw_log)

    def _fail_tx(self, tx_hash: str, code: int, raw_log: str) -> None:
        """Re-plan a tx's answers. Each is read by id first: a tx fails whole for one answer to a request
        that closed meanwhile, and re-posting the same batch would fail again for that one (under load
        a controller failed four txs in a row, each on another request others had just fulfilled)."""
        self._sent_height.pop(tx_hash, None)
        self.journal.set_tx_state(tx_hash, "failed", code, raw_log)
        for kind, request_id in self.journal.items_of_tx(tx_hash):
            self.journal.reopen(kind, request_id, f"tx {tx_hash[:12]} failed: {raw_log[:200]}")
            entry = self.journal.get(kind, request_id)
            if entry is not None:
                try:
                    self._settle_closed(entry)
                except ChainUnavailable:
                    pass  # settled against the next listing instead
        self.chain.resync(self.address)

    def _follow_txs(self) -> None:
        for tx in self.journal.open_txs():
            found = self.chain.get_tx(tx.tx_hash)
            if found is None:
                if self.height > tx.timeout_height:
                    log.info("tx %s expired unincluded (timeout height %d)", tx.tx_hash[:12],
                             tx.timeout_height)
                    self.journal.set_tx_state(tx.tx_hash, "expired")
                    self._sent_height.pop(tx.tx_hash, None)
                    metrics.TX_BROADCASTS.labels("timeout").inc()
                    for kind, request_id in self.journal.items_of_tx(tx.tx_hash):
                        self.journal.reopen(kind, request_id, "tx expired")
                    self.chain.resync(self.address)
                continue
            response = found.tx_response
            if response.code != 0:
                log.warning("tx %s failed in block %d: %s", tx.tx_hash[:12], response.height,
                            response.raw_log)
                metrics.TX_BROADCASTS.labels("rejected").inc()
                self._fail_tx(tx.tx_hash, response.code, response.raw_log)
                if self._listing is not None and response.height >= self._listing[0]:
                    # The block that failed it is newer than our listing (this tick's height was read
                    # before it): reusing the listing would re-post into the request that just closed.
                    self._listing = None
                continue
            self.journal.set_tx_state(tx.tx_hash, "included", 0)
            sent = self._sent_height.pop(tx.tx_hash, None)
            if sent is not None:
                self.inclusion_blocks += 0.3 * (max(1, response.height - sent) - self.inclusion_blocks)
            metrics.TX_BROADCASTS.labels("committed").inc()
            answered = self.journal.items_of_tx(tx.tx_hash)
            for kind, request_id in answered:
                self._count_answer(kind, request_id)
                with self._lock:
                    ready = self._job_answered.pop((kind, request_id), None)
                if ready is not None:
                    self.scheduler.observe_answer(max(0, response.height - ready))
            self.journal.mark_all_done(answered, f"included at height {response.height}")
            self.last_fulfilment = time.time()
            metrics.LAST_FULFILMENT.set(self.last_fulfilment)
            log.info("tx %s included at height %d", tx.tx_hash[:12], response.height)

    def _count_answer(self, kind: str, request_id: int) -> None:
        """Our answer to one request was committed: count it as fulfilled or rejected."""
        entry = self.journal.get(kind, request_id)
        key_type = self._key_types.get((kind, request_id), "other")
        if entry is not None and entry.reject_reason is not None:
            reason = self._reject_reasons.get((kind, request_id), "invalid_request")
            metrics.REQUESTS_REJECTED.labels(KIND_LABELS[kind], key_type, reason).inc()
        else:
            metrics.REQUESTS_FULFILLED.labels(KIND_LABELS[kind], key_type).inc()

    def running_jobs(self) -> int:
        """Jobs queued or running on the party (what drain mode waits for)."""
        with self._lock:
            return len(self._running)

    def close(self) -> None:
        self.refresh.close()
        self.scheduler.shutdown()
        self._listers.shutdown(wait=True)
        self.journal.close()

    def run_forever(self, stop: threading.Event) -> None:
        self.recover()
        interval = self.config.controller.poll_interval_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except ChainUnavailable as exc:
                metrics.CHAIN_POLL_ERRORS.inc()
                log.warning("chain unavailable: %s", exc)
            except Exception as exc:  # noqa: BLE001 - the loop must go on; one line, rate-limited
                log_failure(log, "controller tick failed", exc)
            self._pause(stop, self._poll_wait(interval, time.monotonic() - started))

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Until the next tick: `seconds`, or sooner when a job's answer can be posted at once (`_wake`).
        Why: ticks come just after each block, so an answer ready mid-block waited for the next tick
        and missed the block it could have made; across 50 ms round trips a DKLs23 signature ready
        130 ms into a 200 ms block was posted 70 ms later and landed a block late."""
        end = time.monotonic() + seconds
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, STOP_CHECK_S)):
                break
        self._wake.clear()

    def _poll_wait(self, interval: float, elapsed: float) -> float:
        """Until the next tick: just after the next block is due, never later than the poll interval
        (scheduler.next_poll_wait); the plain interval before the first block is seen."""
        if self._block_unix is None:
            return max(0.0, interval - elapsed)
        return next_poll_wait(interval, elapsed, self._block_unix, self.scheduler.queue.clock.block_s, time.time())
