"""Base OT (VSOT), KOS OT extension and the DKLs19 multiplication: correctness and every check."""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import pytest

from appliance.mpc_party.protocols.dkls23 import mul
from appliance.mpc_party.protocols.dkls23.common import M_OT, OT_WIDTH, Q
from appliance.mpc_party.protocols.dkls23.ot_base import VsotReceiver, VsotSender
from appliance.mpc_party.protocols.dkls23.ot_ext import gf_inner, gf_mul, receiver_extend, sender_extend
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort

rng = secrets.token_bytes
SID = bytes(range(32))


def _flip(data: bytes, i: int = 0) -> bytes:
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]


def run_vsot(tamper: str = ""):
    choices = [secrets.randbits(1) for _ in range(OT_WIDTH)]
    s, r = VsotSender(SID, peer=2, rng=rng), VsotReceiver(SID, peer=1, choices=choices, rng=rng)
    big_b, pr, pz = s.step1()
    if tamper == "pok":
        pz = (pz + 1) % Q
    points = r.step2(big_b, pr, pz)
    if tamper == "point":
        points[5] = b"\x02" + bytes(32)  # x = 0 is not on secp256k1
    challenges = s.step3(points)
    if tamper == "challenge":
        challenges[3] = _flip(challenges[3])
    responses = r.step4(challenges)
    if tamper == "response":
        responses[7] = _flip(responses[7])
    openings = s.step5(responses)
    if tamper == "opening":
        openings[9] = _flip(openings[9])
    mine = r.finish(openings)
    rho0, rho1 = s.output()
    return choices, mine, rho0, rho1


def test_vsot_outputs_are_chosen_pads():
    choices, mine, rho0, rho1 = run_vsot()
    for w, m, a, b in zip(choices, mine, rho0, rho1, strict=True):
        assert m == (a, b)[w] and a != b


@pytest.mark.parametrize(("tamper", "culprit"), [
    ("pok", 1), ("point", 2), ("response", 2), ("opening", 1)])
def test_vsot_checks_name_the_cheater(tamper, culprit):
    with pytest.raises(ProtocolAbort) as exc:
        run_vsot(tamper)
    assert exc.value.culprit == culprit


def test_vsot_forged_challenge_is_caught():
    # A sender that sends challenges not derived from its pads is caught: by its own response check
    # when a choice bit is 1, otherwise by the receiver's opening check.
    with pytest.raises(ProtocolAbort):
        run_vsot("challenge")


def test_vsot_steps_out_of_order_are_local_errors():
    s = VsotSender(SID, 2, rng)
    with pytest.raises(LocalProtocolError):
        s.step3([])
    s.step1()
    with pytest.raises(LocalProtocolError):
        s.step1()


def test_gf128_is_a_field_and_inner_product_matches():
    a, b, c = (secrets.randbits(128) for _ in range(3))
    assert gf_mul(a, gf_mul(b, c)) == gf_mul(gf_mul(a, b), c)
    assert gf_mul(a, b ^ c) == gf_mul(a, b) ^ gf_mul(a, c)
    assert gf_mul(a, 1) == a
    rows = np.random.default_rng(1).integers(0, 2, (40, 128), dtype=np.uint8)
    chi = np.random.default_rng(2).integers(0, 2, (40, 128), dtype=np.uint8)

    def to_int(bits):
        return sum(int(x) << i for i, x in enumerate(bits))
    expect = 0
    for row, ch in zip(rows, chi, strict=True):
        expect ^= gf_mul(to_int(row), to_int(ch))
    assert gf_inner(np.packbits(rows, axis=1, bitorder="little"), chi) == expect


def ot_setup():
    delta = secrets.token_bytes(16)
    bits = np.unpackbits(np.frombuffer(delta, np.uint8), bitorder="little")
    s0 = [secrets.token_bytes(32) for _ in range(OT_WIDTH)]
    s1 = [secrets.token_bytes(32) for _ in range(OT_WIDTH)]
    return delta, [(s0, s1)[b][i] for i, b in enumerate(bits)], s0, s1


def test_kos_rows_correlate_and_check_passes():
    delta, sd, s0, s1 = ot_setup()
    pair = secrets.token_bytes(32)
    choices = np.frombuffer(secrets.token_bytes(M_OT), np.uint8) & 1
    u, check, t_rows = receiver_extend(s0, s1, pair, choices)
    q_rows = sender_extend(delta, sd, pair, M_OT, u, check, peer=2)
    assert (q_rows == t_rows ^ (choices[:, None] * np.frombuffer(delta, np.uint8))).all()


