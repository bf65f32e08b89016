"""FROST ciphersuites (RFC 9591 section 6) and the BIP-340 signing variant.

A ciphersuite is the group plus the five hash functions H1..H5 under a context string. The FROST core
(`core.py`) is written once against this interface. Besides the hashes, a suite decides the few
places where BIP-340 Schnorr differs from plain FROST:

- `signing_key`: which public key is signed for, and how the group secret maps onto it. Plain FROST
  signs for the DKG key as is. BIP-340 signs for an x-only key with even Y, optionally after a
  BIP-341 Taproot tweak, which turns the group secret s into  sign * s + tweak.
- `nonce_sign`: BIP-340 needs R with even Y; when the group commitment has odd Y every signer negates
  its nonces (all signers see the same R, so they all agree on the sign).
- `challenge` and `encode_signature`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group, Point


@dataclass(frozen=True)
class SigningKey:
    """The key a signature verifies under. The effective secret is  sign * s + tweak  where s is the
    DKG group secret; `public` = (sign * s + tweak) * G."""

    public: Point
    sign: int
    tweak: int


class Ciphersuite:
    """RFC 9591 ciphersuite interface; subclasses fix the group and hashes."""

    name: str
    context: bytes
    group: Group

    def _hash(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _hash_to_scalar(self, tag: bytes, data: bytes) -> int:
        raise NotImplementedError

    def H1(self, m: bytes) -> int:  # noqa: N802 - the RFC's names
        return self._hash_to_scalar(self.context + b"rho", m)

    def H2(self, m: bytes) -> int:  # noqa: N802
        return self._hash_to_scalar(self.context + b"chal", m)

    def H3(self, m: bytes) -> int:  # noqa: N802
        return self._hash_to_scalar(self.context + b"nonce", m)

    def H4(self, m: bytes) -> bytes:  # noqa: N802
        return self._hash(self.context + b"msg" + m)

    def H5(self, m: bytes) -> bytes:  # noqa: N802
        return self._hash(self.context + b"com" + m)

    def serialize_id(self, identifier: int) -> bytes:
        return self.group.encode_scalar(identifier)

    # --- the variant hooks (plain FROST) -----------------------------------------------------
    def signing_key(self, group_public_key: Point, taproot_merkle_root: bytes | None = None) -> SigningKey:
        if taproot_merkle_root is not None:
            raise ValueError(f"{self.name} has no Taproot tweak")
        return SigningKey(group_public_key, 1, 0)

    def nonce_sign(self, group_commitment: Point) -> int:
        return 1

    def challenge(self, group_commitment: Point, key: SigningKey, message: bytes) -> int:
        return self.H2(group_commitment + key.public + message)

    def encode_signature(self, group_commitment: Point, z: int) -> bytes:
        return group_commitment + self.group.encode_scalar(z)

    def decode_signature(self, signature: bytes) -> tuple[Point, int]:
        """(R, z) from the suite's encoding; raises ValueError when malformed."""
        n = self.group.point_len
        if len(signature) != n + self.group.scalar_len:
            raise ValueError("wrong signature length")
        return self.group.decode_point(signature[:n]), self.group.decode_scalar(signature[n:])

    def verify(self, key: SigningKey, message: bytes, signature: bytes) -> bool:
        """Verify with our own group code: z*G == R + c*PK (cofactorless, as RFC 9591 defines it)."""
        try:
            r, z = self.decode_signature(signature)
        except ValueError:
            return False
        g = self.group
        return g.base_mul(z) == g.add(r, g.mul(key.public, self.challenge(r, key, message)))


class Ed25519Sha512(Ciphersuite):
    """FROST(Ed25519, SHA-512): signatures verify as plain RFC 8032 Ed25519."""

    name = "FROST(Ed25519, SHA-512)"
    context = b"FROST-ED25519-SHA512-v1"
    group = ED25519

    def _hash(self, data: bytes) -> bytes:
        return hashlib.sha512(data).digest()

    def _hash_to_scalar(self, tag: bytes, data: bytes) -> int:
        return int.from_bytes(hashlib.sha512(tag + data).digest(), "little") % self.group.order

    def H2(self, m: bytes) -> int:  # noqa: N802 - Ed25519's challenge has no context prefix (RFC 8032)
        return int.from_bytes(hashlib.sha512(m).digest(), "little") % self.group.order


