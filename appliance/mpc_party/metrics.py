"""Every metric the party daemon (`zrkeyring party run`) exports, in one list an operator can read.

Label values are fixed sets (the tuples below); `culprit` and `peer` are party indices ("1".."n"), so
they are bounded by the cluster size. Everything lives in this module's own
`REGISTRY` (build info and HSM timings included, made by appliance.runtime.metrics_http); `zrkeyring
party run` serves it with `serve_configured(config.metrics, REGISTRY, health)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from appliance.runtime.metrics_http import SESSION_BUCKETS, HsmMeters, daemon_registry

__all__ = [
    "REGISTRY", "HSM", "HSM_ERRORS", "HSM_OPERATION_SECONDS", "hsm_operation", "prepare_for_cluster",
    "PROTOCOLS", "PHASES", "ABORT_REASONS", "SESSIONS_STARTED", "SESSIONS_ACTIVE", "SESSION_SECONDS",
    "SESSIONS_ABORTED", "PEER_UP", "PEER_LAST_SEEN", "PRESIGNATURE_POOL_NAME", "PRESIGNATURE_POOL",
    "POOL_SIGNS", "pool_key_type", "POOL_KEY_TYPES", "TLS_CERT_EXPIRY",
    "set_cert_expiry", "ENVELOPES", "culprit_label",
    "peer_contact", "OT_PAIRS_BURNED", "OT_PAIR_BURNS", "OT_RESETUPS", "CHAIN_DISAGREEMENTS", "QUERIES",
    "chain_disagreement", "PEER_LIVE", "peer_live", "PEER_JOINS", "PEER_JOIN_OUTCOMES",
]

# protocol: the protocol family a session runs (the planner's KeyType.protocol values); "unknown" only
# for a job naming a key type no protocol serves (refused before any session starts).
PROTOCOLS = ("dkls23", "frost-ed25519", "frost-secp256k1", "unknown")
# phase: what the session does.
PHASES = ("keygen", "presign", "sign", "refresh")
# reason: why a session ended without a result.
ABORT_REASONS = (
    "timeout",            # a peer did not answer within the round deadline
    "peer_misbehaviour",  # a peer's message failed a check (culprit names it)
    "state_mismatch",     # a peer signs over another key epoch (between two parties' commits; no culprit)
    "peer_left",          # a signer sent a leave note: it timed out, refused or failed the session
    "chain_check",        # the request on chain is missing, not PENDING/PARTIAL, or the data differs
    "local_error",        # our own bug or resource problem
    "hsm_error",          # sealing/unsealing or an HSM signature failed
    "cancelled",          # the controller withdrew the request (fulfilled elsewhere, expired, shutdown)
)
NO_CULPRIT = "none"

# This daemon's own registry: its /metrics shows these series and nothing of the controller's.
REGISTRY = daemon_registry()
# HSM timings (the daemon wraps its Hsm with `MeteredHsm.wrap(hsm, HSM)`).
HSM = HsmMeters(REGISTRY)
HSM_OPERATION_SECONDS, HSM_ERRORS, hsm_operation = HSM.seconds, HSM.errors, HSM.operation

OT_PAIRS_BURNED = Gauge(
    "zrkeyring_party_ot_pairs_burned",
    "DKLs23 (key, peer) OT pairs burned after a failed OT-extension check and not yet re-set up; no signing "
    "with that peer for that key meanwhile (critical: a peer may be probing this party's secrets).",
    registry=REGISTRY,
)
OT_PAIR_BURNS = Counter(
    "zrkeyring_party_ot_pair_burns_total",
    "DKLs23 OT pairs this party burned, by peer: a check that depends on this party's secret failed.",
    ["peer"],
    registry=REGISTRY,
)
OT_RESETUPS = Counter(
    "zrkeyring_party_ot_resetups_total",
    "Pairwise DKLs23 OT re-setups this party took part in, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("done", "failed"):
    OT_RESETUPS.labels(_outcome)

SESSIONS_STARTED = Counter(
    "zrkeyring_party_sessions_started_total",
    "Protocol sessions this party joined.",
    ["protocol", "phase"],
    registry=REGISTRY,
)
SESSIONS_ACTIVE = Gauge(
    "zrkeyring_party_sessions_active",
    "Protocol sessions currently running in this party.",
    ["protocol"],
    registry=REGISTRY,
)
SESSION_SECONDS = Histogram(
    "zrkeyring_party_session_duration_seconds",
    "Wall time of a protocol session that completed, from the first message to the result.",
    ["protocol", "phase"],
    buckets=SESSION_BUCKETS,
    registry=REGISTRY,
)
SESSIONS_ABORTED = Counter(
    "zrkeyring_party_sessions_aborted_total",
    "Protocol sessions that ended without a result; culprit is the blamed party index or 'none'.",
    ["protocol", "reason", "culprit"],
    registry=REGISTRY,
)
# query: which chain read the k-of-m reader could not (or only narrowly) agree on.
QUERIES = ("key_request", "sign_request", "key")
CHAIN_DISAGREEMENTS = Counter(
    "zrkeyring_party_chain_disagreements_total",
    "Chain reads where the configured endpoints returned different request data (or fewer than k "
    "answered); refused=true when the job was refused for it. Any increase is worth a look: honest "
    "nodes never differ in a request's creation fields.",
    ["query", "refused"],
    registry=REGISTRY,
)
PEER_UP = Gauge(
    "zrkeyring_party_peer_up",
    "1 if the last contact with this peer (mTLS gRPC) succeeded, 0 if it failed.",
    ["peer"],
    registry=REGISTRY,
)
PEER_LAST_SEEN = Gauge(
    "zrkeyring_party_peer_last_seen_timestamp_seconds",
    "Unix time of the last successful exchange with this peer.",
    ["peer"],
    registry=REGISTRY,
)
PEER_LIVE = Gauge(
    "zrkeyring_party_peer_live",
    "1 if this peer answers liveness pings (every 0.5 s) and its controller is active, so the "
    "controllers may choose it as a signer; 0 otherwise (liveness.py).",
    ["peer"],
    registry=REGISTRY,
)
TLS_CERT_EXPIRY = Gauge(
    "zrkeyring_party_tls_cert_expiry_timestamp_seconds",
    "Unix time the TLS certificate stops being valid (notAfter): certificate=\"ca\" for the cluster CA, "
    "\"party-<i>\" for each party's certificate in this party's bundle. Set at start and every readiness "
    "check (10 s) from the files; a certificate that cannot be read has no series (readiness names it).",
    ["certificate"],
    registry=REGISTRY,
)


def set_cert_expiry(expiry: dict[str, float]) -> None:
    """Record notAfter per certificate (from runtime.readiness.cert_expiry)."""
    for name, when in expiry.items():
        TLS_CERT_EXPIRY.labels(name).set(when)


# key_type of the presignature pool series: zrChain's KeyType names, lower-cased without KEY_TYPE_.
POOL_KEY_TYPES = ("ecdsa_secp256k1", "bitcoin_secp256k1", "eddsa_ed25519")
POOL_OUTCOMES = ("hit", "miss", "mismatch")  # a signing session from the pool (protocols/pool.py)
PRESIGNATURE_POOL_NAME = "zrkeyring_party_presignature_pool_size"
PRESIGNATURE_POOL = Gauge(
    PRESIGNATURE_POOL_NAME,
    "Unused presignature pool entries held in memory (DKLs23 presignatures, FROST nonce commitments), per "
    "key type; 0 after a restart until the controllers refill them in idle time.",
    ["key_type"],
    registry=REGISTRY,
)
POOL_SIGNS = Counter(
    "zrkeyring_party_presignature_pool_signs_total",
    "Signing sessions with pools on, by outcome: hit (one round from an entry), miss (some signer had no "
    "entry: full protocol), mismatch (signers named different entries: all burned, full protocol).",
    ["key_type", "outcome"],
    registry=REGISTRY,
)
# outcome of a peer's hello (join.py): joined (the session ran to a result), answered (we had the signature
# already and sent it to the opener), failed (it ran and failed, or the
# job was refused by the checks every job passes), refused (the hello's request fails our own rules), busy
# (every join worker and queue slot taken), stale (waited longer than the opener waits), invalid (bad hello)
PEER_JOIN_OUTCOMES = ("joined", "answered", "failed", "refused", "busy", "stale", "invalid")
PEER_JOINS = Counter(
    "zrkeyring_party_peer_session_joins_total",
    "Signing sessions a peer opened and announced with a hello, by what this party did: joined, answered (sent "
    "the signature it had already), failed, refused (the request fails this party's own rules), busy (join "
    "workers full), stale, invalid.",
    ["outcome"],
    registry=REGISTRY,
)


def pool_key_type(key_type: str) -> str:
    """`KEY_TYPE_ECDSA_SECP256K1` -> `ecdsa_secp256k1`, the pool series' label."""
    label = key_type.lower().removeprefix("key_type_")
    return label if label in POOL_KEY_TYPES else POOL_KEY_TYPES[0]


