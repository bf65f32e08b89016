"""DKLs23 threshold signing (ePrint 2023/765, section 3, Protocol 3.6) as sans-IO state machines.

Signers S (|S| >= t). Party i holds the additive share sk_i = lambda_i * x_i. It samples an instance
key r_i (R_i = r_i*G) and an inversion mask phi_i. With k = sum r_i, phi = sum phi_i, sk = sum sk_i:

    k*phi  = sum_i r_i phi_i  + sum_{i != j} r_i phi_j
    sk*phi = sum_i sk_i phi_i + sum_{i != j} sk_i phi_j

Each cross term comes from one two-party multiplication (`mul`) per ordered pair, Alice = i with
inputs (r_i, sk_i), Bob = j with input phi_j. Party i ends with additive shares u_i of k*phi and v_i
of sk*phi, and then s = (m + r*sk)/k = sum w_i / sum u_i with w_i = m*phi_i + r*v_i.

    Round 0 (no message): a fresh nonce n_i, broadcast. The key of every ordered pair (i, j) in this
                          session is H(ctx, i, j, n_i, n_j): both sides' fresh randomness enters every
                          OT-extension stream, challenge and pad hash of the pair, so no two runs share
                          pads, whatever session id the caller supplies (`common.fresh_pair_key`).
                          With it go the sender's key epoch and ctx: a peer whose ctx differs (one
                          side has committed a refresh or resharing, the other not yet) is refused
                          here with `StateMismatch`, before any check that depends on Delta. Without
                          this an honest pair of mixed epochs failed the KOS check of round 2 and
                          burned their OT pair (and the burn's urgent refresh made more mixed epochs).
    Round 1 (no message): commit to R_i; as Bob, the first multiplication message to each peer.
    Round 2 (no message): echo a hash of all round-1 commitments (everyone must have seen the same);
                          open R_i; as Alice, the multiplication response plus Gamma^u = c_u*G and
                          Gamma^v = c_v*G, which let Bob check Alice used r_i and sk_i:
                              phi_j * R_i  == Gamma^u + d_u*G
                              phi_j * pk_i == Gamma^v + d_v*G     (pk_i = lambda_i * X_i)
    -> `Presignature` (R, r = x(R) mod q, phi_i, u_i, v_i); usable exactly once.
    Round 3 (message):    broadcast (u_i, w_i); anyone combines, normalises to low S, computes the
                          recovery id, and verifies the signature before returning it.

Messages are a broadcast in round 0, point-to-point in rounds 1-2 (the transport must encrypt and
authenticate them) and a broadcast in round 3. Every hash and multiplication is bound to a context
hash of the session id, the key id, its epoch and the signer set, and each pair's streams to both
sides' round-0 nonces.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.mpc_party.protocols.dkg import PeerSet, WireMessage, decode_message
from appliance.mpc_party.protocols.dkls23 import mul
from appliance.mpc_party.protocols.dkls23.common import (
    GROUP,
    KIND_SIGN0,
    KIND_SIGN1,
    KIND_SIGN2,
    KIND_SIGN3,
    M_OT,
    NONCE_LEN,
    OT_WIDTH,
    Q,
    fresh_pair_key,
    h32,
)
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.group import EncodingError, Group, Point, Rng, default_rng
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    StateMismatch,
    Writer,
    ct_equal,
)

_U_LEN = OT_WIDTH * M_OT // 8


# --- messages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignRound0(WireMessage):
    """Round 0, broadcast: the sender's fresh nonce for this session's pair keys, and the key epoch and
    session context it signs with (so a peer on another epoch is told apart from a cheat)."""

    KIND: ClassVar[int] = KIND_SIGN0
    nonce: bytes
    epoch: int
    ctx: bytes

    def _write_body(self, w: Writer) -> None:
        w.fixed(self.nonce, NONCE_LEN).u32(self.epoch).fixed(self.ctx, 32)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {"nonce": r.fixed(NONCE_LEN), "epoch": r.u32(), "ctx": r.fixed(32)}


@dataclass(frozen=True)
class SignRound1(WireMessage):
    """Round 1, p2p (sender acts as Bob toward the recipient): commitment to R_sender, KOS matrix."""

    KIND: ClassVar[int] = KIND_SIGN1
    BROADCAST: ClassVar[bool] = False
    recipient: int
    commitment: bytes
    bob: mul.BobMessage = field(repr=False)

    def _write_body(self, w: Writer) -> None:
        w.fixed(self.commitment, 32).fixed(self.bob.u, _U_LEN).fixed(self.bob.check, 32)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        com, u, check = r.fixed(32), r.fixed(_U_LEN), r.fixed(32)
        return {"commitment": com, "bob": mul.BobMessage(u, check)}


@dataclass(frozen=True)
class SignRound2(WireMessage):
    """Round 2, p2p (sender acts as Alice toward the recipient): hash of the round-1 commitments the
    sender saw (echo), opening of R_sender, multiplication response, and Gamma^u, Gamma^v binding
    the response to R_sender and pk_sender."""

    KIND: ClassVar[int] = KIND_SIGN2
    BROADCAST: ClassVar[bool] = False
    recipient: int
    view: bytes
    big_r: Point
    salt: bytes
    alice: mul.AliceMessage = field(repr=False)
    gamma_u: Point
    gamma_v: Point

    def _write_body(self, w: Writer) -> None:
        w.fixed(self.view, 32).point(GROUP, self.big_r).fixed(self.salt, 32)
        w.fixed(self.alice.tau, mul.AliceMessage.SIZES[0]).fixed(self.alice.r, mul.AliceMessage.SIZES[1])
        w.scalar(GROUP, self.alice.u).point(GROUP, self.gamma_u).point(GROUP, self.gamma_v)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        view, big_r, salt = r.fixed(32), r.point(group), r.fixed(32)
        tau, rr, u = r.fixed(mul.AliceMessage.SIZES[0]), r.fixed(mul.AliceMessage.SIZES[1]), r.scalar(group)
        return {"view": view, "big_r": big_r, "salt": salt, "alice": mul.AliceMessage(tau, rr, u),
                "gamma_u": r.point(group), "gamma_v": r.point(group)}


@dataclass(frozen=True)
class SignRound3(WireMessage):
    """Round 3, broadcast: the digest being signed and the shares (u_i, w_i)."""

    KIND: ClassVar[int] = KIND_SIGN3
    digest: bytes
    u: int
    w: int

    def _write_body(self, w: Writer) -> None:
        w.fixed(self.digest, 32).scalar(GROUP, self.u).scalar(GROUP, self.w)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {"digest": r.fixed(32), "u": r.scalar(group), "w": r.scalar(group)}


SignMessage = SignRound0 | SignRound1 | SignRound2 | SignRound3
_KINDS: dict[int, type] = {c.KIND: c for c in (SignRound0, SignRound1, SignRound2, SignRound3)}


def decode_sign_message(data: bytes, sender: int | None = None) -> SignMessage:
    return decode_message(_KINDS, GROUP, data, sender)  # type: ignore[return-value]


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """A verified low-S ECDSA signature with its recovery id."""

    r: int
    s: int
    recovery_id: int

    def to_compact(self) -> bytes:
        """64 bytes r || s."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")

    def to_recoverable(self) -> bytes:
        """65 bytes r || s || v (v = recovery id 0..3), the form zrChain and coincurve take."""
        return self.to_compact() + bytes([self.recovery_id])

    def to_der(self) -> bytes:
        return encode_dss_signature(self.r, self.s)


