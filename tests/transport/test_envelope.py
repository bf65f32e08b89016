"""Envelope encoding and signatures, and the gate's rules, without the network."""

from __future__ import annotations

import secrets
import threading
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from appliance.mpc_party.envelope import (
    BROADCAST,
    SIGNING_DOMAIN,
    DropReason,
    Envelope,
    EnvelopeError,
    Gate,
    Outbox,
)
from appliance.mpc_party.envelope_cert import EnvelopeKeys
from tests.transport.conftest import sign_with

KEYS = {i: SigningKey.generate() for i in (1, 2, 3)}
PUBLIC = {i: k.verify_key.encode() for i, k in KEYS.items()}
SID = bytes(range(32))


def make(sender=1, recipient=2, round=1, seq=0, payload=b"hello", session_id=SID, protocol="dkls23-sign",
         key=None) -> Envelope:
    return Envelope.create(sign_with(key or KEYS[sender]), session_id=session_id, protocol=protocol,
                           round=round, sender=sender, recipient=recipient, seq=seq, payload=payload)


def test_layout_round_trip_and_independent_verification():
    env = make(payload=b"\x00" * 5)
    data = env.encode()
    protocol = b"dkls23-sign"
    assert len(data) == 1 + 32 + 1 + len(protocol) + 2 + 2 + 2 + 8 + 4 + 5 + 64
    assert data[0] == 1 and data[1:33] == SID and data[33] == len(protocol)
    assert data[34 : 34 + len(protocol)] == protocol
    assert data[-64:] == env.signature
    assert Envelope.decode(data) == env
    signed = env.signing_bytes()
    prefix = len(SIGNING_DOMAIN).to_bytes(4, "big") + SIGNING_DOMAIN
    assert signed == prefix + data[:-64]
    Ed25519PublicKey.from_public_bytes(PUBLIC[1]).verify(env.signature, signed)
    assert env.verify(PUBLIC[1]) and not env.verify(PUBLIC[2])


@pytest.mark.parametrize(
    "change",
    [
        {"session_id": bytes(32)},
        {"protocol": "dkls23-dkg"},
        {"round": 2},
        {"sender": 3},
        {"recipient": 3},
        {"seq": 1},
        {"payload": b"hellO"},
    ],
)
def test_every_field_is_signed(change):
    env = make()
    assert not replace(env, **change).verify(PUBLIC[1])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[:-1],
        lambda d: d + b"\x00",
        lambda d: b"\x02" + d[1:],
        lambda d: d[:33] + b"\x00" + d[34:],  # protocol length 0
        lambda d: d[:34] + b"X" + d[35:],  # upper case protocol name
        lambda d: b"",
    ],
)
def test_malformed_bytes_rejected(mangle):
    with pytest.raises(EnvelopeError):
        Envelope.decode(mangle(make().encode()))


