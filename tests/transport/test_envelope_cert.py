"""Version-2 envelopes: signed by an in-memory envelope key that the identity key certifies.

The attacks: a forged certificate, party A's certificate used by B, a certificate of another
cluster, an expired or not-yet-valid certificate, an envelope signed by a key the certificate does
not name, a tampered certificate; and the evidence a third party checks must still verify."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

import pytest
from nacl.signing import SigningKey

from appliance.mpc_party.envelope import (
    CERTIFIED_VERSION,
    DropReason,
    Envelope,
    EnvelopeError,
    Gate,
    Outbox,
)
from appliance.mpc_party.envelope_cert import (
    CLOCK_SKEW_S,
    LIFETIME_S,
    MAX_CERT_LEN,
    ROTATE_AFTER_S,
    EnvelopeKeys,
    KeyCertificate,
    cluster_bytes,
)
from appliance.mpc_party.evidence import encode_exhibits, find_equivocation
from appliance.mpc_party.protocols.dkg import DkgParty
from appliance.mpc_party.protocols.group import ED25519
from appliance.mpc_party.transport import MAX_MESSAGE
from tests.transport.conftest import sign_with

IDENTITY = {i: SigningKey.generate() for i in (1, 2, 3)}
PUBLIC = {i: k.verify_key.encode() for i, k in IDENTITY.items()}
CLUSTER = "test-cluster"
SID = bytes(range(32))
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingSigner:
    """The identity key's signer, counting its calls (the HSM calls a party makes)."""

    def __init__(self, key: SigningKey) -> None:
        self.key, self.calls, self.fail = key, 0, False

    def __call__(self, message: bytes) -> bytes:
        if self.fail:
            raise RuntimeError("HSM unavailable")
        self.calls += 1
        return self.key.sign(message).signature


def keys_for(party: int, clock: Clock | None = None, signer=None, cluster: str = CLUSTER) -> EnvelopeKeys:
    return EnvelopeKeys(party, cluster, signer or CountingSigner(IDENTITY[party]), clock=clock or Clock())


def gate_for(me: int = 2, clock: Clock | None = None, cluster: str | None = CLUSTER) -> Gate:
    gate = Gate(me, PUBLIC, cluster=cluster, clock=clock or Clock())
    gate.open_session(SID)
    return gate


def seal(keys: EnvelopeKeys, sender: int | None = None, seq: int = 0, recipient: int = 2,
         payload: bytes = b"hello") -> Envelope:
    return Envelope.create(keys, session_id=SID, protocol="dkls23-sign", round=1, sender=sender or keys.me,
                           recipient=recipient, seq=seq, payload=payload)


def certificate(party: int, public_key: bytes, signer: SigningKey, *, cluster: str = CLUSTER,
                not_before: int = int(T0), not_after: int = int(T0) + LIFETIME_S) -> bytes:
    cert = KeyCertificate(party, cluster_bytes(cluster), public_key, not_before, not_after)
    return replace(cert, signature=signer.sign(cert.signing_bytes()).signature).encode()


def hand_made(sender: int, envelope_key: SigningKey, cert: bytes, seq: int = 0) -> bytes:
    """An envelope signed by `envelope_key` carrying `cert`, whatever the certificate says."""
    unsigned = Envelope(SID, "dkls23-sign", 1, sender, 2, seq, b"hello", version=CERTIFIED_VERSION,
                        certificate=cert)
    return replace(unsigned, signature=envelope_key.sign(unsigned.signing_bytes()).signature).encode()


def test_one_identity_signature_for_many_envelopes_and_the_gate_accepts_them():
    signer = CountingSigner(IDENTITY[1])
    keys = keys_for(1, signer=signer)
    outbox, gate = Outbox(1, keys), gate_for()
    for seq in range(20):
        env = outbox.seal(SID, "dkls23-sign", 1, 2, b"payload %d" % seq)
        assert env.version == CERTIFIED_VERSION
        decoded = Envelope.decode(env.encode())
        assert decoded == env
        assert gate.offer(env.encode(), tls_party=1).accepted
    assert signer.calls == 1
    cert = Envelope.decode(env.encode()).key_certificate()
    assert cert.party == 1 and cert.cluster == cluster_bytes(CLUSTER) and cert.verify(PUBLIC[1])


def test_version_1_envelopes_are_still_accepted():
    gate = gate_for()
    env = Envelope.create(sign_with(IDENTITY[1]), session_id=SID, protocol="dkls23-sign", round=1, sender=1,
                          recipient=2, seq=0, payload=b"x")
    assert env.version == 1 and gate.offer(env.encode()).accepted


def test_forged_certificate_is_refused():
    envelope_key, forger = SigningKey.generate(), SigningKey.generate()
    data = hand_made(1, envelope_key, certificate(1, envelope_key.verify_key.encode(), forger))
    gate = gate_for()
    assert gate.offer(data).reason is DropReason.BAD_CERTIFICATE
    assert not Envelope.decode(data).verify(PUBLIC[1])


