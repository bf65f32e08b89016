"""Equivocation evidence from signed envelopes: a dealer that shows two parties different round-1
commitments is named from its two signed broadcasts (an echo mismatch alone names nobody)."""

from __future__ import annotations

import secrets

from nacl.signing import SigningKey

from appliance.mpc_party.envelope import BROADCAST, Envelope
from appliance.mpc_party.evidence import DealerEquivocated, encode_exhibits, find_equivocation
from appliance.mpc_party.protocols.dkg import DkgParty
from appliance.mpc_party.protocols.group import ED25519

KEYS = {i: SigningKey.generate() for i in (1, 2, 3)}
IDENTITIES = {i: bytes(k.verify_key) for i, k in KEYS.items()}


def envelope(sender: int, sid: bytes, payload: bytes, signer: int | None = None,
             recipient: int = BROADCAST) -> Envelope:
    key = KEYS[signer or sender]
    return Envelope.create(lambda data: key.sign(data).signature, session_id=sid, protocol="dkg-ed25519",
                           round=1, sender=sender, recipient=recipient, seq=0, payload=payload)


def test_two_signed_broadcasts_of_one_dealer_name_it():
    sid = secrets.token_bytes(32)
    shown_to_1 = DkgParty(ED25519, sid, 3, 3, 2).round1().to_bytes()
    shown_to_2 = DkgParty(ED25519, sid, 3, 3, 2).round1().to_bytes()  # another valid polynomial
    honest_2 = DkgParty(ED25519, sid, 2, 3, 2).round1().to_bytes()
    seen_by_1 = [envelope(3, sid, shown_to_1), envelope(2, sid, honest_2)]
    seen_by_2 = [envelope(3, sid, shown_to_2, recipient=2)]  # addressed to its victim: still a broadcast
    found = find_equivocation(seen_by_1, encode_exhibits(seen_by_2), IDENTITIES)
    assert found is not None and found.culprit == 3
    error = DealerEquivocated(found)
    assert error.culprit == 3 and len(error.evidence) == 2
    first, second = (Envelope.decode(e) for e in error.evidence)
    assert first.verify(IDENTITIES[3]) and second.verify(IDENTITIES[3]) and first.payload != second.payload


def test_forged_or_identical_exhibits_name_nobody():
    sid = secrets.token_bytes(32)
    real = DkgParty(ED25519, sid, 3, 3, 2).round1().to_bytes()
    other = DkgParty(ED25519, sid, 3, 3, 2).round1().to_bytes()
    seen = [envelope(3, sid, real)]
    # party 2 "shows" a broadcast of party 3 that it signed itself: not party 3's, proves nothing
    assert find_equivocation(seen, encode_exhibits([envelope(3, sid, other, signer=2)]), IDENTITIES) is None
    assert find_equivocation(seen, encode_exhibits([envelope(3, sid, real)]), IDENTITIES) is None
    assert find_equivocation(seen, b"\x01garbage", IDENTITIES) is None
    # the same dealer in another session is another slot
    assert find_equivocation(seen, encode_exhibits([envelope(3, secrets.token_bytes(32), other)]),
                             IDENTITIES) is None


def test_point_to_point_messages_differ_legitimately_and_name_nobody():
    sid = secrets.token_bytes(32)
    dealer = DkgParty(ED25519, sid, 3, 3, 2)
    dealer.round1()
    for j in (1, 2):
        dealer.receive(DkgParty(ED25519, sid, j, 3, 2).round1())
    _, shares = dealer.round2()
    to_1, to_2 = (envelope(3, sid, s.to_bytes(), recipient=s.recipient) for s in shares)
    assert find_equivocation([to_1], encode_exhibits([to_2]), IDENTITIES) is None
