"""Every metric the controller daemon (`zrkeyring controller run`) exports, in one list.

The controller watches the chain, asks its party for keys and signatures, and posts fulfilments.
Label values are fixed sets (the tuples below). Everything lives in this module's own
`REGISTRY` (build info and HSM timings for the chain key included, made by appliance.runtime.metrics_http);
`zrkeyring controller run` serves it with `serve_configured(config.metrics, REGISTRY, health)`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from appliance.runtime.metrics_http import HsmMeters, daemon_registry

__all__ = [
    "REGISTRY", "HSM", "HSM_ERRORS", "HSM_OPERATION_SECONDS", "hsm_operation",
    "KINDS", "KEY_TYPES", "REJECT_REASONS", "TX_RESULTS", "REQUESTS_SEEN", "REQUESTS_FULFILLED",
    "REQUESTS_REJECTED", "PENDING_REQUESTS", "REQUESTS_NEAR_TIMEOUT", "OLDEST_PENDING_AGE",
    "LAST_FULFILMENT", "CHAIN_HEIGHT", "CHAIN_PROCESSED_HEIGHT", "CHAIN_POLL_LAG", "CHAIN_LAST_POLL",
    "CHAIN_POLL_ERRORS", "TX_BROADCASTS", "PARTY_UP", "key_type_label",
    "BALANCE", "FEES_OWED", "ANSWERS_AFFORDABLE", "ANSWERS_WAITING_FOR_FUNDS",
    "SHED_REASONS", "JOBS_SHED", "JOBS_QUEUED", "job_shed",
]

# This daemon's own registry: its /metrics shows these series and nothing of the party daemon's.
REGISTRY = daemon_registry()
# HSM timings of the chain key (HsmChainSigner wraps its Hsm with `MeteredHsm.wrap(hsm, HSM)`).
HSM = HsmMeters(REGISTRY)
HSM_OPERATION_SECONDS, HSM_ERRORS, hsm_operation = HSM.seconds, HSM.errors, HSM.operation

# kind: key requests (keygen) or signature requests.
KINDS = ("key", "signature")
# key_type: zrChain's KeyType names, lower-cased without the KEY_TYPE_ prefix; anything else is "other".
KEY_TYPES = ("ecdsa_secp256k1", "eddsa_ed25519", "bitcoin_secp256k1", "other")
# reason: why this party rejected a request on chain.
REJECT_REASONS = ("invalid_request", "unsupported_key_type", "unknown_key", "mpc_failed", "timeout")
# result: what became of one broadcast transaction (one per block, batching fulfilments).
TX_RESULTS = ("committed", "rejected", "timeout", "error")

REQUESTS_SEEN = Counter(
    "zrkeyring_controller_requests_seen_total",
    "Requests addressed to this keyring that the controller saw on chain for the first time.",
    ["kind", "key_type"],
    registry=REGISTRY,
)
REQUESTS_FULFILLED = Counter(
    "zrkeyring_controller_requests_fulfilled_total",
    "Requests for which this party's fulfilment was committed on chain.",
    ["kind", "key_type"],
    registry=REGISTRY,
)
REQUESTS_REJECTED = Counter(
    "zrkeyring_controller_requests_rejected_total",
    "Requests this party rejected on chain.",
    ["kind", "key_type", "reason"],
    registry=REGISTRY,
)
PENDING_REQUESTS = Gauge(
    "zrkeyring_controller_pending_requests",
    "Requests seen and not yet fulfilled or rejected by this party.",
    ["kind"],
    registry=REGISTRY,
)
REQUESTS_NEAR_TIMEOUT = Gauge(
    "zrkeyring_controller_pending_requests_near_timeout",
    "Pending requests within 5 blocks of their timeout (mpc_btl).",
    ["kind"],
    registry=REGISTRY,
)
OLDEST_PENDING_AGE = Gauge(
    "zrkeyring_controller_pending_request_oldest_age_seconds",
    "Age of the oldest pending request since this controller first saw it (0 when none is pending).",
    ["kind"],
    registry=REGISTRY,
)
LAST_FULFILMENT = Gauge(
    "zrkeyring_controller_last_fulfilment_timestamp_seconds",
    "Unix time of the last fulfilment of this party committed on chain (0 until the first).",
    registry=REGISTRY,
)
CHAIN_HEIGHT = Gauge("zrkeyring_controller_chain_height", "Latest block height reported by the chain node.",
                     registry=REGISTRY)
CHAIN_PROCESSED_HEIGHT = Gauge(
    "zrkeyring_controller_chain_processed_height", "Height up to which the controller has read and planned requests.",
    registry=REGISTRY,
)
CHAIN_POLL_LAG = Gauge(
    "zrkeyring_controller_chain_poll_lag_seconds",
    "At the last poll: now minus the block time of the newest block processed.",
    registry=REGISTRY,
)
CHAIN_LAST_POLL = Gauge(
    "zrkeyring_controller_chain_last_poll_timestamp_seconds", "Unix time of the last successful chain poll.",
    registry=REGISTRY,
)
CHAIN_POLL_ERRORS = Counter(
    "zrkeyring_controller_chain_poll_errors_total", "Chain polls that failed on every configured endpoint.",
    registry=REGISTRY,
)
TX_BROADCASTS = Counter(
    "zrkeyring_controller_tx_broadcasts_total",
    "Fulfilment transactions broadcast, by outcome.",
    ["result"],
    registry=REGISTRY,
)
PARTY_UP = Gauge(
    "zrkeyring_controller_party_up",
    "1 if the controller reached its local party daemon at the last attempt, else 0.",
    registry=REGISTRY,
)
# Load shedding (controller/scheduler.py): work not started because it could not finish in time.
SHED_REASONS = ("deadline", "queue_full", "stale", "answer_expiring", "admission")
JOBS_SHED = Counter(
    "zrkeyring_controller_jobs_shed_total",
    "Jobs not started (or answers not posted) because their request would time out first, by reason: "
    "deadline (too few blocks left), queue_full, stale (attempt passed), answer_expiring (not posted), "
    "admission (the keyring-wide admission rule: the backlog ahead fills the request's lifetime).",
    ["kind", "reason"],
    registry=REGISTRY,
)
JOBS_QUEUED = Gauge(
    "zrkeyring_controller_jobs_queued",
    "Jobs waiting for a worker (earliest deadline first).",
    registry=REGISTRY,
)
# Fees: zrChain charges each fulfilment to the posting party's account (docs/operations.md, "Funding").
BALANCE = Gauge(
    "zrkeyring_controller_balance_urock",
    "Spendable urock of this party's chain account at the last read (bank Balance).",
    registry=REGISTRY,
)
FEES_OWED = Gauge(
    "zrkeyring_controller_fees_owed_urock",
    "urock the answers ready to post would cost now (keyring fees plus transaction fees).",
    registry=REGISTRY,
)
ANSWERS_AFFORDABLE = Gauge(
    "zrkeyring_controller_answers_affordable",
    "How many more answers the balance pays for at the keyring's dearer fee (capped at 1e9).",
    registry=REGISTRY,
)
ANSWERS_WAITING_FOR_FUNDS = Gauge(
    "zrkeyring_controller_answers_waiting_for_funds",
    "Ready answers held back because the account cannot pay for them.",
    registry=REGISTRY,
)

for _kind in KINDS:
    PENDING_REQUESTS.labels(_kind)
    REQUESTS_NEAR_TIMEOUT.labels(_kind)
    OLDEST_PENDING_AGE.labels(_kind)
    for _key_type in KEY_TYPES:
        REQUESTS_SEEN.labels(_kind, _key_type)
        REQUESTS_FULFILLED.labels(_kind, _key_type)
        for _reason in REJECT_REASONS:
            REQUESTS_REJECTED.labels(_kind, _key_type, _reason)
for _result in TX_RESULTS:
    TX_BROADCASTS.labels(_result)
for _kind in KINDS:
    for _reason in SHED_REASONS:
        JOBS_SHED.labels(_kind, _reason)


def job_shed(kind: str, reason: str) -> None:
    """Count one shed job (ShedLog's hook)."""
    JOBS_SHED.labels(kind, reason).inc()


def key_type_label(name: str) -> str:
    """`KEY_TYPE_ECDSA_SECP256K1` (or `ecdsa_secp256k1`) -> `ecdsa_secp256k1`; unknown names -> `other`."""
    label = name.lower().removeprefix("key_type_")
    return label if label in KEY_TYPES else "other"
