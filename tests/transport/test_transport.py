"""Real gRPC over mutual TLS on 127.0.0.1 with certificates from `init_cluster`."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.cluster.bundle import init_cluster
from appliance.mpc_party.envelope import BROADCAST, Envelope, Gate
from appliance.mpc_party.transport import PeerClient, PeerServer, PeerUnavailable, TlsCredentials
from appliance.rules.roster import Roster
from appliance.runtime.errors import ConfigError, UserError
from tests.transport.conftest import free_base_port, sign_with

PROTOCOL = "frost-ed25519-dkg"


def only_change(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_three_parties_exchange_broadcast_and_p2p(cluster):
    sid = secrets.token_bytes(32)
    members = (1, 2, 3)
    for i in members:
        cluster.parties[i].gate.open_session(sid)
    for i in members:
        p = cluster.parties[i]
        env = p.outbox.seal(sid, PROTOCOL, 1, BROADCAST, f"commit from {i}".encode())
        results = p.client.broadcast(env, timeout=1.0)
        assert all(results[j].accepted for j in members if j != i)
        assert isinstance(results[4], PeerUnavailable)  # party 4 has a bundle but no server
        for j in members:
            if j != i:
                share = p.outbox.seal(sid, PROTOCOL, 2, j, f"share {i}->{j}".encode())
                assert p.client.send(j, share).accepted
    for j in members:
        gate = cluster.parties[j].gate
        others = [i for i in members if i != j]
        round1 = gate.wait_for(sid, 1, others, timeout=5)
        round2 = gate.wait_for(sid, 2, others, timeout=5)
        assert round1.complete and round2.complete
        for i in others:
            (env1,) = round1.arrived[i]
            (env2,) = round2.arrived[i]
            assert env1.payload == f"commit from {i}".encode()
            assert env2.payload == f"share {i}->{j}".encode() and env2.recipient == j
            # An independent library checks the signature over the documented signing bytes.
            public = Ed25519PublicKey.from_public_bytes(cluster.keys[i].verify_key.encode())
            public.verify(env2.signature, env2.signing_bytes())
        assert gate.counters()["accepted"] == 4


def test_broadcast_reports_down_peer_and_still_reaches_others(cluster):
    sid = secrets.token_bytes(32)
    cluster.parties[2].gate.open_session(sid)
    p1 = cluster.parties[1]
    results = p1.client.broadcast(p1.outbox.seal(sid, PROTOCOL, 1, BROADCAST, b"x"), timeout=1.0)
    assert results[2].accepted
    assert results[3].reason == "session_not_open"  # party 3 never opened the session


def test_bad_signature_dropped_and_counted(cluster):
    sid = secrets.token_bytes(32)
    p1, gate2 = cluster.parties[1], cluster.parties[2].gate
    gate2.open_session(sid)
    env = p1.outbox.seal(sid, PROTOCOL, 1, 2, b"payload")
    forged = replace(env, payload=b"other payload")
    before = gate2.counters()
    ack = p1.client.send(2, forged)
    assert not ack.accepted and ack.reason == "bad_signature"
    assert only_change(before, gate2.counters()) == {"bad_signature": 1}
    assert gate2.wait_for(sid, 1, [1], timeout=0.05).missing == {1}


def test_stranger_dropped_and_counted(cluster):
    sid = secrets.token_bytes(32)
    p4, gate2 = cluster.parties[4], cluster.parties[2].gate
    gate2.open_session(sid)
    before = gate2.counters()
    ack = p4.client.send(2, p4.outbox.seal(sid, PROTOCOL, 1, 2, b"let me in"))
    assert ack.reason == "stranger"
    assert only_change(before, gate2.counters()) == {"stranger": 1}


def test_wrong_session_dropped_and_counted(cluster):
    p1, gate2 = cluster.parties[1], cluster.parties[2].gate
    gate2.open_session(secrets.token_bytes(32))
    before = gate2.counters()
    ack = p1.client.send(2, p1.outbox.seal(secrets.token_bytes(32), PROTOCOL, 1, 2, b"p"))
    assert ack.reason == "session_not_open"
    assert only_change(before, gate2.counters()) == {"session_not_open": 1}


def test_replay_dropped_and_counted(cluster):
    sid = secrets.token_bytes(32)
    p1, gate2 = cluster.parties[1], cluster.parties[2].gate
    gate2.open_session(sid)
    env = p1.outbox.seal(sid, PROTOCOL, 1, 2, b"once")
    before = gate2.counters()
    assert p1.client.send(2, env).accepted
    assert p1.client.send(2, env).reason == "replay"
    assert only_change(before, gate2.counters()) == {"accepted": 1, "replay": 1}
    assert len(gate2.wait_for(sid, 1, [1], timeout=1).arrived[1]) == 1


def test_wrong_recipient_dropped_and_counted(cluster):
    sid = secrets.token_bytes(32)
    p1, gate2 = cluster.parties[1], cluster.parties[2].gate
    gate2.open_session(sid)
    before = gate2.counters()
    assert p1.client.send(2, p1.outbox.seal(sid, PROTOCOL, 1, 3, b"for party 3")).reason == "wrong_recipient"
    assert only_change(before, gate2.counters()) == {"wrong_recipient": 1}


def test_tls_peer_cannot_claim_another_sender_even_with_its_key(cluster):
    """Party 2's TLS connection carries an envelope correctly signed with party 1's (leaked) key."""
    sid = secrets.token_bytes(32)
    gate3 = cluster.parties[3].gate
    gate3.open_session(sid)
    leaked = Envelope.create(sign_with(cluster.keys[1]), session_id=sid, protocol=PROTOCOL, round=1,
                             sender=1, recipient=3, seq=0, payload=b"as party 1")
    before = gate3.counters()
    ack = cluster.parties[2].client.send(3, leaked)
    assert ack.reason == "peer_mismatch"
    assert only_change(before, gate3.counters()) == {"peer_mismatch": 1}
    # The same bytes over party 1's own connection are fine.
    assert cluster.parties[1].client.send(3, leaked).accepted


def test_certificate_from_another_ca_refused_at_tls(cluster, tmp_path):
    other = init_cluster(tmp_path / "other", 3, 2, "127.0.0.1", 7001, name="evil")
    intruder_tls = TlsCredentials.from_bundle(other.party_dir(1))
    gate2 = cluster.parties[2].gate
    before = gate2.counters()
    target = {2: cluster.roster.party(2).address}
    # Trusting the right CA but presenting a foreign client certificate: the server refuses the handshake.
    foreign_client = replace(intruder_tls, ca_pem=cluster.parties[1].tls.ca_pem)
    with PeerClient(target, foreign_client, timeout=1.5, attempts=2) as client:
        start = time.monotonic()
        with pytest.raises(PeerUnavailable, match="party 2 .* unreachable"):
            client.send(2, cluster.parties[1].outbox.seal(secrets.token_bytes(32), PROTOCOL, 1, 2, b"x"))
        assert time.monotonic() - start < 3.0
    assert gate2.counters() == before  # nothing reached the gate


def test_server_from_another_ca_refused_by_client(cluster, tmp_path):
    """Our client will not talk to a server whose certificate our cluster CA did not issue."""
    other = init_cluster(tmp_path / "other", 3, 2, "127.0.0.1", 7001, name="evil")
    evil_tls = TlsCredentials.from_bundle(other.party_dir(2))
    port = free_base_port(1)
    evil_gate = Gate(2, cluster.roster.identity_keys())
    # The impostor even trusts our CA, so only the client's check can stop the connection.
    evil_tls = replace(evil_tls, ca_pem=cluster.parties[1].tls.ca_pem)
    with PeerServer(evil_gate, f"127.0.0.1:{port}", evil_tls), \
         PeerClient({2: f"127.0.0.1:{port}"}, cluster.parties[1].tls, timeout=1.0, attempts=2) as client:
        with pytest.raises(PeerUnavailable):
            client.send(2, cluster.parties[1].outbox.seal(secrets.token_bytes(32), PROTOCOL, 1, 2, b"x"))
    assert evil_gate.counters()["accepted"] == 0 and not any(evil_gate.dropped.values())


def test_pinned_certificate_mismatch_dropped(cluster):
    """A server whose roster pins another certificate for party 1 refuses party 1's connection."""
    p1, p3 = cluster.parties[1], cluster.parties[3]
    gate = Gate(3, cluster.roster.identity_keys())
    port = free_base_port(1)
    pinned = {1: p3.tls.cert_pem}
    with PeerServer(gate, f"127.0.0.1:{port}", p3.tls, pinned) as _server, \
         PeerClient({3: f"127.0.0.1:{port}"}, p1.tls) as client:
        sid = secrets.token_bytes(32)
        gate.open_session(sid)
        assert client.send(3, p1.outbox.seal(sid, PROTOCOL, 1, 3, b"x")).reason == "peer_mismatch"
    assert gate.counters()["peer_mismatch"] == 1


