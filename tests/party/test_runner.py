"""The session runner: real protocol sessions between three parties over mutual-TLS gRPC."""

from __future__ import annotations

import secrets
import threading
import time

import coincurve
import nacl.signing
import pytest

from appliance.cluster.bundle import fill_roster, init_cluster
from appliance.mpc_party.envelope import Envelope, Gate, Outbox
from appliance.mpc_party.protocols.dkg import DkgParty
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.group import ED25519
from appliance.mpc_party.protocols.sessions import DkgSession, FrostSignSession
from appliance.mpc_party.runner import RunnerConfig, SessionCancelled, SessionRunner, SessionTimeout
from appliance.mpc_party.transport import PeerClient, PeerServer, TlsCredentials
from appliance.rules.roster import Roster
from chain_client.address import account_address
from tests.transport.conftest import free_base_port, sign_with


def three_party_cluster(tmp_path_factory, name: str):
    """A 2-of-3 cluster bundle with a fresh identity key per party: (bundle, roster, identity keys)."""
    out = tmp_path_factory.mktemp("cluster") / "bundle"
    made = init_cluster(out, 3, 2, "127.0.0.1", free_base_port(3), name=name)
    keys = {i: nacl.signing.SigningKey.generate() for i in (1, 2, 3)}
    for i in (1, 2, 3):
        fill_roster(out, i, keys[i].verify_key.encode().hex(),
                    account_address(coincurve.PrivateKey().public_key.format()))
    return made, Roster.load(made.out / "roster.toml"), keys


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    made, roster, keys = three_party_cluster(tmp_path_factory, "runner")
    built, closers = {}, []
    for i in (1, 2, 3):
        tls = TlsCredentials.from_bundle(made.party_dir(i))
        gate = Gate(i, roster.identity_keys())
        server = PeerServer.from_roster(roster, i, gate, tls).start()
        client = PeerClient.from_roster(roster, i, tls, timeout=1.0)
        runner = SessionRunner(i, gate, Outbox(i, sign_with(keys[i])), client.send, RunnerConfig(3.0))
        runner.parts = (gate, client, keys[i])  # for tests that build a runner with a hostile network
        built[i] = runner
        closers += [runner.close, client.close, lambda s=server: s.stop(grace=None)]
    yield built
    for close in closers:
        close()


