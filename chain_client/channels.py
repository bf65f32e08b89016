"""gRPC channel options every client of this project uses: reconnect within about a second.

gRPC's defaults back off up to 120 s between connection attempts after a server goes away, so a chain
node, a party daemon or a peer that is back after a minute's outage was measured reached 15-40 s
late (issue 14). With these bounds a channel in TRANSIENT_FAILURE tries again at most every
`max_reconnect_backoff_ms` (plus gRPC's 20 % jitter), and each attempt may take up to
`min_reconnect_backoff_ms` to connect: the other side's return is noticed within about 1.2 s.
"""

from __future__ import annotations

MAX_RECONNECT_BACKOFF_MS = 1000

RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
]

# A unix socket on the same host (controller to its party daemon): an attempt costs a failed connect(2),
# so retrying every 0.2 s is free, and a controller reaches its restarted daemon within a tick
# (test_reconnect measured the 1 s bound above as most of the first request's delay after a restart).
LOCAL_RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 200),
]
