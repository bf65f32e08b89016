"""The FROST computations of RFC 9591 section 4-5, written once for every ciphersuite.

Pure functions over ints (scalars) and canonical point bytes; the session state machine
(`session.py`) strings them together. Names follow the RFC so the two can be read side by side.
The `SigningKey` from the suite carries the BIP-340 adjustments (key sign, tweak); for the RFC
ciphersuites it is the identity adjustment and every function is exactly the RFC's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from appliance.mpc_party.protocols.frost.ciphersuite import Ciphersuite, SigningKey
from appliance.mpc_party.protocols.group import Point, Rng, lagrange_at_zero
from appliance.mpc_party.protocols.wire import LocalProtocolError


@dataclass(frozen=True)
class Commitment:
    """A signer's public nonce commitments (D_i, E_i)."""

    identifier: int
    hiding: Point
    binding: Point


@dataclass(repr=False)
class SigningNonces:
    """A signer's secret nonces (d_i, e_i). Single use: `take()` hands them out once, then they are
    gone. No encoder: nonces never leave the process."""

    hiding: int | None = field(default=None)
    binding: int | None = field(default=None)
    commitment: Commitment | None = None

    def take(self) -> tuple[int, int]:
        if self.hiding is None or self.binding is None:
            raise LocalProtocolError("signing nonces already used: a nonce set signs once")
        out = (self.hiding, self.binding)
        self.hiding = self.binding = None
        return out

    def __repr__(self) -> str:
        return "SigningNonces(<hidden>)"


def nonce_generate(suite: Ciphersuite, secret: int, rng: Rng) -> int:
    """H3(random_bytes || secret): a nonce that stays unpredictable if either input is good."""
    return suite.H3(rng(32) + suite.group.encode_scalar(secret))


def commit(suite: Ciphersuite, identifier: int, secret: int, rng: Rng) -> SigningNonces:
    """Round one: two nonces and their commitments."""
    hiding = nonce_generate(suite, secret, rng)
    binding = nonce_generate(suite, secret, rng)
    g = suite.group
    return SigningNonces(hiding, binding, Commitment(identifier, g.base_mul(hiding), g.base_mul(binding)))


def encode_group_commitment_list(suite: Ciphersuite, commitments: Sequence[Commitment]) -> bytes:
    """id || D || E for every signer, in increasing id order."""
    return b"".join(suite.serialize_id(c.identifier) + c.hiding + c.binding
                    for c in sorted(commitments, key=lambda c: c.identifier))


def binding_factor_prefix(suite: Ciphersuite, key: SigningKey, commitments: Sequence[Commitment],
                          message: bytes) -> bytes:
    return key.public + suite.H4(message) + suite.H5(encode_group_commitment_list(suite, commitments))


def compute_binding_factors(suite: Ciphersuite, key: SigningKey, commitments: Sequence[Commitment],
                            message: bytes) -> dict[int, int]:
    """rho_i = H1(PK || H4(msg) || H5(commitment list) || id_i)."""
    prefix = binding_factor_prefix(suite, key, commitments, message)
    return {c.identifier: suite.H1(prefix + suite.serialize_id(c.identifier)) for c in commitments}


def compute_group_commitment(suite: Ciphersuite, commitments: Sequence[Commitment],
                             binding_factors: Mapping[int, int]) -> Point:
    """R = sum(D_i + rho_i * E_i)."""
    g = suite.group
    return g.sum(g.add(c.hiding, g.mul(c.binding, binding_factors[c.identifier])) for c in commitments)


@dataclass(frozen=True)
class SigningPackage:
    """Everything every signer derives identically from the commitments and the message."""

    key: SigningKey
    participants: tuple[int, ...]
    binding_factors: Mapping[int, int]
    group_commitment: Point
    nonce_sign: int
    challenge: int


def signing_package(suite: Ciphersuite, key: SigningKey, commitments: Sequence[Commitment],
                    message: bytes) -> SigningPackage:
    rho = compute_binding_factors(suite, key, commitments, message)
    r = compute_group_commitment(suite, commitments, rho)
    if r == suite.group.identity:
        raise ValueError("group commitment is the identity")
    c = suite.challenge(r, key, message)
    ids = tuple(sorted(c.identifier for c in commitments))
    return SigningPackage(key, ids, rho, r, suite.nonce_sign(r), c)


def sign_share(suite: Ciphersuite, identifier: int, secret: int, nonces: tuple[int, int],
               pkg: SigningPackage) -> int:
    """z_i = d_i + e_i * rho_i + lambda_i * s_i * c (nonces and share adjusted for BIP-340)."""
    q = suite.group.order
    d, e = nonces
    lam = lagrange_at_zero(identifier, pkg.participants, q)
    nonce_part = pkg.nonce_sign * (d + e * pkg.binding_factors[identifier])
    return (nonce_part + lam * pkg.key.sign * secret * pkg.challenge) % q


def verify_share(suite: Ciphersuite, commitment: Commitment, verification_share: Point, z: int,
                 pkg: SigningPackage) -> bool:
    """z_i * G == (D_i + rho_i * E_i) + (c * lambda_i) * Y_i, with the same adjustments as `sign_share`."""
    g, q, i = suite.group, suite.group.order, commitment.identifier
    lam = lagrange_at_zero(i, pkg.participants, q)
    nonce_point = g.add(commitment.hiding, g.mul(commitment.binding, pkg.binding_factors[i]))
    if pkg.nonce_sign != 1:
        nonce_point = g.neg(nonce_point)
    expected = g.add(nonce_point, g.mul(verification_share, pkg.challenge * lam * pkg.key.sign))
    return g.base_mul(z) == expected


def aggregate(suite: Ciphersuite, shares: Mapping[int, int], pkg: SigningPackage) -> bytes:
    """z = sum z_i (+ c * tweak for a Taproot-tweaked key); signature (R, z) in the suite's encoding."""
    q = suite.group.order
    z = (sum(shares.values()) + pkg.challenge * pkg.key.tweak) % q
    return suite.encode_signature(pkg.group_commitment, z)