def run_parallel(jobs):
    """Run callables in threads (as separate daemons would); return results or exceptions by key."""
    results = {}

    def work(key, fn):
        try:
            results[key] = fn()
        except Exception as exc:  # collected for the assertions
            results[key] = exc

    threads = [threading.Thread(target=work, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_dkg_and_signing_over_mtls_with_staggered_starts(runners) -> None:
    sid = secrets.token_bytes(32)

    def dkg(i, delay):
        def go():
            time.sleep(delay)  # peers open the session at different times: early envelopes are re-sent
            return runners[i].run(sid, DkgSession(DkgParty(ED25519, sid, i, 3, 2), "frost-ed25519-dkg"))
        return go

    shares = run_parallel({i: dkg(i, 0.2 * (i - 1)) for i in (1, 2, 3)})
    key = shares[1].group_public_key
    assert all(shares[i].group_public_key == key for i in (1, 2, 3))

    message, sign_sid = b"runner test", secrets.token_bytes(32)
    sigs = run_parallel({i: (lambda i=i: runners[i].run(
        sign_sid, FrostSignSession(FROST_ED25519, shares[i], sign_sid, [1, 3], message))) for i in (1, 3)})
    assert sigs[1] == sigs[3]
    nacl.signing.VerifyKey(key).verify(message, sigs[1])


def test_silent_party_times_out_naming_it(runners) -> None:
    sid = secrets.token_bytes(32)
    results = run_parallel({i: (lambda i=i: runners[i].run(
        sid, DkgSession(DkgParty(ED25519, sid, i, 3, 2), "frost-ed25519-dkg"))) for i in (1, 2)})
    for i in (1, 2):
        assert isinstance(results[i], SessionTimeout) and results[i].missing == [3]


def test_a_signing_session_no_partner_joins_is_given_up_at_the_join_timeout(runners) -> None:
    """A quorum partner that shed the job never comes: with join_timeout the session ends after
    join_timeout_s naming it, not after the whole round (30 s here); once a partner has sent anything,
    rounds run to their own deadlines (the staggered test above)."""
    runner = runners[1]
    patient = SessionRunner(1, runner.gate, runner.outbox, runner.parts[1].send,
                            RunnerConfig(round_timeout_s=30.0, join_timeout_s=0.3), pool=runner._pool)
    sid = secrets.token_bytes(32)
    shares = run_parallel({i: (lambda i=i: runners[i].run(
        sid, DkgSession(DkgParty(ED25519, sid, i, 3, 2), "frost-ed25519-dkg"))) for i in (1, 2, 3)})
    sign_sid = secrets.token_bytes(32)
    with pytest.raises(SessionTimeout) as timed_out:
        patient.run(sign_sid, FrostSignSession(FROST_ED25519, shares[1], sign_sid, [1, 3], b"nobody joins"),
                    join_timeout=True)
    assert timed_out.value.missing == [3]


def test_cancel_stops_a_waiting_session_at_once(runners) -> None:
    """SessionRunner.cancel (pairguard's tie-break): the waiting run raises SessionCancelled well before
    its round deadline; cancelling a session that is not running is refused."""
    sid = secrets.token_bytes(32)
    assert not runners[1].cancel(sid, "not running")
    started = time.monotonic()
    timer = threading.Timer(0.3, lambda: runners[1].cancel(sid, "a peer re-sets up the pair itself"))
    timer.start()
    with pytest.raises(SessionCancelled, match="re-sets up the pair itself"):
        runners[1].run(sid, DkgSession(DkgParty(ED25519, sid, 1, 3, 2), "frost-ed25519-dkg"))
    assert time.monotonic() - started < 2.0  # the round deadline is 3 s
    assert not runners[1].cancel(sid, "over")


def test_a_session_cancelled_ahead_ends_as_soon_as_it_begins(runners) -> None:
    """A leave note can arrive while our run of the session waits for the request's lock: with `ahead`
    the cancellation waits for the run, which then ends before its first wait."""
    sid = secrets.token_bytes(32)
    assert runners[1].cancel(sid, "party 2 timed out and left the session", ahead=True)
    started = time.monotonic()
    with pytest.raises(SessionCancelled, match="party 2 timed out"):
        runners[1].run(sid, DkgSession(DkgParty(ED25519, sid, 1, 3, 2), "frost-ed25519-dkg"))
    assert time.monotonic() - started < 1.0


def test_a_note_after_the_join_timeout_is_still_delivered(runners) -> None:
    """A session given up at its join timeout stops its round re-sends; the leave note that says so
    must still go out (it did not: the joined signers then waited a whole round, test_join_party)."""
    from appliance.mpc_party.protocols.hello import LEAVE_PROTOCOL, LEAVE_ROUND
    runner = runners[1]
    patient = SessionRunner(1, runner.gate, runner.outbox, runner.parts[1].send,
                            RunnerConfig(round_timeout_s=30.0, join_timeout_s=0.3), pool=runner._pool)
    sid = secrets.token_bytes(32)
    shares = run_parallel({i: (lambda i=i: runners[i].run(
        sid, DkgSession(DkgParty(ED25519, sid, i, 3, 2), "frost-ed25519-dkg"))) for i in (1, 2, 3)})
    sign_sid = secrets.token_bytes(32)
    with pytest.raises(SessionTimeout):
        patient.run(sign_sid, FrostSignSession(FROST_ED25519, shares[1], sign_sid, [1, 3], b"nobody joins"),
                    join_timeout=True)
    runners[3].gate.open_session(sign_sid)  # party 3 opens it late: the note must reach it anyway
    try:
        patient.note(sign_sid, LEAVE_PROTOCOL, LEAVE_ROUND, b"\x01", (3,), 3.0)
        assert runners[3].gate.wait_for(sign_sid, LEAVE_ROUND, [1], 3.0).arrived
    finally:
        runners[3].gate.close_session(sign_sid)


def hostile_send(client, me: int, key):
    """A network (or compromised peer) that replays every envelope, adds a copy with a broken signature,
    and one validly signed envelope for a session nobody opened."""
    def send(target, env, timeout):
        data = env.encode()
        ack = client.send(target, data, timeout)
        client.send(target, data, timeout)  # replay
        broken = bytearray(data)
        broken[-1] ^= 0x01  # the signature is the last field
        client.send(target, bytes(broken), timeout)
        stray = Envelope.create(sign_with(key), session_id=secrets.token_bytes(32), protocol=env.protocol,
                                round=env.round, sender=me, recipient=env.recipient, seq=0, payload=env.payload)
        client.send(target, stray.encode(), timeout)
        return ack
    return send


def test_replayed_forged_and_stray_envelopes_are_dropped_and_counted(runners) -> None:
    hostile = {}
    for i, runner in runners.items():
        gate, client, key = runner.parts
        hostile[i] = SessionRunner(i, gate, Outbox(i, sign_with(key)), hostile_send(client, i, key),
                                   RunnerConfig(3.0))
    before = {i: runners[i].parts[0].counters() for i in runners}
    sid = secrets.token_bytes(32)
    shares = run_parallel({i: (lambda i=i: hostile[i].run(
        sid, DkgSession(DkgParty(ED25519, sid, i, 3, 2), "frost-ed25519-dkg"))) for i in (1, 2, 3)})
    assert len({shares[i].group_public_key for i in (1, 2, 3)}) == 1  # the session completed
    for i in (1, 2, 3):  # a loaded host may count the last sends a little after the session ends
        deadline = time.monotonic() + 10
        while True:
            after = runners[i].parts[0].counters()
            grown = {r: after[r] > before[i][r] for r in ("replay", "bad_signature", "session_not_open")}
            if all(grown.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert all(grown.values()), (i, grown, after)
        hostile[i].close()
