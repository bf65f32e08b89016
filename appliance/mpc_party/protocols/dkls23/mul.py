"""DKLs19 two-party multiplication from OT extension, in the vector form DKLs23 needs.

Bob holds one scalar b, Alice a vector a = (a_1, ..., a_L) (L = 2 in signing: the instance key and
the key share). Output: Alice gets c, Bob gets d with c_i + d_i = a_i * b (mod q). Two messages:
Bob -> Alice (OT extension), Alice -> Bob (corrections and check values).

Encoding of Bob's input (DKLs19 section 3): b = <g, beta> with gadget g = (2^0, ..., 2^255, g_256,
..., g_415), the last 2s entries public pseudo-random scalars. Bob picks beta_256.. at random and the
first 256 bits as the binary digits of b - sum_{k>=256} g_k beta_k. Whatever a cheating Alice learns
from a selective failure on a few beta_k leaves b statistically hidden.

Per OT k (k < XI), random OT from KOS rows: Alice has pads v0_k, v1_k in Z_q^(L+1), Bob v_{beta_k}.
Alice's correlation is alpha = (a_1..a_L, a_hat) with a fresh random a_hat. She sends
    tau_k = alpha + v0_k - v1_k                      and keeps t_A,k = -v0_k,
Bob sets t_B,k = v_{beta_k} + beta_k * tau_k, so t_A,k + t_B,k = beta_k * alpha.

Check (DKLs19 Protocol 5, vector form): chi = H(pair id, tau) in Z_q^(L+1) (Fiat-Shamir, so Alice
is bound to tau before she learns chi). Alice sends u = <chi, alpha> and r_k = <chi, t_A,k>; Bob
accepts iff r_k + <chi, t_B,k> == beta_k * u for every k. An Alice who used a different correlation
in some row is caught unless she guessed beta_k, which the gadget encoding makes harmless. a_hat
masks u so that it reveals nothing about a.

Outputs: c = sum_k g_k t_A,k[:L], d = sum_k g_k t_B,k[:L].
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass, field

import numpy as np

from appliance.mpc_party.protocols.dkls23.common import (
    KAPPA,
    KOS_PAD,
    M_OT,
    XI,
    Q,
    decode_scalars,
    encode_scalars,
    hash_to_scalars,
)
from appliance.mpc_party.protocols.dkls23.ot_ext import receiver_extend, sender_extend
from appliance.mpc_party.protocols.group import Rng
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort

L = 2  # vector length used by signing: (instance key r_i, key share sk_i)
W = L + 1  # correlation width, with Alice's check mask a_hat (the loops below are written for W = 3)
assert W == 3
_RO_LEN = 48 * W

GADGET = [1 << k for k in range(KAPPA)] + hash_to_scalars(b"gadget", XI - KAPPA, b"secp256k1")


def _row_oracle(pair: bytes):
    return hashlib.shake_256(b"zrkeyring/dkls23/mul/ro" + pair)


_MASK384 = (1 << 384) - 1
_SHIFTS = tuple(384 * (W - 1 - c) for c in range(W))
_ROW_INDEX = tuple(k.to_bytes(2, "big") for k in range(XI))  # the fixed-width index of every row


def _pads(base, idx: int, row: bytes) -> list[int]:
    """H(pair, idx, row) as W scalars (48 bytes each, reduced), from one XOF call and one int."""
    h = base.copy()
    h.update(_ROW_INDEX[idx] + row)
    x = int.from_bytes(h.digest(_RO_LEN), "big")
    return [(x >> shift & _MASK384) % Q for shift in _SHIFTS]


def _gadget_sum(values: list[int]) -> int:
    """sum_k g_k * values_k mod q (values need not be reduced), as one C-level loop over the products."""
    return sum(map(operator.mul, GADGET, values)) % Q


@dataclass(frozen=True)
class BobMessage:
    """Bob -> Alice: the KOS matrix U (128 x M_OT bits) and the consistency values (x~, t~)."""

    u: bytes
    check: bytes


@dataclass(frozen=True)
class AliceMessage:
    """Alice -> Bob: tau (XI x W scalars), r (XI scalars), u (one scalar), as fixed-width bytes."""

    tau: bytes
    r: bytes
    u: int

    SIZES = (32 * XI * W, 32 * XI)


@dataclass
class BobState:
    pair: bytes
    beta: list[int]
    rows: bytes = field(repr=False)
    done: bool = False


def encode_input(b: int, rng: Rng) -> list[int]:
    """Bob's gadget encoding of b: XI bits with <g, beta> = b mod q."""
    rand = np.unpackbits(np.frombuffer(rng((XI - KAPPA) // 8), dtype=np.uint8)).tolist()
    rest = (b - sum(g for g, bit in zip(GADGET[KAPPA:], rand, strict=True) if bit)) % Q
    return [(rest >> k) & 1 for k in range(KAPPA)] + rand


def bob_start(pair: bytes, seeds0: list[bytes], seeds1: list[bytes], b: int,
              rng: Rng) -> tuple[BobMessage, BobState]:
    beta = encode_input(b, rng)
    pad = np.unpackbits(np.frombuffer(rng(KOS_PAD // 8), dtype=np.uint8))
    choices = np.concatenate([np.array(beta, dtype=np.uint8), pad])
    u, check, rows = receiver_extend(seeds0, seeds1, pair, choices)
    return BobMessage(u, check), BobState(pair, beta, rows[:XI].tobytes())


def _row_pads(copy, k: int, row: bytes) -> tuple[int, int, int]:
    """`_pads` unreduced: the W = 3 48-byte values of H(pair, k, row), each below 2^384. Every use
    below reduces mod q at its end, so skipping the per-pad reduction changes no output."""
    h = copy()
    h.update(_ROW_INDEX[k] + row)
    x = int.from_bytes(h.digest(_RO_LEN), "big")
    return x >> 768, x >> 384 & _MASK384, x & _MASK384


def alice_respond(pair: bytes, delta: bytes, seeds: list[bytes], msg: BobMessage, inputs: list[int],
                  rng: Rng, peer: int) -> tuple[AliceMessage, list[int]]:
    """Check Bob's OT extension, return the message for Bob and our shares c (one per input).

    The loops are written out for W = 3 (about a third of a signing session's arithmetic is here):
    same values as the vector formulas in the module docstring, fewer interpreter steps."""
    if len(inputs) != L:
        raise LocalProtocolError(f"multiplication takes {L} Alice inputs")
    rows = sender_extend(delta, seeds, pair, M_OT, msg.u, msg.check, peer)[:XI]
    q0 = rows.tobytes()
    q1 = (rows ^ np.frombuffer(delta, dtype=np.uint8)).tobytes()
    a_hat = int.from_bytes(rng(48), "big") % Q
    alpha = [*inputs, a_hat]
    a0, a1, a2 = alpha
    copy = _row_oracle(pair).copy
    tau: list[int] = []
    v0s: list[tuple[int, int, int]] = []
    for k in range(XI):
        lo = 16 * k
        p0, p1, p2 = _row_pads(copy, k, q0[lo : lo + 16])
        w0, w1, w2 = _row_pads(copy, k, q1[lo : lo + 16])
        tau += ((a0 + p0 - w0) % Q, (a1 + p1 - w1) % Q, (a2 + p2 - w2) % Q)
        v0s.append((p0, p1, p2))
    tau_bytes = encode_scalars(tau)
    c0, c1, c2 = hash_to_scalars(b"mul/chi", W, pair, tau_bytes)
    r = [-(c0 * p0 + c1 * p1 + c2 * p2) % Q for p0, p1, p2 in v0s]
    u = (c0 * a0 + c1 * a1 + c2 * a2) % Q
    shares = [-_gadget_sum([v0[c] for v0 in v0s]) % Q for c in range(L)]
    return AliceMessage(tau_bytes, encode_scalars(r), u), shares


def bob_finish(state: BobState, msg: AliceMessage, peer: int) -> list[int]:
    """Check Alice's correlation row by row; return our shares d (one per Alice input)."""
    if state.done:
        raise LocalProtocolError("multiplication already finished")
    state.done = True
    tau = decode_scalars(msg.tau, XI * W)
    r = decode_scalars(msg.r, XI)
    if tau is None or r is None or not 0 <= msg.u < Q:
        raise ProtocolAbort("multiplication: malformed correction values", peer)
    c0, c1, c2 = hash_to_scalars(b"mul/chi", W, state.pair, msg.tau)
    copy = _row_oracle(state.pair).copy
    rows, u = state.rows, msg.u
    out0, out1 = [0] * XI, [0] * XI
    bad = 0
    for k, bit in enumerate(state.beta):
        p0, p1, p2 = _row_pads(copy, k, rows[16 * k : 16 * k + 16])
        j = W * k
        t0, t1, t2 = p0 + bit * tau[j], p1 + bit * tau[j + 1], p2 + bit * tau[j + 2]  # t_B,k, unreduced
        bad |= (r[k] + c0 * t0 + c1 * t1 + c2 * t2 - bit * u) % Q
        out0[k], out1[k] = t0, t1
    if bad:
        raise ProtocolAbort("multiplication consistency check failed", peer)
    return [_gadget_sum(out0), _gadget_sum(out1)]