def finalize_signature(public_key: Point, big_r: Point, digest: bytes, s: int) -> Signature:
    """Low-S normalise, derive the recovery id, and verify (by recovering the key) before release."""
    x = GROUP.x_coordinate(big_r)
    r = x % Q
    recid = (big_r[0] & 1) | (2 if x >= Q else 0)
    if s > Q // 2:
        s, recid = Q - s, recid ^ 1
    sig = Signature(r, s, recid)
    ok = False
    if r and s:
        try:
            got = coincurve.PublicKey.from_signature_and_message(sig.to_recoverable(), digest, hasher=None)
            ok = ct_equal(got.format(), public_key)
        except ValueError:
            ok = False
    if not ok:
        raise ProtocolAbort("combined signature does not verify: some signer's round-3 share or "
                            "presignature was inconsistent")
    return sig


# --- state machines --------------------------------------------------------------------------------


class SignState(enum.Enum):
    ROUND0 = "ready for round 0"
    WAITING_ROUND0 = "waiting for round-0 nonces"
    WAITING_ROUND1 = "waiting for round-1 messages"
    WAITING_ROUND2 = "waiting for round-2 messages"
    DONE = "done (presignature produced)"
    FAILED = "failed"


def _commit(ctx: bytes, who: int, big_r: Point, salt: bytes) -> bytes:
    return h32(b"sign/commit", ctx, who.to_bytes(2, "big"), big_r, salt)


def _check_point(p: Point, who: int) -> None:
    try:
        GROUP.decode_point(p)
    except EncodingError as exc:
        raise ProtocolAbort(f"invalid point: {exc}", who) from None