def test_peer_down_gives_clear_error_within_timeout(cluster):
    port = free_base_port(1)
    with PeerClient({2: f"127.0.0.1:{port}"}, cluster.parties[1].tls, timeout=1.0, attempts=3) as client:
        start = time.monotonic()
        with pytest.raises(PeerUnavailable) as info:
            client.send(2, cluster.parties[1].outbox.seal(secrets.token_bytes(32), PROTOCOL, 1, 2, b"x"))
        elapsed = time.monotonic() - start
    assert elapsed < 1.5
    assert f"party 2 (127.0.0.1:{port}) unreachable" in str(info.value) and "UNAVAILABLE" in str(info.value)


def test_wait_for_reports_missing_senders_on_timeout(cluster):
    sid = secrets.token_bytes(32)
    gate3 = cluster.parties[3].gate
    gate3.open_session(sid)
    p1 = cluster.parties[1]
    assert p1.client.send(3, p1.outbox.seal(sid, PROTOCOL, 1, BROADCAST, b"r1")).accepted
    start = time.monotonic()
    result = gate3.wait_for(sid, 1, [1, 2], timeout=0.3)
    assert 0.25 < time.monotonic() - start < 2
    assert not result.complete and result.missing == {2}
    assert [e.payload for e in result.arrived[1]] == [b"r1"]