def expand_message_xmd_sha256(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-256 (block 64 bytes, output 32 bytes)."""
    if len(dst) > 255 or length > 255 * 32:
        raise ValueError("expand_message_xmd: DST or output too long")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    blocks = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    while 32 * len(blocks) < length:
        mixed = bytes(a ^ b for a, b in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha256(mixed + bytes([len(blocks) + 1]) + dst_prime).digest())
    return b"".join(blocks)[:length]


class Secp256k1Sha256(Ciphersuite):
    """FROST(secp256k1, SHA-256): hash_to_field with expand_message_xmd, L = 48."""

    name = "FROST(secp256k1, SHA-256)"
    context = b"FROST-secp256k1-SHA256-v1"
    group = SECP256K1

    def _hash(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def _hash_to_scalar(self, tag: bytes, data: bytes) -> int:
        return int.from_bytes(expand_message_xmd_sha256(data, tag, 48), "big") % self.group.order


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP-340 tagged hash: SHA256(SHA256(tag) || SHA256(tag) || data)."""
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


class Secp256k1Bip340(Secp256k1Sha256):
    """FROST producing BIP-340 Schnorr signatures (x-only keys), with an optional BIP-341 tweak.

    Hashes H1, H3, H4, H5 are the secp256k1 suite's under their own context string (the binding
    factors bind the even-Y, possibly tweaked, output key); the challenge is BIP-340's."""

    name = "FROST(secp256k1, SHA-256) BIP-340"
    context = b"FROST-secp256k1-SHA256-TR-v1"

    def signing_key(self, group_public_key: Point, taproot_merkle_root: bytes | None = None) -> SigningKey:
        g = self.group
        sign = 1 if g.has_even_y(group_public_key) else g.order - 1
        internal = group_public_key if sign == 1 else g.neg(group_public_key)
        if taproot_merkle_root is None:
            return SigningKey(internal, sign, 0)
        if len(taproot_merkle_root) not in (0, 32):
            raise ValueError("Taproot merkle root must be empty (key path only) or 32 bytes")
        t = int.from_bytes(tagged_hash("TapTweak", internal[1:] + taproot_merkle_root), "big")
        if t >= g.order:
            raise ValueError("Taproot tweak out of range")
        output = g.add(internal, g.base_mul(t))
        if output == g.identity:
            raise ValueError("Taproot output key is the identity")
        if g.has_even_y(output):
            return SigningKey(output, sign, t)
        return SigningKey(g.neg(output), (g.order - sign) % g.order, g.order - t)

    def nonce_sign(self, group_commitment: Point) -> int:
        return 1 if self.group.has_even_y(group_commitment) else self.group.order - 1

    def challenge(self, group_commitment: Point, key: SigningKey, message: bytes) -> int:
        e = tagged_hash("BIP0340/challenge", group_commitment[1:] + key.public[1:] + message)
        return int.from_bytes(e, "big") % self.group.order

    def encode_signature(self, group_commitment: Point, z: int) -> bytes:
        return group_commitment[1:] + self.group.encode_scalar(z)

    def decode_signature(self, signature: bytes) -> tuple[Point, int]:
        if len(signature) != 64:
            raise ValueError("wrong signature length")
        return self.group.decode_point(b"\x02" + signature[:32]), self.group.decode_scalar(signature[32:])


FROST_ED25519 = Ed25519Sha512()
FROST_SECP256K1 = Secp256k1Sha256()
FROST_SECP256K1_BIP340 = Secp256k1Bip340()
SUITES = {s.name: s for s in (FROST_ED25519, FROST_SECP256K1, FROST_SECP256K1_BIP340)}
