"""Joining a peer's signing session (mpc_party/join.py, protocols/hello.py, envelope.Gate announcements,
daemon._join_peer_session): the hello's wire format, what the gate does with it, the bounded pool, and
the rules a joiner applies before it signs anything a peer asked for. The attacks: a hello naming
another session or leaving out its sender, a hello for a request its own controller would reject (or
one already signed, closed, or of another keyring), a peer naming signer set after signer set to use up
the party's own budget, a flood of hellos beyond the pool. Real sessions over gRPC: tests/e2e/test_join_session.py.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from types import SimpleNamespace

import nacl.signing
import pytest

from appliance.mpc_party.daemon import MAX_SIGNER_SETS, PartyDaemon
from appliance.mpc_party.envelope import BROADCAST, DropReason, Envelope, Gate
from appliance.mpc_party.join import JoinAnswered, JoinRefused, PeerJoiner, hello_session_id, parse_hello
from appliance.mpc_party.local_api import JobFailed, SignJob
from appliance.mpc_party.protocols.hello import (
    HELLO_PROTOCOL,
    HELLO_ROUND,
    LEAVE_PROTOCOL,
    LEAVE_ROUND,
    MAX_HELLO_LEN,
    RESULT_PROTOCOL,
    RESULT_ROUND,
    Hello,
    HelloError,
    LeaveReason,
)
from appliance.rules.requests import ICA_TYPE_URL
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import ICATransactionRequest

CHAIN, KEYRING = "zrkeyring-test-1", "keyring1join"
KEYS = {i: nacl.signing.SigningKey.generate() for i in (1, 2, 3)}
ECDSA = "KEY_TYPE_ECDSA_SECP256K1"
PENDING = "SIGN_REQUEST_STATUS_PENDING"


def hello_envelope(hello: Hello, sender: int = 2, sid: bytes | None = None, payload: bytes | None = None,
                   protocol: str = HELLO_PROTOCOL, round_: int = HELLO_ROUND) -> Envelope:
    sid = hello_session_id(hello, CHAIN, KEYRING) if sid is None else sid
    return Envelope.create(lambda m: KEYS[sender].sign(m).signature, session_id=sid, protocol=protocol,
                           round=round_, sender=sender, recipient=BROADCAST, seq=0,
                           payload=hello.encode() if payload is None else payload)


HELLO = Hello(7, 0, 0, (1, 2))


# --- the wire format ------------------------------------------------------------------------------

def test_hello_round_trips_and_is_fixed_width() -> None:
    for hello in (HELLO, Hello(2**64 - 1, 2**32 - 1, 1, tuple(range(1, 17)))):
        raw = hello.encode()
        assert Hello.decode(raw) == hello and len(raw) == 16 + 2 * len(hello.signers) <= MAX_HELLO_LEN


@pytest.mark.parametrize("raw", [b"", bytes(15), HELLO.encode()[:-1], HELLO.encode() + b"\0",
                                 Hello(7, 0, 0, (2, 1)).encode()[:16] + b"\x00\x02\x00\x01",  # unsorted
                                 HELLO.encode()[:16] + b"\x00\x01\x00\x01",  # repeated
                                 HELLO.encode()[:14] + b"\x00\x00",  # no signers
                                 HELLO.encode()[:12] + b"\xff\xff" + HELLO.encode()[14:]])  # retry out of range
def test_malformed_hellos_are_refused(raw: bytes) -> None:
    with pytest.raises(HelloError):
        Hello.decode(raw)


def test_random_bytes_never_decode_to_anything_but_a_hello_error() -> None:
    for _ in range(2000):
        raw = secrets.token_bytes(secrets.randbelow(64))
        try:
            Hello.decode(raw)
        except HelloError:
            pass


def test_a_hello_must_name_its_own_session_its_sender_and_us() -> None:
    assert parse_hello(hello_envelope(HELLO), 1, CHAIN, KEYRING) == HELLO
    with pytest.raises(HelloError, match="another session"):  # fields of one session, id of another
        parse_hello(hello_envelope(HELLO, sid=hello_session_id(Hello(8, 0, 0, (1, 2)), CHAIN, KEYRING)), 1,
                    CHAIN, KEYRING)
    with pytest.raises(HelloError, match="another session"):  # another keyring's session
        parse_hello(hello_envelope(HELLO), 1, CHAIN, "keyring1other")
    with pytest.raises(HelloError, match="do not include"):  # the sender is not a signer
        parse_hello(hello_envelope(Hello(7, 0, 0, (1, 3))), 1, CHAIN, KEYRING)
    with pytest.raises(HelloError, match="do not include"):  # we are not a signer
        parse_hello(hello_envelope(Hello(7, 0, 0, (2, 3))), 1, CHAIN, KEYRING)


# --- the gate ---------------------------------------------------------------------------------------

def gate_with_hook() -> tuple[Gate, list[Envelope]]:
    gate = Gate(1, {i: k.verify_key.encode() for i, k in KEYS.items()}, announcements=(HELLO_PROTOCOL,))
    seen: list[Envelope] = []
    gate.on_unopened = seen.append
    return gate, seen


def test_the_gate_hands_a_hello_for_an_unopened_session_to_the_hook_and_never_queues_one() -> None:
    gate, seen = gate_with_hook()
    env = hello_envelope(HELLO)
    assert gate.offer(env.encode(), tls_party=2).accepted and [e.session_id for e in seen] == [env.session_id]
    gate.open_session(env.session_id)  # open (our controller's job got there first): no hook, no inbox
    assert gate.offer(hello_envelope(HELLO).encode(), tls_party=2).accepted and len(seen) == 1
    arrival = gate.wait_for(env.session_id, HELLO_ROUND, [2], timeout=0.01)
    assert not arrival.arrived  # a protocol round never reads it (and it takes nothing from the budget)
    gate.close_session(env.session_id)  # ended here: a late hello starts nothing
    assert gate.offer(hello_envelope(HELLO).encode(), tls_party=2).accepted and len(seen) == 1


def test_the_gate_checks_a_hello_like_any_envelope_first() -> None:
    gate, seen = gate_with_hook()
    forged = hello_envelope(HELLO)
    forged = Envelope(**{**forged.__dict__, "signature": bytes(64)})
    assert gate.offer(forged.encode(), tls_party=2).reason is DropReason.BAD_SIGNATURE
    assert gate.offer(hello_envelope(HELLO).encode(), tls_party=3).reason is DropReason.PEER_MISMATCH
    big = hello_envelope(HELLO, payload=bytes(MAX_HELLO_LEN + 1))
    assert gate.offer(big.encode(), tls_party=2).reason is DropReason.OVERSIZE
    assert gate.offer(hello_envelope(HELLO, round_=2).encode(), tls_party=2).reason is DropReason.BAD_ROUND
    assert seen == []


# --- the pool ---------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_joiner_acts_once_per_session_and_bounds_its_queue() -> None:
    release = threading.Event()
    started: list[Hello] = []

    def join(hello: Hello, sender: int) -> None:
        started.append(hello)
        release.wait(5)

    joiner = PeerJoiner(1, CHAIN, KEYRING, join, workers=1, max_age_s=10.0)
    try:
        hellos = [Hello(100 + k, 0, 0, (1, 2)) for k in range(10)]
        for hello in hellos:
            joiner.on_unopened(hello_envelope(hello))
            joiner.on_unopened(hello_envelope(hello))  # a re-sent hello: acted on once
        assert joiner._pending == 5  # 1 worker + 4 queued; the other five were busy (not remembered)
        release.set()
        joiner._pool.shutdown(wait=True)
        assert [h.request_id for h in started] == [100, 101, 102, 103, 104]
    finally:
        joiner.close()


def test_a_hello_that_waited_longer_than_its_opener_waits_is_dropped() -> None:
    clock, ran = Clock(), []
    joiner = PeerJoiner(1, CHAIN, KEYRING, lambda hello, sender: ran.append(hello), workers=1, max_age_s=1.5,
                        clock=clock)
    gate_open = threading.Event()
    joiner._pool.submit(gate_open.wait, 5)  # the only worker is busy
    joiner.on_unopened(hello_envelope(HELLO))
    clock.now = 2.0  # the opener gave up at 1.5 s
    gate_open.set()
    joiner._pool.shutdown(wait=True)
    assert ran == []


def test_a_disabled_joiner_ignores_hellos() -> None:
    ran: list[Hello] = []
    joiner = PeerJoiner(1, CHAIN, KEYRING, lambda hello, sender: ran.append(hello), workers=0, max_age_s=1.0)
    joiner.on_unopened(hello_envelope(HELLO))
    joiner._pool.shutdown(wait=True)
    assert ran == []


# --- what the daemon checks before joining ------------------------------------------------------------

def chain_request(**changes):
    fields = dict(id=7, status=PENDING, key_type=ECDSA, key_ids=[3], data_for_signing=[bytes(32)],
                  child_req_ids=[], mpc_btl=1000, signed_data=[], metadata=None)
    fields.update(changes)
    request = SimpleNamespace(**fields)
    request.HasField = lambda name: getattr(request, name) is not None
    return request


def fake_daemon(request, key=None, made: bytes | None = None):
    """What _join_peer_session touches: the agreed chain reader, the height, our signatures, run_job and
    _send_result (recorded: run jobs in `ran`, result notes in `daemon.sent`)."""
    key = key or SimpleNamespace(id=3, keyring_addr=KEYRING, type=ECDSA, public_key=b"\x02" * 33)
    ran: list[tuple[SignJob, int]] = []
    daemon = SimpleNamespace(me=1, keyring=KEYRING, sent=[],
                             config=SimpleNamespace(chain=SimpleNamespace(chain_id=CHAIN)),
                             state=SimpleNamespace(signature_of=lambda keyring, request_id: made),
                             checked=SimpleNamespace(sign_request=lambda rid: request, key=lambda kid: key),
                             chain=SimpleNamespace(latest_height=lambda: 10),
                             run_job=lambda job, peer=None: ran.append((job, peer)))
    daemon._send_result = lambda sid, peer, signature: daemon.sent.append((sid, peer, signature))
    return daemon, ran


def test_a_join_builds_the_job_from_the_chain_alone() -> None:
    daemon, ran = fake_daemon(chain_request())
    PartyDaemon._join_peer_session(daemon, Hello(7, 1, 1, (1, 2)), 2)
    assert ran == [(SignJob(7, ECDSA, 3, b"\x02" * 33, bytes(32), (1, 2), 1, 1), 2)]


def ica_metadata(input_msg: bytes, key_id: int = 3):
    record = ICATransactionRequest(id=5, key_id=key_id, input_msg=input_msg)
    return SimpleNamespace(type_url=ICA_TYPE_URL, value=record.SerializeToString())


@pytest.mark.parametrize(("request_", "key", "reason"), [
    (None, None, "not open"),
    (chain_request(status="SIGN_REQUEST_STATUS_FULFILLED"), None, "not open"),
    (chain_request(child_req_ids=[8, 9]), None, "parent request"),
    (chain_request(key_ids=[3, 4]), None, "exactly one key"),
    (chain_request(data_for_signing=[bytes(31)]), None, "32-byte digest"),
    (chain_request(mpc_btl=10), None, "too close to timeout"),
    (chain_request(), SimpleNamespace(id=3, keyring_addr="keyring1other", type=ECDSA, public_key=b"\x02" * 33),
     "belongs to keyring"),
    (chain_request(), SimpleNamespace(id=3, keyring_addr=KEYRING, type="KEY_TYPE_EDDSA_ED25519",
                                      public_key=b"\x02" * 33), "request is for"),
    (chain_request(metadata=ica_metadata(b"transfer")), None, "SHA-256 of ICA"),
    (chain_request(metadata=ica_metadata(b"transfer", key_id=4),
                   data_for_signing=[hashlib.sha256(b"transfer").digest()]), None, "is for key 4"),
])
def test_a_join_is_refused_for_what_our_own_controller_would_not_sign(request_, key, reason: str) -> None:
    daemon, ran = fake_daemon(request_, key)
    with pytest.raises(JoinRefused, match=reason):
        PartyDaemon._join_peer_session(daemon, HELLO, 2)
    assert ran == []


@pytest.mark.parametrize(("made", "on_chain"), [(b"ours", []), (None, [SimpleNamespace(signed_data=b"chain's")])])
def test_a_party_that_has_the_signature_hands_it_to_the_opener_instead_of_joining(made, on_chain) -> None:
    """Signed already (by us in another session, or on chain): no session runs; the opener gets a result
    note in its own session id (it verifies the signature itself before using it)."""
    daemon, ran = fake_daemon(chain_request(signed_data=on_chain), made=made)
    with pytest.raises(JoinAnswered):
        PartyDaemon._join_peer_session(daemon, HELLO, 2)
    assert ran == [] and daemon.sent == [(hello_session_id(HELLO, CHAIN, KEYRING), 2, made or b"chain's")]


def test_a_valid_ica_request_is_joined() -> None:
    data = hashlib.sha256(b"transfer").digest()
    daemon, ran = fake_daemon(chain_request(metadata=ica_metadata(b"transfer"), data_for_signing=[data]))
    PartyDaemon._join_peer_session(daemon, HELLO, 2)
    assert len(ran) == 1


def sign_guard_party():
    return SimpleNamespace(me=1, _lock=threading.Lock(), _signer_sets=OrderedDict())


def job(signers: tuple[int, ...], retry: int = 0, attempt: int = 0) -> SignJob:
    return SignJob(7, ECDSA, 3, b"\x02" * 33, bytes(32), signers, attempt, retry)


def test_a_peer_naming_signer_sets_cannot_use_up_our_controllers_budget() -> None:
    """Each peer gets one signer set (and its retries) per (request, attempt) of its own; our
    controller's MAX_SIGNER_SETS are untouched by any number of hellos."""
    party = sign_guard_party()
    PartyDaemon._join_signer_set(party, job((1, 2, 3)), peer=2)
    PartyDaemon._join_signer_set(party, job((1, 2, 3), retry=1), peer=2)  # its retry
    for other in ((1, 2, 4), (1, 2, 5)):
        with pytest.raises(JobFailed, match="one set each"):
            PartyDaemon._join_signer_set(party, job(other), peer=2)
    PartyDaemon._join_signer_set(party, job((1, 2, 4), attempt=1), peer=2)  # next attempt: its own budget
    runs = [((1, 3, 4), 0), ((1, 3, 5), 0), ((1, 4, 5), 0), ((1, 3, 4), 1)]
    for signers, retry in runs[:MAX_SIGNER_SETS]:
        PartyDaemon._join_signer_set(party, job(signers, retry=retry))  # the controller's own budget is whole


