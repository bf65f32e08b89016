"""Verified simplest OT (VSOT): the base OTs each ordered pair runs once, at keygen and at refresh.

Chou-Orlandi "simplest OT" over secp256k1 with a proof of knowledge of the sender's key and the
challenge/response verification of DKLs18 (Protocol 7), which makes a cheating party detectable
before any seed is used. One object runs a batch of OT_WIDTH OTs for one ordered pair:

    sender  S: b, B = b*G, Schnorr proof of b                           -> step 1 (B, R, z)
    receiver: choice w_l, a_l; A_l = a_l*G + w_l*B; rho_l = H(l, B, A_l, a_l*B)  -> step 2 (A_1..A_k)
    sender:  rho0_l = H(l, B, A_l, b*A_l), rho1_l = H(l, B, A_l, b*A_l - b*B);
             xi_l = H2(rho0_l) ^ H2(rho1_l)                              -> step 3 (xi)
    receiver: resp_l = H2(rho_l) ^ w_l*xi_l                              -> step 4 (resp)
    sender:  check resp_l == H2(rho0_l); open H1(rho0_l), H1(rho1_l)     -> step 5 (openings)
    receiver: check H1(rho_l) is the w_l-th opening and the openings hash to xi_l.

H1 and H2 = H1 o H1 are session- and index-bound. Output: the sender keeps (rho0_l, rho1_l), the
receiver (w_l, rho_l). In KOS the OT-extension *receiver* (Bob) is the base-OT sender.
"""

from __future__ import annotations

import coincurve

from appliance.mpc_party.protocols.dkls23.common import GROUP, OT_WIDTH, Q, h32
from appliance.mpc_party.protocols.group import EncodingError, Point, Rng
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort, ct_equal


def _idx(i: int) -> bytes:
    return i.to_bytes(2, "big")


def _pad(sid: bytes, i: int, big_b: bytes, big_a: bytes, point: bytes) -> bytes:
    """rho = H(sid, i, B, A_i, shared point): the pad is bound to the whole OT transcript, so a pad
    cannot be carried to another OT, pair or session with a different B or A_i."""
    return h32(b"vsot/pad", sid, _idx(i), big_b, big_a, point)


def _h1(sid: bytes, i: int, rho: bytes) -> bytes:
    return h32(b"vsot/open", sid, _idx(i), rho)


def _h2(sid: bytes, i: int, rho: bytes) -> bytes:
    return h32(b"vsot/check", sid, _idx(i), _h1(sid, i, rho))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _pok_challenge(sid: bytes, big_b: Point, r: Point) -> int:
    return int.from_bytes(h32(b"vsot/pok", sid, big_b, r), "big") % Q


def _decode(point: bytes, culprit: int) -> Point:
    try:
        return GROUP.decode_point(point)
    except EncodingError as exc:
        raise ProtocolAbort(f"base OT: {exc}", culprit) from None


class VsotSender:
    """The base-OT sender of one ordered pair. `peer` is blamed for anything that fails."""

    def __init__(self, sid: bytes, peer: int, rng: Rng) -> None:
        self.sid, self.peer, self._rng = sid, peer, rng
        self._b = GROUP.random_scalar(rng)
        self._step = 1
        self._rho: list[tuple[bytes, bytes]] = []

    def _advance(self, step: int) -> None:
        if self._step != step:
            raise LocalProtocolError(f"VSOT sender: step {step} called at step {self._step}")
        self._step = step + 2

    def step1(self) -> tuple[Point, Point, int]:
        self._advance(1)
        self._big_b = GROUP.base_mul(self._b)
        k = GROUP.random_scalar(self._rng)
        r = GROUP.base_mul(k)
        z = (k + _pok_challenge(self.sid, self._big_b, r) * self._b) % Q
        return self._big_b, r, z

    def step3(self, points: list[bytes]) -> list[bytes]:
        """Derive both pads of every OT from the receiver's points; return the challenges."""
        self._advance(3)
        if len(points) != OT_WIDTH:
            raise ProtocolAbort(f"base OT: expected {OT_WIDTH} points, got {len(points)}", self.peer)
        b = self._b.to_bytes(32, "big")
        neg_bb = coincurve.PublicKey(GROUP.neg(GROUP.mul(self._big_b, self._b)))
        challenges = []
        for i, a in enumerate(points):
            _decode(a, self.peer)
            ba = coincurve.PublicKey(a).multiply(b)
            try:
                ba_minus = coincurve.PublicKey.combine_keys([ba, neg_bb]).format()
            except ValueError:  # A_i == B: b*(A_i - B) is the identity
                ba_minus = GROUP.identity
            rho0 = _pad(self.sid, i, self._big_b, a, ba.format())
            rho1 = _pad(self.sid, i, self._big_b, a, ba_minus)
            self._rho.append((rho0, rho1))
            challenges.append(_xor(_h2(self.sid, i, rho0), _h2(self.sid, i, rho1)))
        return challenges

    def step5(self, responses: list[bytes]) -> list[bytes]:
        """Check the receiver's responses; return the openings (H1(rho0), H1(rho1) per OT)."""
        self._advance(5)
        if len(responses) != OT_WIDTH:
            raise ProtocolAbort("base OT: wrong number of responses", self.peer)
        openings = []
        for i, (resp, (rho0, rho1)) in enumerate(zip(responses, self._rho, strict=True)):
            if not ct_equal(resp, _h2(self.sid, i, rho0)):
                raise ProtocolAbort(f"base OT: verification response {i} is wrong", self.peer)
            openings += [_h1(self.sid, i, rho0), _h1(self.sid, i, rho1)]
        return openings

    def output(self) -> tuple[list[bytes], list[bytes]]:
        if self._step != 7:
            raise LocalProtocolError("VSOT sender: not finished")
        return [r0 for r0, _ in self._rho], [r1 for _, r1 in self._rho]