for _protocol in PROTOCOLS:
    SESSIONS_ACTIVE.labels(_protocol)
    for _phase in PHASES:
        SESSIONS_STARTED.labels(_protocol, _phase)
        SESSION_SECONDS.labels(_protocol, _phase)
    for _reason in ABORT_REASONS:
        SESSIONS_ABORTED.labels(_protocol, _reason, NO_CULPRIT)
for _label in POOL_KEY_TYPES:
    PRESIGNATURE_POOL.labels(_label)
    for _outcome in POOL_OUTCOMES:
        POOL_SIGNS.labels(_label, _outcome)
for _outcome in PEER_JOIN_OUTCOMES:
    PEER_JOINS.labels(_outcome)
for _query in QUERIES:
    for _refused in ("true", "false"):
        CHAIN_DISAGREEMENTS.labels(_query, _refused)


def prepare_for_cluster(parties: Iterable[int], me: int) -> None:
    """Create the per-party series at 0 once the roster is known (call at daemon start).

    Why: a counter series that first appears with value 1 has no `increase()` in Prometheus, so the
    first OT-pair burn or the first abort blaming a party would never alert; and a panel on a series
    that does not exist yet shows "No data" instead of 0. `peer_up` is not created here: 0 would mean
    "down" before any contact was tried.
    """
    others = [str(int(p)) for p in parties if int(p) != int(me)]
    for peer in others:
        OT_PAIR_BURNS.labels(peer)
        for protocol in PROTOCOLS:
            for reason in ABORT_REASONS:
                SESSIONS_ABORTED.labels(protocol, reason, peer)