@pytest.mark.parametrize("where", ["u", "check"])
def test_kos_consistency_check_catches_bob(where):
    delta, sd, s0, s1 = ot_setup()
    pair = secrets.token_bytes(32)
    choices = np.frombuffer(secrets.token_bytes(M_OT), np.uint8) & 1
    u, check, _ = receiver_extend(s0, s1, pair, choices)
    if where == "u":  # a different choice bit in one column: the attack the check exists for
        u = _flip(u, 76 * 3 + 5)
    else:
        check = _flip(check, 20)
    with pytest.raises(ProtocolAbort, match="consistency") as exc:
        sender_extend(delta, sd, pair, M_OT, u, check, peer=2)
    assert exc.value.culprit == 2


def _mul_once(tamper: str = ""):
    delta, sd, s0, s1 = ot_setup()
    pair = secrets.token_bytes(32)
    b = secrets.randbelow(Q)
    a = [secrets.randbelow(Q), secrets.randbelow(Q)]
    bob_msg, state = mul.bob_start(pair, s0, s1, b, rng)
    alice_msg, c = mul.alice_respond(pair, delta, sd, bob_msg, a, rng, peer=2)
    if tamper == "tau":  # Alice uses another correlation in one row
        t = alice_msg.tau
        alice_msg = mul.AliceMessage(t[:100] + bytes([t[100] ^ 4]) + t[101:], alice_msg.r, alice_msg.u)
    if tamper == "u":
        alice_msg = mul.AliceMessage(alice_msg.tau, alice_msg.r, (alice_msg.u + 1) % Q)
    d = mul.bob_finish(state, alice_msg, peer=1)
    return a, b, c, d


def test_multiplication_is_correct():
    for _ in range(3):
        a, b, c, d = _mul_once()
        assert all((ci + di) % Q == ai * b % Q for ai, ci, di in zip(a, c, d, strict=True))


def test_gadget_encoding_round_trips():
    for b in (0, 1, Q - 1, secrets.randbelow(Q)):
        beta = mul.encode_input(b, rng)
        assert sum(g * x for g, x in zip(mul.GADGET, beta, strict=True)) % Q == b


@pytest.mark.parametrize("tamper", ["tau", "u"])
def test_multiplication_check_catches_alice(tamper):
    with pytest.raises(ProtocolAbort, match="multiplication") as exc:
        _mul_once(tamper)
    assert exc.value.culprit == 1


def _stream(tag: bytes):
    """A deterministic rng (test only), so the multiplication's bytes can be pinned."""
    count = [0]

    def draw(n: int) -> bytes:
        count[0] += 1
        return hashlib.shake_256(tag + count[0].to_bytes(4, "big")).digest(n)

    return draw


# sha256 over Bob's message, Alice's message and both parties' outputs for the inputs below, as the
# implementation before the loops were written out for W = 3 computed them: a rewrite for speed must
# keep every byte (parties of two versions sign together during an upgrade).
MUL_KNOWN_ANSWER = "2dec79c41517111a95bae09d2d50382038a19844c2ffb18098cae010e2c1f33b"


def test_multiplication_known_answer():
    det = _stream(b"kat/setup")
    delta = det(16)
    bits = [(delta[i // 8] >> (i % 8)) & 1 for i in range(OT_WIDTH)]
    s0 = [det(16) for _ in range(OT_WIDTH)]
    s1 = [det(16) for _ in range(OT_WIDTH)]
    sd = [s1[i] if bits[i] else s0[i] for i in range(OT_WIDTH)]
    pair = det(32)
    b = int.from_bytes(det(48), "big") % Q
    a = [int.from_bytes(det(48), "big") % Q for _ in range(2)]
    bob_msg, state = mul.bob_start(pair, s0, s1, b, _stream(b"kat/bob"))
    alice_msg, c = mul.alice_respond(pair, delta, sd, bob_msg, a, _stream(b"kat/alice"), peer=2)
    d = mul.bob_finish(state, alice_msg, peer=1)
    h = hashlib.sha256(bob_msg.u + bob_msg.check + alice_msg.tau + alice_msg.r + alice_msg.u.to_bytes(32, "big"))
    for v in c + d:
        h.update(v.to_bytes(32, "big"))
    assert h.hexdigest() == MUL_KNOWN_ANSWER
    assert all((ci + di) % Q == ai * b % Q for ai, ci, di in zip(a, c, d, strict=True))


@pytest.mark.parametrize("m", [1, 7, 8, 13, M_OT])
def test_gf_inner_matches_the_carryless_products_for_any_row_count(m):
    """The subset-table method pads to a multiple of 8 rows: every row count gives the plain sum."""
    gen = np.random.default_rng(m)
    rows = gen.integers(0, 2, (m, 128), dtype=np.uint8)
    chi = gen.integers(0, 2, (m, 128), dtype=np.uint8)
    expect = 0
    for row, ch in zip(rows, chi, strict=True):
        expect ^= gf_mul(sum(int(x) << i for i, x in enumerate(row)), sum(int(x) << i for i, x in enumerate(ch)))
    assert gf_inner(np.packbits(rows, axis=1, bitorder="little"), chi) == expect