class VsotReceiver:
    """The base-OT receiver of one ordered pair, with choice bits `choices` (OT_WIDTH of them)."""

    def __init__(self, sid: bytes, peer: int, choices: list[int], rng: Rng) -> None:
        if len(choices) != OT_WIDTH:
            raise LocalProtocolError("VSOT receiver: wrong number of choice bits")
        self.sid, self.peer, self._rng = sid, peer, rng
        self.choices = list(choices)
        self._step = 2
        self._rho: list[bytes] = []
        self._challenges: list[bytes] = []

    def _advance(self, step: int) -> None:
        if self._step != step:
            raise LocalProtocolError(f"VSOT receiver: step {step} called at step {self._step}")
        self._step = step + 2

    def step2(self, big_b: bytes, r: bytes, z: int) -> list[Point]:
        """Check the sender's key and its proof; return one point per OT that hides the choice."""
        self._advance(2)
        big_b, r = _decode(big_b, self.peer), _decode(r, self.peer)
        c = _pok_challenge(self.sid, big_b, r)
        if not (0 < z < Q) or not ct_equal(GROUP.base_mul(z), GROUP.add(r, GROUP.mul(big_b, c))):
            raise ProtocolAbort("base OT: invalid proof of knowledge of the sender key", self.peer)
        pk_b = coincurve.PublicKey(big_b)
        out = []
        for i, w in enumerate(self.choices):
            a = GROUP.random_scalar(self._rng).to_bytes(32, "big")
            a_pub = coincurve.PublicKey.from_valid_secret(a)
            # A = a*G + w*B, computed for both values of w so the work does not depend on w.
            both = (a_pub.format(), coincurve.PublicKey.combine_keys([a_pub, pk_b]).format())
            self._rho.append(_pad(self.sid, i, big_b, both[w], pk_b.multiply(a).format()))
            out.append(both[w])
        return out

    def step4(self, challenges: list[bytes]) -> list[bytes]:
        self._advance(4)
        if len(challenges) != OT_WIDTH or any(len(c) != 32 for c in challenges):
            raise ProtocolAbort("base OT: malformed challenges", self.peer)
        self._challenges = list(challenges)
        zero = bytes(32)
        return [_xor(_h2(self.sid, i, rho), (zero, ch)[w])
                for i, (rho, w, ch) in enumerate(zip(self._rho, self.choices, challenges, strict=True))]

    def finish(self, openings: list[bytes]) -> list[bytes]:
        """Check the sender's openings against our pads and its challenges; return our pads."""
        self._advance(6)
        if len(openings) != 2 * OT_WIDTH:
            raise ProtocolAbort("base OT: wrong number of openings", self.peer)
        for i, (rho, w) in enumerate(zip(self._rho, self.choices, strict=True)):
            o0, o1 = openings[2 * i], openings[2 * i + 1]
            mine = (o0, o1)[w]
            idx = _idx(i)
            expect = _xor(h32(b"vsot/check", self.sid, idx, o0), h32(b"vsot/check", self.sid, idx, o1))
            if not (ct_equal(mine, _h1(self.sid, i, rho)) and ct_equal(expect, self._challenges[i])):
                raise ProtocolAbort(f"base OT: opening {i} does not match", self.peer)
        return list(self._rho)
