"""The group layer (appliance/mpc_party/protocols/group.py): arithmetic against independent libraries, encodings
round-trip, and every malformed input a peer could send is refused."""

from __future__ import annotations

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as sodium

from appliance.mpc_party.protocols.group import (
    ED25519,
    SECP256K1,
    EncodingError,
    commitment_eval,
    eval_poly,
    lagrange_at_zero,
)

GROUPS = [ED25519, SECP256K1]
gid = pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
P25519 = 2**255 - 19

# The eight points of small order on edwards25519 (the torsion subgroup), in canonical encoding,
# plus the same y values with the sign bit set where that is a distinct encoding.
ED25519_SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity (order 1)
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2 (y = -1)
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4 (y = 0)
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4 (y = 0, x < 0)
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
]

scalars = st.integers(min_value=1, max_value=2**252)


@gid
@settings(max_examples=25, deadline=None)
@given(a=scalars, b=scalars)
def test_arithmetic_laws(g, a, b):
    a %= g.order
    b %= g.order
    pa, pb = g.base_mul(a), g.base_mul(b)
    assert g.add(pa, pb) == g.base_mul(a + b)
    assert g.sub(pa, pb) == g.base_mul(a - b)
    assert g.neg(pa) == g.base_mul(-a)
    assert g.mul(pa, b) == g.base_mul(a * b)
    assert g.multi_mul([pa, pb], [3, 5]) == g.base_mul(3 * a + 5 * b)
    assert g.sum([pa, pb, g.neg(pa)]) == pb
    assert g.add(pa, g.neg(pa)) == g.identity
    assert g.decode_point(g.encode_point(pa)) == pa
    assert g.decode_scalar(g.encode_scalar(a)) == a


@settings(max_examples=25, deadline=None)
@given(k=st.integers(min_value=1, max_value=SECP256K1.order - 1))
def test_secp256k1_matches_coincurve(k):
    expected = coincurve.PrivateKey(k.to_bytes(32, "big")).public_key.format(compressed=True)
    assert SECP256K1.base_mul(k) == expected
    assert SECP256K1.mul(SECP256K1.generator, k) == expected


@settings(max_examples=25, deadline=None)
@given(k=st.integers(min_value=1, max_value=ED25519.order - 1))
def test_ed25519_matches_libsodium(k):
    expected = sodium.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little"))
    assert ED25519.base_mul(k) == expected
    assert ED25519.mul(ED25519.generator, k) == expected


@gid
def test_identity_and_zero(g):
    assert g.base_mul(0) == g.identity
    assert g.mul(g.generator, g.order) == g.identity
    assert g.add(g.identity, g.generator) == g.generator
    assert g.sum([]) == g.identity
    with pytest.raises(EncodingError):
        g.encode_point(g.identity)
    with pytest.raises(EncodingError):
        g.decode_point(g.identity)


@gid
def test_scalar_rejects(g):
    with pytest.raises(EncodingError):
        g.decode_scalar(g.order.to_bytes(32, "big" if g is SECP256K1 else "little"))
    with pytest.raises(EncodingError):
        g.decode_scalar(b"\xff" * 32)
    for n in (0, 31, 33):
        with pytest.raises(EncodingError):
            g.decode_scalar(bytes(n))
    top = (g.order - 1).to_bytes(32, "big" if g is SECP256K1 else "little")
    assert g.decode_scalar(top) == g.order - 1


@gid
def test_point_wrong_length(g):
    p = g.base_mul(7)
    for bad in (p[:-1], p + b"\x00", b""):
        with pytest.raises(EncodingError):
            g.decode_point(bad)


def _secp256k1_non_residue_x() -> int:
    p = SECP256K1.field_prime
    x = 1
    while pow((x**3 + 7) % p, (p - 1) // 2, p) == 1:
        x += 1
    return x


def test_secp256k1_point_rejects():
    g = SECP256K1
    x = _secp256k1_non_residue_x()
    with pytest.raises(EncodingError):
        g.decode_point(b"\x02" + x.to_bytes(32, "big"))  # off the curve
    gx = g.generator[1:]
    with pytest.raises(EncodingError):
        g.decode_point(b"\x04" + gx)  # bad prefix
    uncompressed = coincurve.PublicKey(g.generator).format(compressed=False)
    with pytest.raises(EncodingError):
        g.decode_point(uncompressed)  # 65 bytes
    # x >= p: x + p would reduce to a valid x on the curve, but is not a canonical encoding
    small_valid = next(x for x in range(1, 100) if pow((x**3 + 7) % g.field_prime, (g.field_prime - 1) // 2,
                                                       g.field_prime) == 1)
    g.decode_point(b"\x02" + small_valid.to_bytes(32, "big"))
    with pytest.raises(EncodingError):
        g.decode_point(b"\x02" + (small_valid + g.field_prime).to_bytes(32, "big"))
    with pytest.raises(EncodingError):
        g.decode_point(b"\x03" + (2**256 - 1).to_bytes(32, "big"))


@pytest.mark.parametrize("enc", ED25519_SMALL_ORDER)
def test_ed25519_small_order_rejected(enc):
    with pytest.raises(EncodingError):
        ED25519.decode_point(bytes.fromhex(enc))


def test_ed25519_mixed_order_and_non_canonical_rejected():
    p = ED25519.base_mul(12345)
    order8 = bytes.fromhex(ED25519_SMALL_ORDER[4])
    mixed = sodium.crypto_core_ed25519_add(p, order8)
    assert mixed != p
    with pytest.raises(EncodingError):
        ED25519.decode_point(mixed)  # on the curve, but outside the prime-order subgroup
    # y >= p: p + 1 encodes y = 1 non-canonically, and y = p + 4 likewise
    for y in (P25519 + 1, P25519 + 4, 2**255 - 1):
        with pytest.raises(EncodingError):
            ED25519.decode_point(y.to_bytes(32, "little"))
    # a y with no x on the curve
    y = 2
    while True:
        try:
            ED25519.decode_point(y.to_bytes(32, "little"))
            y += 1
        except EncodingError:
            break
    assert y < 100


@gid
def test_polynomials_and_interpolation(g):
    q = g.order
    coeffs = [g.random_scalar() for _ in range(3)]
    shares = {i: eval_poly(coeffs, i, q) for i in range(1, 6)}
    for ids in ([1, 2, 3], [2, 4, 5], [1, 3, 5]):
        assert sum(lagrange_at_zero(i, ids, q) * shares[i] for i in ids) % q == coeffs[0]
    commitments = [g.base_mul(c) for c in coeffs]
    for i in (1, 4):
        assert commitment_eval(g, commitments, i) == g.base_mul(shares[i])
    with pytest.raises(ValueError):
        lagrange_at_zero(9, [1, 2], q)


@gid
def test_random_scalar_uses_injected_rng(g):
    calls = []

    def rng(n):
        calls.append(n)
        return bytes([7]) * n
    k = g.random_scalar(rng)
    assert calls == [64] and 0 < k < g.order
    assert k == int.from_bytes(bytes([7]) * 64, "big") % g.order
