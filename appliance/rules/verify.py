"""Independent checks of every result before this party signs its name to it on chain.

The controller does not take its own party daemon's word: a public key must have the chain's format,
and a signature must verify under the key's public key with a library other than the one that made
it (coincurve for ECDSA, PyNaCl for Ed25519). A signature learnt from the chain (posted by another
party) is checked the same way before it is repeated, and so is one a peer hands the party daemon
for a session it opened (mpc_party/join.py: the peer had signed the request already).
"""

from __future__ import annotations

import coincurve
import nacl.exceptions
import nacl.signing

from appliance.mpc_party.protocols.group import ED25519, SECP256K1, EncodingError

EDDSA = "KEY_TYPE_EDDSA_ED25519"
HALF_ORDER = SECP256K1.order // 2


class ResultInvalid(Exception):
    """A public key or signature failed its check; it must not be posted."""


def check_public_key(key_type: str, public_key: bytes) -> None:
    group = ED25519 if key_type == EDDSA else SECP256K1
    try:
        group.decode_point(public_key)
    except EncodingError as exc:
        raise ResultInvalid(f"public key not in the chain's format for {key_type}: {exc}") from None
    body = public_key if key_type == EDDSA else public_key[1:]
    if body[:5] == bytes(5):
        raise ResultInvalid("public key has five leading zero bytes (the chain refuses such keys)")


def check_signature(key_type: str, public_key: bytes, data: bytes, signature: bytes) -> None:
    if key_type == EDDSA:
        try:
            nacl.signing.VerifyKey(public_key).verify(data, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
            raise ResultInvalid(f"Ed25519 signature does not verify: {exc}") from None
        return
    if len(signature) not in (64, 65) or len(data) != 32:
        raise ResultInvalid("ECDSA signature must be 64 bytes over a 32-byte digest")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1.order and 0 < s <= HALF_ORDER):
        raise ResultInvalid("ECDSA signature out of range or not low-S")
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(signature[:64]))
    if not coincurve.PublicKey(public_key).verify(der, data, hasher=None):
        raise ResultInvalid("ECDSA signature does not verify under the key")
