"""Prime-order groups for the MPC protocols: secp256k1 (libsecp256k1 via coincurve) and Ed25519
(libsodium via PyNaCl).

Points are carried as their canonical fixed-width encodings (`bytes`): 33-byte compressed for
secp256k1, 32-byte for Ed25519. Scalars are Python ints reduced mod the group order. Keeping points
as bytes means every value that crosses a protocol boundary is already in wire form, and decoding a
received point is the one place where curve, subgroup and canonicity checks happen (`decode_point`).

The identity element has an internal encoding (`Group.identity`) so sums that cancel stay
representable, but `decode_point` refuses it: a peer never gets to send the identity.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

import coincurve
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from nacl import bindings as _sodium
from nacl.exceptions import RuntimeError as _SodiumRuntimeError

Point = bytes
Rng = Callable[[int], bytes]


class EncodingError(ValueError):
    """A received scalar or point is malformed, non-canonical, off the curve or of small order."""


def default_rng(n: int) -> bytes:
    """OS randomness; protocol objects take an `rng` so production can mix in the HSM's."""
    return secrets.token_bytes(n)


class Group(ABC):
    """The operations the protocols need from a prime-order group."""

    name: str
    order: int
    point_len: int
    scalar_len: int = 32
    identity: Point
    generator: Point

    # --- scalars -----------------------------------------------------------------------------
    @abstractmethod
    def encode_scalar(self, k: int) -> bytes: ...

    @abstractmethod
    def _scalar_from_bytes(self, data: bytes) -> int: ...

    def decode_scalar(self, data: bytes) -> int:
        """Decode a canonical scalar (fixed width, strictly below the order)."""
        if len(data) != self.scalar_len:
            raise EncodingError(f"{self.name}: scalar must be {self.scalar_len} bytes, got {len(data)}")
        k = self._scalar_from_bytes(data)
        if k >= self.order:
            raise EncodingError(f"{self.name}: scalar not reduced mod the group order")
        return k

    def random_scalar(self, rng: Rng = default_rng) -> int:
        """A uniform non-zero scalar (64 random bytes reduced: bias below 2^-250)."""
        while True:
            k = int.from_bytes(rng(64), "big") % self.order
            if k:
                return k

    def inv(self, k: int) -> int:
        return pow(k, -1, self.order)

    # --- points ------------------------------------------------------------------------------
    @abstractmethod
    def base_mul(self, k: int) -> Point: ...

    @abstractmethod
    def mul(self, point: Point, k: int) -> Point: ...

    @abstractmethod
    def _add2(self, p: Point, q: Point) -> Point: ...

    @abstractmethod
    def neg(self, point: Point) -> Point: ...

    @abstractmethod
    def _check_point(self, data: bytes) -> None:
        """Raise EncodingError unless `data` is a canonical encoding of a non-identity group element."""

    def add(self, p: Point, q: Point) -> Point:
        if p == self.identity:
            return q
        if q == self.identity:
            return p
        return self._add2(p, q)

    def sub(self, p: Point, q: Point) -> Point:
        return self.add(p, self.neg(q))

    def sum(self, points: Iterable[Point]) -> Point:
        total = self.identity
        for point in points:
            total = self.add(total, point)
        return total

    def multi_mul(self, points: Sequence[Point], scalars: Sequence[int]) -> Point:
        """sum(k_i * P_i)."""
        return self.sum(self.mul(p, k) for p, k in zip(points, scalars, strict=True))

    def decode_point(self, data: bytes) -> Point:
        """Check a received point: fixed width, canonical, on the curve, in the prime-order group,
        not the identity. Returns the (immutable) bytes themselves."""
        data = bytes(data)
        if len(data) != self.point_len:
            raise EncodingError(f"{self.name}: point must be {self.point_len} bytes, got {len(data)}")
        if data == self.identity:
            raise EncodingError(f"{self.name}: identity point not allowed")
        self._check_point(data)
        return data

    def encode_point(self, point: Point) -> bytes:
        if point == self.identity:
            raise EncodingError(f"{self.name}: cannot encode the identity point")
        return point