# --- the result note ----------------------------------------------------------------------------------

def test_the_gate_hands_an_announcement_for_a_running_session_to_its_hook() -> None:
    gate = Gate(1, {i: k.verify_key.encode() for i, k in KEYS.items()}, announcements=(RESULT_PROTOCOL,))
    notes: list[Envelope] = []
    gate.on_announcement = notes.append
    note = hello_envelope(HELLO, payload=bytes(64), protocol=RESULT_PROTOCOL, round_=RESULT_ROUND)
    assert gate.offer(note.encode(), tls_party=2).accepted and notes == []  # not running here
    gate.open_session(note.session_id)
    assert gate.offer(note.encode(), tls_party=2).accepted and notes == [note]
    assert not gate.wait_for(note.session_id, RESULT_ROUND, [2], timeout=0.01).arrived  # never queued


def test_a_wake_ends_a_wait_on_the_session_at_once() -> None:
    gate, _ = gate_with_hook()
    sid = bytes(32)
    gate.open_session(sid)
    threading.Timer(0.05, gate.wake, args=(sid,)).start()
    started = time.monotonic()
    assert gate.wait_for(sid, 1, [2], timeout=5.0).missing == {2}
    assert time.monotonic() - started < 2.0


def result_daemon(job: SignJob):
    finished: list[tuple[bytes, bytes]] = []
    runner = SimpleNamespace(finish=lambda sid, result: finished.append((sid, result)) or True)
    daemon = SimpleNamespace(me=1, _lock=threading.Lock(), _signing={b"s" * 32: job}, runner=runner)
    return daemon, finished


