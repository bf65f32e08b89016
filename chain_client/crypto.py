"""secp256k1 signing for chain transactions: the Signer interface, a software signer, and checks.

Cosmos accepts only 64-byte r||s signatures with s in the lower half of the group order, over
SHA-256 of the signed bytes. Production plugs the HSM chain key in behind `Signer`; tests and the
admin tools use `SoftwareSigner`. Verification here goes through libsecp256k1 (coincurve), which the
node uses too, so client and node agree on what a valid signature is.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from chain_client.address import account_address

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = SECP256K1_ORDER // 2


@runtime_checkable
class Signer(Protocol):
    """A chain account key: signs 32-byte digests, never sees what they mean."""

    def public_key(self) -> bytes:
        """The 33-byte compressed secp256k1 public key."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """A 64-byte r||s signature with low S over a 32-byte digest (no further hashing)."""
        ...


class SoftwareSigner:
    """A secp256k1 key held in process memory, for tests, the demo and admin tools only."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = PrivateKey(secret) if secret is not None else PrivateKey()
        self._public = self._key.public_key.format(compressed=True)

    @classmethod
    def from_hex(cls, secret_hex: str) -> SoftwareSigner:
        return cls(bytes.fromhex(secret_hex))

    def secret_hex(self) -> str:
        """The private key as hex, for the demo key file; never log it."""
        return self._key.secret.hex()

    def public_key(self) -> bytes:
        return self._public

    def address(self) -> str:
        return account_address(self._public)

    def sign_digest(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("sign_digest needs a 32-byte digest")
        return self._key.sign_recoverable(digest, hasher=None)[:64]  # libsecp256k1 always emits low S


def signer_address(signer: Signer) -> str:
    return account_address(signer.public_key())


def is_low_s(signature: bytes) -> bool:
    s = int.from_bytes(signature[32:64], "big")
    return 0 < s <= _HALF_ORDER


def normalize_s(signature: bytes) -> bytes:
    """Map a high-S r||s signature to its low-S twin (both verify; Cosmos accepts only low S)."""
    s = int.from_bytes(signature[32:64], "big")
    if s > _HALF_ORDER:
        s = SECP256K1_ORDER - s
    return signature[:32] + s.to_bytes(32, "big")


def verify_digest(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    """True when 64-byte r||s `signature` is a valid low-S signature of `digest` under `public_key`."""
    if len(signature) != 64 or len(digest) != 32 or not is_low_s(signature):
        return False
    try:
        key = PublicKey(public_key)
        der = cdata_to_der(deserialize_compact(signature))
        return key.verify(der, digest, hasher=None)
    except (ValueError, TypeError):
        return False


def request_id_digest(request_id: int) -> bytes:
    """What a party signs as its keyring_party_signature: SHA-256 of the id as 8 bytes big-endian."""
    return hashlib.sha256(request_id.to_bytes(8, "big")).digest()


def party_signature(signer: Signer, request_id: int) -> bytes:
    """The 64-byte keyring_party_signature for `request_id`, made with the party's chain key."""
    signature = signer.sign_digest(request_id_digest(request_id))
    if len(signature) != 64:
        raise ValueError(f"signer returned {len(signature)} bytes, expected 64 (r||s)")
    return normalize_s(signature)