def test_certificate_of_party_a_used_by_party_b_is_refused():
    """Even with A's envelope private key, B cannot speak as B (nor as A over B's TLS link)."""
    a_key = SigningKey.generate()
    a_cert = certificate(1, a_key.verify_key.encode(), IDENTITY[1])
    gate = gate_for()
    as_b = hand_made(3, a_key, a_cert)
    assert gate.offer(as_b, tls_party=3).reason is DropReason.BAD_CERTIFICATE
    assert not Envelope.decode(as_b).verify(PUBLIC[3]) and not Envelope.decode(as_b).verify(PUBLIC[1])
    # the same certificate once cached for A's envelopes still does not pass for B
    assert gate.offer(hand_made(1, a_key, a_cert), tls_party=1).accepted
    assert gate.offer(hand_made(3, a_key, a_cert, seq=1), tls_party=3).reason is DropReason.BAD_CERTIFICATE
    # and A's certificate signed by B's identity key names party 1: refused for sender 3 as well
    b_signed = certificate(1, a_key.verify_key.encode(), IDENTITY[3])
    assert gate.offer(hand_made(3, a_key, b_signed, seq=2)).reason is DropReason.BAD_CERTIFICATE


def test_certificate_for_another_cluster_is_refused():
    key = SigningKey.generate()
    data = hand_made(1, key, certificate(1, key.verify_key.encode(), IDENTITY[1], cluster="other"))
    assert gate_for().offer(data).reason is DropReason.BAD_CERTIFICATE
    assert not Envelope.decode(data).verify(PUBLIC[1], cluster=CLUSTER)
    assert Envelope.decode(data).verify(PUBLIC[1])  # validly certified, only for the other cluster


def test_expired_and_not_yet_valid_certificates_are_refused_within_skew_accepted():
    clock = Clock()
    keys = keys_for(1, clock=Clock())  # the sender's clock stays at T0: its certificate ages
    gate = gate_for(clock=clock)
    clock.now = T0 + LIFETIME_S + CLOCK_SKEW_S - 1
    assert gate.offer(seal(keys, seq=0).encode()).accepted
    clock.now = T0 + LIFETIME_S + CLOCK_SKEW_S + 1
    data = seal(keys, seq=1).encode()
    assert gate.offer(data).reason is DropReason.BAD_CERTIFICATE
    assert not Envelope.decode(data).verify(PUBLIC[1], now=clock.now)
    clock.now = T0 - CLOCK_SKEW_S - 1
    assert gate.offer(seal(keys, seq=2).encode()).reason is DropReason.BAD_CERTIFICATE


def test_certificate_with_a_window_longer_than_the_lifetime_is_refused():
    key = SigningKey.generate()
    long = certificate(1, key.verify_key.encode(), IDENTITY[1], not_after=int(T0) + 10 * 365 * 86400)
    assert gate_for().offer(hand_made(1, key, long)).reason is DropReason.BAD_CERTIFICATE
    assert Envelope.decode(hand_made(1, key, long)).verify(PUBLIC[1])  # still the party's statement


def test_envelope_signed_by_an_uncertified_key_is_refused():
    certified, other = SigningKey.generate(), SigningKey.generate()
    cert = certificate(1, certified.verify_key.encode(), IDENTITY[1])
    gate = gate_for()
    assert gate.offer(hand_made(1, other, cert)).reason is DropReason.BAD_SIGNATURE
    assert not Envelope.decode(hand_made(1, other, cert)).verify(PUBLIC[1])
    assert gate.offer(hand_made(1, certified, cert)).accepted


def test_tampered_certificate_is_refused_even_after_the_genuine_one_is_cached():
    keys = keys_for(1)
    gate = gate_for()
    good = seal(keys, seq=0)
    assert gate.offer(good.encode()).accepted
    cert = KeyCertificate.decode(good.certificate)
    longer = replace(cert, not_after=cert.not_after + 10 * LIFETIME_S).encode()  # old signature kept
    key, _ = keys.current()
    assert gate.offer(hand_made(1, key, longer, seq=1)).reason is DropReason.BAD_CERTIFICATE


@pytest.mark.parametrize("cut", [1, 40, 200])
def test_truncated_or_missing_certificate_is_malformed(cut):
    data = seal(keys_for(1)).encode()
    header = 1 + 32 + 1 + len(b"dkls23-sign") + 2 + 2 + 2 + 8 + 4 + len(b"hello")
    broken = data[:header] + (0).to_bytes(4, "big") + data[-64:]  # certificate of length 0
    with pytest.raises(EnvelopeError):
        Envelope.decode(broken)
    assert gate_for().offer(data[:-cut]).reason is DropReason.MALFORMED


def test_certificate_fits_the_transport_slack():
    env = seal(keys_for(1))
    v1 = Envelope.create(sign_with(IDENTITY[1]), session_id=SID, protocol="dkls23-sign", round=1, sender=1,
                         recipient=2, seq=0, payload=b"hello")
    assert len(env.encode()) - len(v1.encode()) == 4 + len(env.certificate) <= 4 + MAX_CERT_LEN
    assert MAX_MESSAGE - (len(v1.encode()) - 5) >= 4 + MAX_CERT_LEN  # payload bound + everything else