def note_from(sender: int, payload: bytes, sid: bytes = b"s" * 32) -> Envelope:
    return Envelope.create(lambda m: KEYS[sender].sign(m).signature, session_id=sid, protocol=RESULT_PROTOCOL,
                           round=RESULT_ROUND, sender=sender, recipient=BROADCAST, seq=0, payload=payload)


def test_a_result_note_ends_the_session_only_if_a_signer_sent_a_signature_that_verifies() -> None:
    signing = nacl.signing.SigningKey.generate()
    data = b"message to sign"
    job = SignJob(7, "KEY_TYPE_EDDSA_ED25519", 3, bytes(signing.verify_key), data, (1, 2), 0)
    good = signing.sign(data).signature
    daemon, finished = result_daemon(job)
    PartyDaemon._on_result_note(daemon, note_from(2, bytes(64)))  # does not verify
    PartyDaemon._on_result_note(daemon, note_from(3, good))  # not a signer of this session
    PartyDaemon._on_result_note(daemon, note_from(2, good, sid=b"t" * 32))  # not running here
    PartyDaemon._on_result_note(daemon, note_from(2, nacl.signing.SigningKey.generate().sign(data).signature))
    assert finished == []
    PartyDaemon._on_result_note(daemon, note_from(2, good))
    assert finished == [(b"s" * 32, good)]