class SignSession:
    """One party's presigning session (rounds 1-2). Call sequence::

        s = SignSession(key, session_id, signers, rng)
        msg0 = s.round0()               # one SignRound0, broadcast
        s.receive(m) for each peer's SignRound0 (and, possibly early, SignRound1)
        msgs1 = s.round1()              # one SignRound1 per peer
        s.receive(m) for each peer's SignRound1 (and, possibly early, SignRound2)
        msgs2 = s.round2()              # one SignRound2 per peer
        s.receive(m) for each peer's SignRound2
        presig = s.finish()             # Presignature, for one message
    """

    def __init__(self, key: Dkls23Key, session_id: bytes, signers: list[int], rng: Rng = default_rng) -> None:
        signers = sorted(set(signers))
        if len(session_id) != SESSION_ID_LEN:
            raise LocalProtocolError(f"session id must be {SESSION_ID_LEN} bytes")
        if key.party_id not in signers or len(signers) < key.t or not set(signers) <= set(key.public_shares):
            raise LocalProtocolError(f"bad signer set {signers} for party {key.party_id} "
                                     f"({key.t}-of-{key.n})")
        if missing := key.missing_pairs(signers):
            raise LocalProtocolError(f"no OT set-up with signers {missing} yet (absent at keygen: the "
                                     "pairwise re-setup must run first)")
        self.key, self.session_id, self.signers, self._rng = key, bytes(session_id), signers, rng
        self.me = key.party_id
        self.peers = [j for j in signers if j != self.me]
        self._peerset = PeerSet(self.session_id, self.me, set(self.peers))
        self.ctx = h32(b"sign/ctx", self.session_id, key.key_id, key.epoch.to_bytes(4, "big"),
                       key.public_key, b"".join(j.to_bytes(2, "big") for j in signers))
        self.state = SignState.ROUND0
        self._in0: dict[int, SignRound0] = {}
        self._in1: dict[int, SignRound1] = {}
        self._in2: dict[int, SignRound2] = {}
        self._in3: dict[int, SignRound3] = {}

    def _require(self, state: SignState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"{what} called in state '{self.state.value}'")

    def missing(self) -> dict[str, list[int]]:
        return {"round0": [j for j in self.peers if j not in self._in0],
                "round1": [j for j in self.peers if j not in self._in1],
                "round2": [j for j in self.peers if j not in self._in2]}

    # -- round 0 --
    def round0(self) -> SignRound0:
        self._require(SignState.ROUND0, "round0")
        self._nonce = self._rng(NONCE_LEN)
        self.state = SignState.WAITING_ROUND0
        return SignRound0(GROUP, self.session_id, self.me, self._nonce, self.key.epoch, self.ctx)

    def pair_key(self, alice: int, bob: int) -> bytes:
        """This session's key of the ordered pair (alice, bob); needs both nonces."""
        nonces = {j: m.nonce for j, m in self._in0.items()} | {self.me: self._nonce}
        return fresh_pair_key(self.ctx, alice, bob, nonces[alice], nonces[bob])

    # -- round 1 --
    def round1(self) -> list[SignRound1]:
        self._require(SignState.WAITING_ROUND0, "round1")
        if missing := self.missing()["round0"]:
            raise LocalProtocolError(f"round1 needs round-0 nonces from parties {missing}")
        self._r = GROUP.random_scalar(self._rng)
        self._phi = GROUP.random_scalar(self._rng)
        self._big_r = GROUP.base_mul(self._r)
        self._salt = self._rng(32)
        com = _commit(self.ctx, self.me, self._big_r, self._salt)
        self._own_commitment = com
        self._bob: dict[int, mul.BobState] = {}
        out = []
        for j in self.peers:
            setup = self.key.pairs[j]
            msg, st = mul.bob_start(self.pair_key(j, self.me), list(setup.seeds0), list(setup.seeds1),
                                    self._phi, self._rng)
            self._bob[j] = st
            out.append(SignRound1(GROUP, self.session_id, self.me, j, com, msg))
        self.state = SignState.WAITING_ROUND1
        return out

    def receive(self, msg: SignMessage) -> None:
        """Take one peer message; checks it fully (session, sender, recipient, duplicate, order).
        Peers may be ahead of us, so messages are accepted from the start and buffered."""
        if self.state in (SignState.DONE, SignState.FAILED):
            raise LocalProtocolError(f"receive called in state '{self.state.value}'")
        if isinstance(msg, SignRound0):
            self._peerset.check(msg, self._in0)
            self._check_state(msg)
            self._in0[msg.sender] = msg
        elif isinstance(msg, SignRound1):
            self._peerset.check(msg, self._in1)
            if msg.sender not in self._in0:
                raise ProtocolAbort("round-1 message before that party's round-0 nonce", msg.sender)
            self._in1[msg.sender] = msg
        elif isinstance(msg, SignRound2):
            self._peerset.check(msg, self._in2)
            if msg.sender not in self._in1:
                raise ProtocolAbort("round-2 message before that party's round-1 message", msg.sender)
            for p in (msg.big_r, msg.gamma_u, msg.gamma_v):
                _check_point(p, msg.sender)
            self._in2[msg.sender] = msg
        elif isinstance(msg, SignRound3):
            # a faster peer may already be in round 3: keep it for the presignature
            self._peerset.check(msg, self._in3)
            if msg.sender not in self._in2:
                raise ProtocolAbort("round-3 message before that party's round-2 message", msg.sender)
            self._in3[msg.sender] = msg
        else:
            raise LocalProtocolError(f"not a signing message: {type(msg).__name__}")

    def _check_state(self, msg: SignRound0) -> None:
        """The peer's ctx must be ours: the same key id, epoch, public key, signers and session id.
        Only public values enter ctx, so refusing here reveals nothing (see the module docstring)."""
        if ct_equal(msg.ctx, self.ctx):
            return
        self.state = SignState.FAILED
        if msg.epoch != self.key.epoch:
            raise StateMismatch(f"party {msg.sender} signs with key epoch {msg.epoch}, this party with "
                                f"{self.key.epoch} (a refresh or resharing committed on one side only)", msg.sender)
        raise StateMismatch("the peer's signing context differs from ours (another key or signer set)", msg.sender)

    # -- round 2 --
    def round2(self) -> list[SignRound2]:
        self._require(SignState.WAITING_ROUND1, "round2")
        if missing := self.missing()["round1"]:
            raise LocalProtocolError(f"round2 needs round-1 messages from parties {missing}")
        try:
            return self._round2()
        except ProtocolAbort:
            self.state = SignState.FAILED
            raise

    def _view(self) -> bytes:
        """Hash of every signer's round-1 commitment as we received it (ours included)."""
        coms = {j: m.commitment for j, m in self._in1.items()} | {self.me: self._own_commitment}
        return h32(b"sign/view", self.ctx, *(coms[j] for j in self.signers))

    def _round2(self) -> list[SignRound2]:
        sk = self.key.weighted_secret(self.signers)
        self._c: dict[int, list[int]] = {}
        view = self._view()
        out = []
        for j in self.peers:
            setup = self.key.pairs[j]
            alice, c = mul.alice_respond(self.pair_key(self.me, j), setup.delta, list(setup.seeds_delta),
                                         self._in1[j].bob, [self._r, sk], self._rng, peer=j)
            self._c[j] = c
            out.append(SignRound2(GROUP, self.session_id, self.me, j, view, self._big_r, self._salt, alice,
                                  GROUP.base_mul(c[0]), GROUP.base_mul(c[1])))
        self.state = SignState.WAITING_ROUND2
        return out

    # -- finish --
    def finish(self) -> Presignature:
        self._require(SignState.WAITING_ROUND2, "finish")
        if missing := self.missing()["round2"]:
            raise LocalProtocolError(f"finish needs round-2 messages from parties {missing}")
        try:
            presig = self._finish()
        except ProtocolAbort:
            self.state = SignState.FAILED
            raise
        self.state = SignState.DONE
        return presig

    def _finish(self) -> Presignature:
        sk = self.key.weighted_secret(self.signers)
        u, v = self._r * self._phi, sk * self._phi
        points = [self._big_r]
        view = self._view()
        for j in self.peers:
            m1, m2 = self._in1[j], self._in2[j]
            if not ct_equal(m2.view, view):
                raise ProtocolAbort("round-1 commitments differ between this party's view and ours "
                                    "(it, or another signer, equivocated)", j)
            if not ct_equal(_commit(self.ctx, j, m2.big_r, m2.salt), m1.commitment):
                raise ProtocolAbort("decommitment does not match the round-1 commitment to R", j)
            d = mul.bob_finish(self._bob[j], m2.alice, peer=j)
            phi = self._phi
            if not ct_equal(GROUP.mul(m2.big_r, phi), GROUP.add(m2.gamma_u, GROUP.base_mul(d[0]))):
                raise ProtocolAbort("multiplication input does not match the committed R (Gamma^u check)", j)
            pk_j = self.key.weighted_public(j, self.signers)
            if not ct_equal(GROUP.mul(pk_j, phi), GROUP.add(m2.gamma_v, GROUP.base_mul(d[1]))):
                raise ProtocolAbort("multiplication input does not match the key share (Gamma^v check)", j)
            u += self._c[j][0] + d[0]
            v += self._c[j][1] + d[1]
            points.append(m2.big_r)
        big_r = GROUP.sum(points)
        if big_r == GROUP.identity or GROUP.x_coordinate(big_r) % Q == 0:
            raise ProtocolAbort("degenerate combined instance point R")
        presig = Presignature(self.session_id, self.me, list(self.signers), self.key.public_key, big_r,
                              self._phi, u % Q, v % Q, early=self._in3)
        self._r = self._phi = 0
        self._c, self._bob = {}, {}
        return presig