def test_bad_local_values_rejected():
    with pytest.raises(EnvelopeError):
        make(protocol="FROST sign")
    with pytest.raises(EnvelopeError):
        make(recipient=70000)
    with pytest.raises(EnvelopeError, match="expected 64"):
        Envelope.create(lambda m: b"short", session_id=SID, protocol="p", round=1, sender=1, recipient=0,
                        seq=0, payload=b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_only_raises_envelope_error(data):
    try:
        Envelope.decode(data)
    except EnvelopeError:
        pass


def gate_for(me=2, **kwargs) -> Gate:
    gate = Gate(me, PUBLIC, **kwargs)
    gate.open_session(SID)
    return gate


def forged_certificate(forger: SigningKey) -> bytes:
    """A version-2 envelope of sender 1 whose key certificate the forger signed, not party 1."""
    keys = EnvelopeKeys(1, "c", lambda message: forger.sign(message).signature)
    return Envelope.create(keys, session_id=SID, protocol="dkls23-sign", round=1, sender=1, recipient=2,
                           seq=0, payload=b"hello").encode()


def test_gate_reasons_and_counters():
    gate = gate_for()
    stranger_key = SigningKey.generate()
    cases = [
        (b"\x01garbage", DropReason.MALFORMED, None),
        (make().encode(), DropReason.PEER_MISMATCH, 3),
        (make(sender=9, key=stranger_key).encode(), DropReason.STRANGER, None),
        (make(key=stranger_key).encode(), DropReason.BAD_SIGNATURE, None),
        (forged_certificate(stranger_key), DropReason.BAD_CERTIFICATE, None),
        (make(recipient=3).encode(), DropReason.WRONG_RECIPIENT, None),
        (make(session_id=bytes(32)).encode(), DropReason.SESSION_NOT_OPEN, None),
    ]
    for data, reason, tls in cases:
        verdict = gate.offer(data, tls_party=tls)
        assert not verdict.accepted and verdict.reason is reason
    assert gate.offer(make().encode(), tls_party=1).accepted
    assert gate.offer(make().encode()).reason is DropReason.REPLAY
    assert gate.offer(make(recipient=BROADCAST, seq=1).encode()).accepted
    counters = gate.counters()
    assert counters["accepted"] == 2
    size_rules = (DropReason.QUEUE_FULL, DropReason.BAD_ROUND, DropReason.OVERSIZE, DropReason.OVER_BUDGET)
    assert all(counters[r.value] == 1 for r in DropReason if r not in size_rules)
    assert all(counters[r.value] == 0 for r in size_rules)  # each has its own test (test_limits.py)


def test_only_an_envelope_whose_signature_verified_is_a_sign_of_life():
    """Gate.on_authenticated feeds the liveness view: a forger must not make a dead peer look up."""
    gate = gate_for()
    heard: list[int] = []
    gate.on_authenticated = heard.append
    stranger_key = SigningKey.generate()
    for data in (b"\x01garbage", make(sender=9, key=stranger_key).encode(), make(key=stranger_key).encode(),
                 forged_certificate(stranger_key)):
        gate.offer(data)
    assert heard == []
    gate.offer(make(session_id=bytes(32)).encode())  # authentic, though for no open session
    gate.offer(make(recipient=3).encode())  # authentic, though misaddressed
    assert gate.offer(make(seq=5).encode()).accepted
    assert heard == [1, 1, 1]


def test_queue_bound_per_sender():
    gate = gate_for(max_queued_per_sender=2)
    assert [gate.offer(make(seq=s).encode()).accepted for s in range(3)] == [True, True, False]
    assert gate.dropped["queue_full"] == 1


def test_session_bound_per_sender_holds_after_the_queue_is_drained():
    """Memory for replay detection is bounded even if a roster member keeps sending fresh sequence numbers."""
    gate = gate_for(max_queued_per_sender=2, max_per_session_sender=3)
    for seq in range(3):
        assert gate.offer(make(seq=seq).encode()).accepted
        gate.wait_for(SID, 1, [1], timeout=0)
    assert gate.offer(make(seq=3).encode()).reason is DropReason.QUEUE_FULL
    assert gate.offer(make(sender=3, seq=0, key=KEYS[3]).encode()).accepted  # other senders unaffected


def test_closed_session_refuses_and_cannot_reopen():
    gate = gate_for()
    gate.close_session(SID)
    assert gate.offer(make().encode()).reason is DropReason.SESSION_NOT_OPEN
    assert gate.wait_for(SID, 1, [1], timeout=5).missing == {1}  # returns at once
    with pytest.raises(EnvelopeError, match="cannot reopen"):
        gate.open_session(SID)


def test_wait_for_counts_and_is_woken_by_another_thread():
    gate = gate_for(me=3)
    threading.Timer(0.05, lambda: [gate.offer(make(sender=s, recipient=3, seq=q).encode())
                                   for s in (1, 2) for q in (0, 1)]).start()
    result = gate.wait_for(SID, 1, [1, 2], timeout=5, count=2)
    assert result.complete and [e.seq for e in result.arrived[2]] == [0, 1]
    assert gate.wait_for(SID, 1, [1, 2], timeout=0).missing == {1, 2}  # taken by the first call


def test_concurrent_offers_are_all_counted():
    gate = gate_for(me=3, max_queued_per_sender=1000)
    envelopes = {s: [make(sender=s, recipient=3, seq=q).encode() for q in range(100)] for s in (1, 2)}

    def push(sender):
        for data in envelopes[sender]:
            gate.offer(data)
            gate.offer(data)  # every one replayed once

    threads = [threading.Thread(target=push, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gate.counters()["accepted"] == 200 and gate.dropped["replay"] == 200


def test_outbox_numbers_per_session():
    outbox = Outbox(1, sign_with(KEYS[1]))
    other = secrets.token_bytes(32)
    seqs = [outbox.seal(sid, "p", 1, 0, b"").seq for sid in (SID, SID, other, SID)]
    assert seqs == [0, 1, 0, 2]
