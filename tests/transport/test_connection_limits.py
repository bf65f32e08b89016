"""The peer port under a flood of half-open TCP connections, real gRPC and TLS on 127.0.0.1.

Bounded: at most FLOOD sockets, opened in well under a second, all closed by the test at the end.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

import pytest

from appliance.mpc_party.envelope import BROADCAST, Gate
from appliance.mpc_party.transport import PeerServer, server_options
from appliance.runtime.errors import UserError

FLOOD = 2000
CAP = 64
HANDSHAKE_S = 1.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def half_open(port: int, count: int) -> list[socket.socket]:
    """`count` TCP connections that never send a byte (no TLS ClientHello)."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.setblocking(False)
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        try:
            if s.recv(1) == b"":
                n += 1
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


def server_held(baseline: int, socks: list[socket.socket]) -> int:
    """Descriptors this process holds beyond the baseline and our own client sockets: the server's."""
    return open_fds() - baseline - len(socks)


def test_flood_of_half_open_connections_is_capped_and_timed_out_while_peers_keep_talking(cluster):
    me = cluster.parties[1]
    roster = cluster.roster
    gate = Gate(1, roster.identity_keys())
    listen = f"127.0.0.1:{_free_port()}"
    server = PeerServer(gate, listen, me.tls, max_connections=CAP, handshake_timeout_s=HANDSHAKE_S).start()
    peer = cluster.parties[2]
    client = type(peer.client)({1: listen}, peer.tls, timeout=3.0)
    sid = secrets.token_bytes(32)
    gate.open_session(sid)
    try:
        assert client.send(1, peer.outbox.seal(sid, "dkls23-sign", 1, BROADCAST, b"before")).accepted
        baseline = open_fds()
        socks = half_open(server.port, FLOOD)
        try:
            time.sleep(0.5)
            held = server_held(baseline, socks)
            assert held <= CAP + 8, f"server holds {held} descriptors for {FLOOD} half-open connections"
            assert closed_by_server(socks) >= FLOOD - CAP
            # The peer's established channel is not among the refused: it keeps delivering mid-flood.
            assert client.send(1, peer.outbox.seal(sid, "dkls23-sign", 2, BROADCAST, b"during")).accepted
            deadline = time.monotonic() + HANDSHAKE_S + 4
            while server_held(baseline, socks) > 8 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server_held(baseline, socks) <= 8, "half-open connections outlived the handshake timeout"
        finally:
            for s in socks:
                s.close()
        assert client.send(1, peer.outbox.seal(sid, "dkls23-sign", 3, BROADCAST, b"after")).accepted
        assert gate.counters()["accepted"] == 3
    finally:
        client.close()
        server.stop(grace=None)


def test_server_limits_must_be_positive():
    with pytest.raises(UserError, match="must be positive"):
        server_options(max_connections=0)
    with pytest.raises(UserError, match="must be positive"):
        server_options(handshake_timeout_s=0)
    options = dict(server_options())
    assert options["grpc.max_allowed_incoming_connections"] > 0
    assert options["grpc.server_handshake_timeout_ms"] > 0


def _free_port() -> int:
    from chain_node.local import free_port

    return free_port()
