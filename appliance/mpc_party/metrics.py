"""Every metric the party daemon (`zrkeyring party run`) exports, in one list an operator can read.

Label values are fixed sets (the tuples below); `culprit` and `peer` are party indices ("1".."n"), so
they are bounded by the cluster size. Shared metrics (build info, HSM timings) come from
appliance.metrics_http and are re-exported here. Serve them with
`appliance.metrics_http.start_metrics_server(config.metrics.address)`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from appliance.metrics_http import (
    BUILD_INFO,
    HSM_ERRORS,
    HSM_OPERATION_SECONDS,
    SESSION_BUCKETS,
    hsm_operation,
    start_metrics_server,
)

__all__ = [
    "BUILD_INFO", "HSM_ERRORS", "HSM_OPERATION_SECONDS", "hsm_operation", "start_metrics_server",
    "PROTOCOLS", "PHASES", "ABORT_REASONS", "SESSIONS_STARTED", "SESSIONS_ACTIVE", "SESSION_SECONDS",
    "SESSIONS_ABORTED", "PEER_UP", "PEER_LAST_SEEN", "PRESIGNATURE_POOL", "culprit_label",
]

# protocol: the protocol family a session runs (the planner's KeyType.protocol values).
PROTOCOLS = ("dkls23", "frost-ed25519", "frost-secp256k1")
# phase: what the session does.
PHASES = ("keygen", "presign", "sign", "refresh")
# reason: why a session ended without a result.
ABORT_REASONS = (
    "timeout",            # a peer did not answer within the round deadline
    "peer_misbehaviour",  # a peer's message failed a check (culprit names it)
    "chain_check",        # the request on chain is missing, not PENDING/PARTIAL, or the data differs
    "local_error",        # our own bug or resource problem
    "hsm_error",          # sealing/unsealing or an HSM signature failed
    "cancelled",          # the controller withdrew the request (fulfilled elsewhere, expired, shutdown)
)
NO_CULPRIT = "none"

SESSIONS_STARTED = Counter(
    "zrkeyring_party_sessions_started_total",
    "Protocol sessions this party joined.",
    ["protocol", "phase"],
)
SESSIONS_ACTIVE = Gauge(
    "zrkeyring_party_sessions_active",
    "Protocol sessions currently running in this party.",
    ["protocol"],
)
SESSION_SECONDS = Histogram(
    "zrkeyring_party_session_duration_seconds",
    "Wall time of a protocol session that completed, from the first message to the result.",
    ["protocol", "phase"],
    buckets=SESSION_BUCKETS,
)
SESSIONS_ABORTED = Counter(
    "zrkeyring_party_sessions_aborted_total",
    "Protocol sessions that ended without a result; culprit is the blamed party index or 'none'.",
    ["protocol", "reason", "culprit"],
)
PEER_UP = Gauge(
    "zrkeyring_party_peer_up",
    "1 if the last contact with this peer (mTLS gRPC) succeeded, 0 if it failed.",
    ["peer"],
)
PEER_LAST_SEEN = Gauge(
    "zrkeyring_party_peer_last_seen_timestamp_seconds",
    "Unix time of the last successful exchange with this peer.",
    ["peer"],
)
PRESIGNATURE_POOL = Gauge(
    "zrkeyring_party_presignature_pool_size",
    "Unused DKLs23 presignatures held (sealed) by this party, summed over keys.",
    ["key_type"],
)

for _protocol in PROTOCOLS:
    SESSIONS_ACTIVE.labels(_protocol)
    for _phase in PHASES:
        SESSIONS_STARTED.labels(_protocol, _phase)
        SESSION_SECONDS.labels(_protocol, _phase)
for _key_type in ("ecdsa_secp256k1", "bitcoin_secp256k1"):
    PRESIGNATURE_POOL.labels(_key_type)


def culprit_label(party_index: int | None) -> str:
    """The `culprit` label for a blamed party index (None when nobody is blamed)."""
    return NO_CULPRIT if party_index is None else str(int(party_index))
