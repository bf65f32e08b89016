"""Signatures from the token, each verified by independent libraries (coincurve, cryptography)."""

from __future__ import annotations

import hashlib

import coincurve
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from appliance.hsm.signing import SECP256K1_HALF_N, SECP256K1_N, low_s
from chain_client.address import account_address


def verify_chain_signature(public33: bytes, digest: bytes, signature: bytes) -> None:
    """Verify r||s with coincurve (libsecp256k1, which also rejects high-S) and with cryptography."""
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert 0 < s <= SECP256K1_HALF_N, "high-S signature"
    der = encode_dss_signature(r, s)
    assert coincurve.PublicKey(public33).verify(der, digest, hasher=None)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public33)
    key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_500_chain_signatures_low_s_and_valid(hsm):
    public = hsm.chain_public_key()
    for i in range(500):
        digest = hashlib.sha256(b"tx %d" % i).digest()
        signature = hsm.sign_chain(digest)
        assert len(signature) == 64
        verify_chain_signature(public, digest, signature)


def test_chain_signature_over_other_digest_fails(hsm):
    digest = hashlib.sha256(b"tx").digest()
    signature = hsm.sign_chain(digest)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), hsm.chain_public_key())
    with pytest.raises(InvalidSignature):
        key.verify(der, hashlib.sha256(b"other").digest(), ec.ECDSA(Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_chain_signing_needs_a_32_byte_digest(hsm, length):
    with pytest.raises(ValueError, match="32-byte"):
        hsm.sign_chain(b"\x01" * length)


def test_low_s_normalisation():
    r = (12345).to_bytes(32, "big")
    high = SECP256K1_N - 99
    assert low_s(r + high.to_bytes(32, "big")) == r + (99).to_bytes(32, "big")
    assert low_s(r + (99).to_bytes(32, "big")) == r + (99).to_bytes(32, "big")
    edge = SECP256K1_HALF_N.to_bytes(32, "big")
    assert low_s(r + edge) == r + edge


def test_identity_signatures_verify_with_cryptography(hsm):
    public = Ed25519PublicKey.from_public_bytes(hsm.identity_public_key())
    for message in (b"", b"round 1 message", bytes(range(256)) * 40):
        signature = hsm.sign_identity(message)
        assert len(signature) == 64
        public.verify(signature, message)
        with pytest.raises(InvalidSignature):
            public.verify(signature, message + b"!")


def test_chain_address_is_bech32_of_the_public_key(hsm):
    address = hsm.chain_address()
    assert address == account_address(hsm.chain_public_key())
    assert address.startswith("zen1")


def _raw_token_signatures(link, digests):
    """CKM_ECDSA straight from the token, before this layer's low-S step."""
    from pkcs11 import Mechanism, ObjectClass

    from appliance.hsm.provision import CHAIN_KEY, find_key

    key = find_key(link.session, CHAIN_KEY, ObjectClass.PRIVATE_KEY)
    return [bytes(key.sign(d, mechanism=Mechanism.ECDSA)) for d in digests]


def test_the_token_itself_gives_high_s_which_the_layer_fixes(hsm):
    digests = [hashlib.sha256(b"raw %d" % i).digest() for i in range(64)]
    raw = hsm.submit(_raw_token_signatures, digests).result()
    high = [sig for sig in raw if int.from_bytes(sig[32:], "big") > SECP256K1_HALF_N]
    assert high, "expected SoftHSM to produce some high-S signatures (the known trap)"
    public = hsm.chain_public_key()
    for digest, sig in zip(digests, raw, strict=True):
        verify_chain_signature(public, digest, low_s(sig))
