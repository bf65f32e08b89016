"""The /metrics server under idle connections: a bounded number of threads, idle ones closed."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from appliance.mpc_party import metrics as party_metrics
from appliance.runtime import metrics_http

IDLE = 60
CAP = 4
TIMEOUT_S = 1.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        return response.read().decode()


def test_idle_connections_cannot_hold_more_than_the_thread_cap_and_time_out():
    server = metrics_http.start_metrics_server("127.0.0.1:0", party_metrics.REGISTRY,
                                               max_threads=CAP, idle_timeout_s=TIMEOUT_S)
    port = server.server_address[1]
    threads_before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(IDLE)]
    try:
        deadline = time.monotonic() + 5
        while server.refused < IDLE - CAP and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.refused >= IDLE - CAP  # closed at accept, no thread started for them
        assert threading.active_count() - threads_before <= CAP
        # The idle ones are dropped after the timeout, so a scrape gets through again without a restart.
        time.sleep(TIMEOUT_S + 0.5)
        assert threading.active_count() - threads_before <= 0
        assert "zrkeyring_build_info" in scrape(port)
    finally:
        for s in socks:
            s.close()
        server.shutdown()
        server.server_close()


def test_default_limits_are_set():
    assert 1 <= metrics_http.METRICS_MAX_THREADS <= 64
    assert 0 < metrics_http.METRICS_IDLE_TIMEOUT_S <= 30