# --- the leave note -----------------------------------------------------------------------------------

def leave_from(sender: int, sid: bytes = b"s" * 32, reason: int = LeaveReason.TIMEOUT) -> Envelope:
    return Envelope.create(lambda m: KEYS[sender].sign(m).signature, session_id=sid, protocol=LEAVE_PROTOCOL,
                           round=LEAVE_ROUND, sender=sender, recipient=BROADCAST, seq=0, payload=bytes([reason]))


def leave_daemon(running: dict[bytes, SignJob]):
    cancelled: list[tuple[bytes, str]] = []
    runner = SimpleNamespace(cancel=lambda sid, why, ahead=False: cancelled.append((sid, why)) or True)
    daemon = SimpleNamespace(me=1, _lock=threading.Lock(), _signing=dict(running), _left=OrderedDict(),
                             runner=runner)
    return daemon, cancelled


def test_a_leave_note_ends_our_run_only_if_a_signer_of_that_session_sent_it() -> None:
    """CI: signers 4 and 5 had heard from each other and waited a whole round for 3, which had refused
    the session; the request's next sessions found them still waiting, and the request timed out. A
    signer's leave note ends the session at once; a non-signer's changes nothing (it could otherwise
    cancel sessions between others)."""
    job = SignJob(7, ECDSA, 3, b"\x02" * 33, bytes(32), (1, 2), 0)
    daemon, cancelled = leave_daemon({b"s" * 32: job})
    PartyDaemon._on_leave(daemon, leave_from(3))  # not a signer of this session
    PartyDaemon._on_leave(daemon, note_from(2, bytes(64)))  # a result note is no leave
    assert cancelled == []
    PartyDaemon._on_leave(daemon, leave_from(2, reason=LeaveReason.REFUSED))
    assert cancelled == [(b"s" * 32, "party 2 refused it and left the session")]