def test_retry_until_the_peer_opens_the_session(cluster):
    """A fast peer's message waits for the slower party's controller instead of being lost."""
    sid = secrets.token_bytes(32)
    p1, gate2 = cluster.parties[1], cluster.parties[2].gate
    threading.Timer(0.3, gate2.open_session, args=(sid,)).start()
    env = p1.outbox.seal(sid, PROTOCOL, 1, 2, b"early")
    assert p1.client.send(2, env, timeout=3.0, retry_not_open=True).accepted
    late = p1.outbox.seal(secrets.token_bytes(32), PROTOCOL, 1, 2, b"never opened")
    start = time.monotonic()
    assert p1.client.send(2, late, timeout=0.4, retry_not_open=True).reason == "session_not_open"
    assert time.monotonic() - start < 1.0


def test_setup_errors_are_one_line_user_errors(cluster, tmp_path):
    p1 = cluster.parties[1]
    taken = cluster.roster.party(2).address
    with pytest.raises(UserError, match=f"cannot listen on {taken}"):
        PeerServer(Gate(1, {}), taken, p1.tls)
    with pytest.raises(UserError, match="TLS bundle .*ca.pem"):
        TlsCredentials.from_bundle(tmp_path)
    broken = cluster.bundle.out / "roster-broken.toml"
    broken.write_text((cluster.bundle.out / "roster.toml").read_text().replace("party-3.pem", "gone.pem"))
    roster = Roster.load(broken)
    with pytest.raises(ConfigError, match="party-3.tls_cert: .*gone.pem"):
        PeerServer.from_roster(roster, 1, Gate(1, {}), p1.tls)
    assert "key redacted" in repr(p1.tls)


def test_ping_answers_roster_peers_with_the_controller_flag_and_refuses_strangers(cluster):
    server = cluster.parties[2].server
    server.controller_active = lambda: True
    assert cluster.parties[1].client.ping(2, timeout=2.0) is True
    server.controller_active = lambda: False
    assert cluster.parties[3].client.ping(2, timeout=2.0) is False
    with pytest.raises(PeerUnavailable):  # party 4: a valid cluster certificate, not in the roster
        cluster.parties[4].client.ping(2, timeout=2.0)
    with pytest.raises(PeerUnavailable):  # party 4 has no server: unreachable
        cluster.parties[1].client.ping(4, timeout=0.5)


def test_peer_channel_reconnects_within_about_a_second_of_the_peer_return(cluster):
    """A peer down for longer than gRPC's default backoff would need: the ping loop's next ping after
    its return succeeds within the bounded backoff (chain_client/channels.py)."""
    p2 = cluster.parties[2]
    client = cluster.parties[1].client
    assert client.ping(2, timeout=2.0) in (True, False)
    listen = p2.server.listen
    p2.server.stop(grace=None)
    failures_until = time.monotonic() + 6.0  # several failed connects: the backoff has grown to its cap
    while time.monotonic() < failures_until:
        with pytest.raises(PeerUnavailable):
            client.ping(2, timeout=0.3)
        time.sleep(0.2)
    replacement = PeerServer.from_roster(cluster.roster, 2, p2.gate, p2.tls, listen).start()
    back = time.monotonic()
    try:
        while True:
            try:
                client.ping(2, timeout=0.3)
                break
            except PeerUnavailable:
                assert time.monotonic() - back < 2.5, "peer channel did not reconnect within 2.5 s"
                time.sleep(0.05)
        print(f"peer reachable again {time.monotonic() - back:.2f} s after its return")
    finally:
        p2.server = replacement