class PresigState(enum.Enum):
    READY = "ready for round 3 (unused)"
    WAITING_ROUND3 = "waiting for round-3 shares"
    DONE = "done"
    FAILED = "failed"


class Presignature:
    """The message-independent result of rounds 1-2 for one party. Signs exactly one digest:
    a second `round3` raises LocalProtocolError (a reused presignature leaks the key)."""

    def __init__(self, session_id: bytes, me: int, signers: list[int], public_key: Point, big_r: Point,
                 phi: int, u: int, v: int, early: dict[int, SignRound3] | None = None) -> None:
        self.session_id, self.me, self.signers, self.public_key = session_id, me, signers, public_key
        self.big_r = big_r
        self.r = GROUP.x_coordinate(big_r) % Q
        self._phi, self._u, self._v = phi, u, v
        self.state = PresigState.READY
        self._peerset = PeerSet(session_id, me, set(signers) - {me})
        self._in3: dict[int, SignRound3] = dict(early or {})  # shares that arrived before our round 3
        self._digest = b""

    def __repr__(self) -> str:
        return f"Presignature(party={self.me}, signers={self.signers}, {self.state.value})"

    def round3(self, digest: bytes) -> SignRound3:
        """Our share for `digest` (32 bytes, already hashed). Burns the presignature."""
        if self.state is not PresigState.READY:
            raise LocalProtocolError(f"presignature already used (state '{self.state.value}')")
        if len(digest) != 32:
            raise LocalProtocolError("digest must be 32 bytes")
        self.state = PresigState.WAITING_ROUND3
        for j, early in self._in3.items():  # peers that were ahead of us: same digest?
            if not ct_equal(early.digest, digest):
                self.state = PresigState.FAILED
                raise ProtocolAbort("round-3 share is for a different digest", j)
        m = int.from_bytes(digest, "big") % Q
        w = (m * self._phi + self.r * self._v) % Q
        self._digest = bytes(digest)
        self._own = SignRound3(GROUP, self.session_id, self.me, self._digest, self._u, w)
        self._phi = self._v = 0
        return self._own

    def receive(self, msg: SignMessage) -> None:
        """A peer's round-3 share; accepted before our own round 3 too (checked against the digest
        as soon as we know it)."""
        if self.state not in (PresigState.READY, PresigState.WAITING_ROUND3):
            raise LocalProtocolError(f"receive called in state '{self.state.value}'")
        if not isinstance(msg, SignRound3):
            raise ProtocolAbort(f"unexpected {type(msg).__name__} in round 3 (replayed or reordered)",
                                getattr(msg, "sender", None))
        self._peerset.check(msg, self._in3)
        if self.state is PresigState.WAITING_ROUND3 and not ct_equal(msg.digest, self._digest):
            raise ProtocolAbort("round-3 share is for a different digest", msg.sender)
        self._in3[msg.sender] = msg

    def waiting_for(self) -> list[int]:
        """Signers whose round-3 share has not arrived yet."""
        return [j for j in self.signers if j != self.me and j not in self._in3]

    def combine(self) -> Signature:
        """s = sum w_i / sum u_i; verified before it is returned."""
        if self.state is not PresigState.WAITING_ROUND3:
            raise LocalProtocolError(f"combine called in state '{self.state.value}'")
        if missing := self.waiting_for():
            raise LocalProtocolError(f"combine needs round-3 shares from parties {missing}")
        shares = [self._own, *self._in3.values()]
        den = sum(m.u for m in shares) % Q
        if den == 0:
            self.state = PresigState.FAILED
            raise ProtocolAbort("round-3 shares sum to zero")
        s = sum(m.w for m in shares) * pow(den, -1, Q) % Q
        try:
            sig = finalize_signature(self.public_key, self.big_r, self._digest, s)
        except ProtocolAbort:
            self.state = PresigState.FAILED
            raise
        self.state = PresigState.DONE
        return sig