def test_a_leave_note_for_a_session_not_begun_here_is_kept_for_when_it_begins() -> None:
    daemon, cancelled = leave_daemon({})
    PartyDaemon._on_leave(daemon, leave_from(2, sid=b"t" * 32))
    PartyDaemon._on_leave(daemon, leave_from(3, sid=b"t" * 32))  # a non-signer's note does not replace it
    assert cancelled == [] and daemon._left == {b"t" * 32: {2, 3}}  # _sign_session checks it when it begins


def test_a_party_out_of_a_session_tells_the_other_signers() -> None:
    """A refusal, a timeout or a failure in _sign sends a leave note to every other signer; a session a
    leave note ended does not send one again."""
    from appliance.mpc_party.runner import SessionCancelled, SessionTimeout
    for raised, reason in ((JobFailed("refused: over budget"), LeaveReason.REFUSED),
                           (SessionTimeout("s", 1, [3]), LeaveReason.TIMEOUT),
                           (RuntimeError("bug"), LeaveReason.FAILED), (SessionCancelled("left"), None)):
        sent: list[int] = []

        def fail(*_args, raised=raised, **_kwargs):
            raise raised
        daemon = SimpleNamespace(me=1, keyring=KEYRING, _check_attempt=lambda job, btl: None,
                                 _request_lock=lambda rid: threading.Lock(), _join_signer_set=fail,
                                 state=SimpleNamespace(signature_of=lambda keyring, rid: None),
                                 _send_leave=lambda job, sid, why, sent=sent: sent.append(why))
        with pytest.raises(type(raised)):
            PartyDaemon._sign(daemon, job((1, 2, 3)), b"s" * 32, 1000)
        assert sent == ([] if reason is None else [reason])


def test_the_gate_takes_a_leave_note_of_one_byte_only() -> None:
    gate = Gate(1, {i: k.verify_key.encode() for i, k in KEYS.items()}, announcements=(LEAVE_PROTOCOL,))
    notes: list[Envelope] = []
    gate.on_announcement = notes.append
    gate.open_session(b"s" * 32)
    long = Envelope.create(lambda m: KEYS[2].sign(m).signature, session_id=b"s" * 32, protocol=LEAVE_PROTOCOL,
                           round=LEAVE_ROUND, sender=2, recipient=BROADCAST, seq=0, payload=b"\x01\x02")
    assert gate.offer(long.encode(), tls_party=2).reason is DropReason.OVERSIZE
    assert gate.offer(leave_from(2).encode(), tls_party=2).accepted and len(notes) == 1