class Secp256k1(Group):
    """secp256k1 through libsecp256k1. Scalars and points big-endian (SEC1 compressed points)."""

    name = "secp256k1"
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    field_prime = 2**256 - 2**32 - 977
    point_len = 33
    identity = bytes(33)
    generator = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")

    def encode_scalar(self, k: int) -> bytes:
        return (k % self.order).to_bytes(32, "big")

    def _scalar_from_bytes(self, data: bytes) -> int:
        return int.from_bytes(data, "big")

    def base_mul(self, k: int) -> Point:
        k %= self.order
        if k == 0:
            return self.identity
        return coincurve.PublicKey.from_valid_secret(k.to_bytes(32, "big")).format(compressed=True)

    def mul(self, point: Point, k: int) -> Point:
        k %= self.order
        if k == 0 or point == self.identity:
            return self.identity
        return coincurve.PublicKey(point).multiply(k.to_bytes(32, "big")).format(compressed=True)

    def _add2(self, p: Point, q: Point) -> Point:
        return self._combine([p, q])

    def sum(self, points: Iterable[Point]) -> Point:
        return self._combine([p for p in points if p != self.identity])

    def _combine(self, points: list[Point]) -> Point:
        if not points:
            return self.identity
        if len(points) == 1:
            return points[0]
        # combine_keys raises when the sum is the point at infinity; check via the raw API instead of
        # catching a generic error, so a malformed input is never mistaken for a cancelling sum.
        keys = [coincurve.PublicKey(p) for p in points]
        out = _ffi.new("secp256k1_pubkey *")
        ptrs = _ffi.new("secp256k1_pubkey *[]", [k.public_key for k in keys])
        if not _lib.secp256k1_ec_pubkey_combine(coincurve.GLOBAL_CONTEXT.ctx, out, ptrs, len(keys)):
            return self.identity
        return coincurve.PublicKey(out).format(compressed=True)

    def neg(self, point: Point) -> Point:
        if point == self.identity:
            return point
        return bytes([point[0] ^ 1]) + point[1:]

    def _check_point(self, data: bytes) -> None:
        if data[0] not in (2, 3):
            raise EncodingError("secp256k1: point must be compressed (prefix 02 or 03)")
        if int.from_bytes(data[1:], "big") >= self.field_prime:
            raise EncodingError("secp256k1: x coordinate not reduced")
        try:
            coincurve.PublicKey(data)
        except ValueError:
            raise EncodingError("secp256k1: point not on the curve") from None

    def x_coordinate(self, point: Point) -> int:
        return int.from_bytes(point[1:], "big")

    def has_even_y(self, point: Point) -> bool:
        return point[0] == 2


class Ed25519(Group):
    """edwards25519 (prime-order subgroup) through libsodium. Scalars and points little-endian."""

    name = "ed25519"
    order = 2**252 + 27742317777372353535851937790883648493
    point_len = 32
    identity = bytes([1]) + bytes(31)
    generator = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")

    def encode_scalar(self, k: int) -> bytes:
        return (k % self.order).to_bytes(32, "little")

    def _scalar_from_bytes(self, data: bytes) -> int:
        return int.from_bytes(data, "little")

    def base_mul(self, k: int) -> Point:
        k %= self.order
        if k == 0:
            return self.identity
        return _sodium.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little"))

    def mul(self, point: Point, k: int) -> Point:
        k %= self.order
        if k == 0 or point == self.identity:
            return self.identity
        return _sodium.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), point)

    def _add2(self, p: Point, q: Point) -> Point:
        return _sodium.crypto_core_ed25519_add(p, q)

    def neg(self, point: Point) -> Point:
        if point == self.identity:
            return point
        return _sodium.crypto_core_ed25519_sub(self.identity, point)

    def _check_point(self, data: bytes) -> None:
        # libsodium checks canonical encoding, curve membership, prime-order subgroup, not small order.
        try:
            ok = _sodium.crypto_core_ed25519_is_valid_point(data)
        except (_SodiumRuntimeError, ValueError, TypeError):
            ok = False
        if not ok:
            raise EncodingError("ed25519: not a canonical point of the prime-order subgroup")


SECP256K1 = Secp256k1()
ED25519 = Ed25519()


# --- polynomials and Lagrange interpolation over a group's scalar field ---------------------------


def eval_poly(coefficients: Sequence[int], x: int, order: int) -> int:
    """f(x) for f = coefficients[0] + coefficients[1] x + ... (Horner), mod `order`."""
    result = 0
    for c in reversed(coefficients):
        result = (result * x + c) % order
    return result


def lagrange_at_zero(i: int, ids: Sequence[int], order: int) -> int:
    """The Lagrange coefficient of participant `i` for interpolating at 0 from participants `ids`."""
    if i not in ids:
        raise ValueError(f"participant {i} is not in the set {list(ids)}")
    num, den = 1, 1
    for j in ids:
        if j != i:
            num = num * j % order
            den = den * (j - i) % order
    return num * pow(den, -1, order) % order


def commitment_eval(group: Group, commitments: Sequence[Point], x: int) -> Point:
    """sum_k x^k * C_k: the public image of a Feldman-committed polynomial at `x`."""
    scalars, power = [], 1
    for _ in commitments:
        scalars.append(power)
        power = power * x % group.order
    return group.multi_mul(commitments, scalars)