def culprit_label(party_index: int | None) -> str:
    """The `culprit` label for a blamed party index (None when nobody is blamed)."""
    return NO_CULPRIT if party_index is None else str(int(party_index))


def peer_contact(peer: int, ok: bool) -> None:
    """Record one delivery attempt to `peer` (the session runner's callback)."""
    label = str(int(peer))
    PEER_UP.labels(label).set(1 if ok else 0)
    if ok:
        PEER_LAST_SEEN.labels(label).set_to_current_time()


def peer_live(peer: int, live: bool) -> None:
    """The liveness view changed for `peer` (liveness.Liveness's callback)."""
    PEER_LIVE.labels(str(int(peer))).set(1 if live else 0)


class GateCollector(Collector):
    """`zrkeyring_party_envelopes_total{result, reason}` read from the envelope gates' own counters.

    Why a collector: the gate already counts (under its lock) every envelope it accepts or drops;
    copying its numbers at scrape time keeps one source of truth. Reasons are envelope.DropReason values.
    """

    def __init__(self) -> None:
        self._sources: list[Callable[[], dict[str, int]]] = []
        self._lock = threading.Lock()

    def watch(self, counters: Callable[[], dict[str, int]]) -> None:
        with self._lock:
            self._sources.append(counters)

    def forget(self, counters: Callable[[], dict[str, int]]) -> None:
        with self._lock:
            if counters in self._sources:
                self._sources.remove(counters)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("zrkeyring_party_envelopes", "Peer envelopes accepted or dropped by the "
                                     "gate, by drop reason ('none' for accepted).", labels=["result", "reason"])
        totals: dict[str, int] = {}
        with self._lock:
            sources = list(self._sources)
        for counters in sources:
            for name, value in counters().items():
                totals[name] = totals.get(name, 0) + value
        family.add_metric(["accepted", "none"], totals.pop("accepted", 0))
        for reason, value in sorted(totals.items()):
            family.add_metric(["dropped", reason], value)
        yield family


ENVELOPES = GateCollector()
REGISTRY.register(ENVELOPES)


def chain_disagreement(query: str, error: object) -> None:
    """AgreeingReader hook: count a disagreement (`error.decided` False means the job is refused)."""
    refused = "false" if getattr(error, "decided", False) else "true"
    CHAIN_DISAGREEMENTS.labels(query if query in QUERIES else "key", refused).inc()
