"""Signatures with the identity (Ed25519) and chain account (secp256k1) keys, and their public keys.

SoftHSM 2.6.1 has CKM_ECDSA but not CKM_ECDSA_SHA256, so callers hash and we sign the 32-byte digest.
Its secp256k1 signatures are high-S half the time; Cosmos chains reject those, so `s` is moved to the
low half (n - s) before a signature leaves this module.
"""

from __future__ import annotations

from typing import Any

import coincurve
from asn1crypto.core import OctetString
from pkcs11 import Attribute, Mechanism, ObjectClass

from appliance.hsm.errors import HsmError
from appliance.hsm.provision import CHAIN_KEY, IDENTITY_KEY, require_key
from appliance.hsm.token import TokenLink

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


def low_s(signature: bytes) -> bytes:
    """Normalise a 64-byte r||s secp256k1 signature to low-S (s <= n/2)."""
    if len(signature) != 64:
        raise HsmError(f"ECDSA signature from the token has {len(signature)} bytes, expected 64")
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    if s > SECP256K1_HALF_N:
        s = SECP256K1_N - s
    return r + s.to_bytes(32, "big")


def sign_chain(link: TokenLink, digest: bytes) -> bytes:
    """ECDSA over a 32-byte SHA-256 digest with the chain key; returns low-S r||s (64 bytes)."""
    digest = bytes(digest)
    if len(digest) != 32:
        raise ValueError(f"sign_chain: expected a 32-byte SHA-256 digest, got {len(digest)} bytes")
    key = require_key(link, CHAIN_KEY, ObjectClass.PRIVATE_KEY)
    return low_s(bytes(key.sign(digest, mechanism=Mechanism.ECDSA)))


def sign_identity(link: TokenLink, message: bytes) -> bytes:
    """Pure Ed25519 (RFC 8032) over `message` with the identity key; 64 bytes."""
    key = require_key(link, IDENTITY_KEY, ObjectClass.PRIVATE_KEY)
    return bytes(key.sign(bytes(message), mechanism=Mechanism.EDDSA))


def ec_point(public_key: Any) -> bytes:
    """The raw point inside CKA_EC_POINT (a DER OCTET STRING per PKCS#11)."""
    value = bytes(public_key[Attribute.EC_POINT])
    try:
        return bytes(OctetString.load(value).native)
    except (ValueError, TypeError):
        return value  # some tokens store the raw point; accept it


def chain_public_key(link: TokenLink) -> bytes:
    """33-byte compressed secp256k1 public key of the chain account key."""
    point = ec_point(require_key(link, CHAIN_KEY, ObjectClass.PUBLIC_KEY))
    return coincurve.PublicKey(point).format(compressed=True)


def identity_public_key(link: TokenLink) -> bytes:
    """32-byte Ed25519 public key of the identity key."""
    point = ec_point(require_key(link, IDENTITY_KEY, ObjectClass.PUBLIC_KEY))
    if len(point) != 32:
        raise HsmError(f"identity public key on the token has {len(point)} bytes, expected 32")
    return point