def test_rotation_after_an_hour_and_hsm_failure_keeps_the_current_key():
    clock, signer = Clock(), CountingSigner(IDENTITY[1])
    keys = keys_for(1, clock=clock, signer=signer)
    first = keys.current()
    clock.now += ROTATE_AFTER_S - 1
    assert keys.current() == first and signer.calls == 1
    signer.fail = True
    clock.now = T0 + ROTATE_AFTER_S
    assert keys.current() == first  # HSM down: the current key has an hour left
    signer.fail = False
    assert keys.current() == first  # waits out the retry delay ...
    clock.now += 31
    second = keys.current()  # ... then rotates
    assert second[0] != first[0] and signer.calls == 2
    gate = gate_for(clock=clock)
    assert gate.offer(seal(keys).encode()).accepted
    signer.fail = True
    clock.now += LIFETIME_S  # the current certificate is past its end: no silent use of it
    with pytest.raises(RuntimeError):
        keys.current()


def test_no_private_key_in_repr_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    keys = keys_for(1)
    key, cert = keys.current()
    secret_hex = bytes(key).hex()
    assert secret_hex not in repr(keys) and secret_hex[:16] not in repr(keys)
    assert all(secret_hex[:16] not in record.getMessage() for record in caplog.records)
    assert bytes(key)[:32] not in cert


def test_a_new_process_key_is_fresh_and_an_old_certificate_alone_speaks_for_nobody():
    """After a restart the party has a new key; the old certificate (replayed by anyone) is worth
    nothing without the old private key, which only the dead process held."""
    old, new = keys_for(1), keys_for(1)
    old_cert, new_cert = old.current()[1], new.current()[1]
    assert old_cert != new_cert
    attacker = SigningKey.generate()
    assert gate_for().offer(hand_made(1, attacker, old_cert)).reason is DropReason.BAD_SIGNATURE


def test_equivocation_evidence_of_certified_envelopes_verifies_for_a_third_party():
    sid = secrets.token_bytes(32)
    dealer_before, dealer_after = keys_for(3), keys_for(3)  # e.g. two processes, or a rotation between
    honest = keys_for(2)

    def broadcast(keys: EnvelopeKeys, payload: bytes, recipient: int = 0) -> Envelope:
        return Envelope.create(keys, session_id=sid, protocol="dkg-ed25519", round=1, sender=keys.me,
                               recipient=recipient, seq=0, payload=payload)

    shown_to_1 = DkgParty(ED25519, sid, 3, 3, 2).round1().to_bytes()
    shown_to_2 = DkgParty(ED25519, sid, 3, 3, 2).round1().to_bytes()
    seen_by_1 = [broadcast(dealer_before, shown_to_1), broadcast(honest, DkgParty(ED25519, sid, 2, 3, 2)
                                                                 .round1().to_bytes())]
    seen_by_2 = [broadcast(dealer_after, shown_to_2, recipient=2)]
    found = find_equivocation(seen_by_1, encode_exhibits(seen_by_2), PUBLIC)
    assert found is not None and found.culprit == 3
    first, second = Envelope.decode(found.first), Envelope.decode(found.second)
    # a third party with the roster only; no clock (evidence is about the past)
    assert first.verify(PUBLIC[3], cluster=CLUSTER) and second.verify(PUBLIC[3], cluster=CLUSTER)
    assert not first.verify(PUBLIC[2])
    # a forged "second broadcast" (a key the dealer never certified) names nobody
    forger = SigningKey.generate()
    fake = Envelope(sid, "dkg-ed25519", 1, 3, 0, 0, shown_to_2, version=CERTIFIED_VERSION,
                    certificate=certificate(3, forger.verify_key.encode(), forger))
    fake = replace(fake, signature=forger.sign(fake.signing_bytes()).signature)
    assert find_equivocation(seen_by_1, encode_exhibits([fake]), PUBLIC) is None


@pytest.mark.parametrize("n", [3, 5])
def test_exhibits_of_certified_broadcasts_fit_the_keygen_confirm_limit(n):
    """The echo-mismatch exhibits carry whole envelopes, certificates included: limits.py sizes them."""
    from appliance.mpc_party import limits
    from appliance.mpc_party.protocols import confirm

    sid = secrets.token_bytes(32)
    identity = {i: SigningKey.generate() for i in range(1, n + 1)}
    seen = [Envelope.create(EnvelopeKeys(i, CLUSTER, sign_with(identity[i])), session_id=sid,
                            protocol="dkg-ed25519", round=1, sender=i, recipient=0, seq=0,
                            payload=DkgParty(ED25519, sid, i, n, n).round1().to_bytes())
            for i in range(1, n + 1)]
    exhibits = encode_exhibits(seen)
    assert len(exhibits) <= limits.round_table(n)[confirm.PROTOCOL].max_payload(2)
