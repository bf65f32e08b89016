"""Generic t-of-n distributed key generation and share refresh over any `Group` (sans-IO).

Used by FROST (Ed25519, secp256k1) and by DKLs23 (secp256k1, which adds its OT setup afterwards).
No trusted dealer: every party deals a random polynomial of degree t-1 with Feldman commitments, proves
knowledge of its constant term (a Schnorr proof bound to the session id, its party id and its
commitments, which stops rogue-key attacks), and sends each other party its evaluation point-to-point.
An echo round makes every party confirm that everybody saw the same round-1 broadcasts, so a dealer
cannot show different commitments to different parties.

API (one `DkgParty` per party per session; party ids are 1..n; 1 <= t <= n <= 32)::

    party = DkgParty(group, session_id, party_id, n, t, rng)      # keygen among all n parties
    party = DkgParty(group, session_id, party_id, n, t, rng, participants=(1, 3))  # among P, |P| >= t
    party = DkgParty.for_refresh(old_share, session_id, rng)      # refresh: same key, new shares

    c = party.round1()                 # -> DkgCommitments          (broadcast to every other party)
    party.receive(peer_msg)            # DkgCommitments / DkgEcho / DkgShare from peers, any order
    echo, shares = party.round2()      # -> DkgEcho (broadcast), [DkgShare] (p2p, one per other party)
    key_share = party.finish()         # -> KeyShare once every echo and share has arrived

    party.state                        # DkgState.ROUND1 / WAITING_ROUND1 / WAITING_ROUND2 / DONE / FAILED
    party.missing()                    # which peers' messages are still awaited

Messages are frozen dataclasses with `to_bytes()`; `decode_dkg_message(group, data, sender)` parses
any of them (the transport passes the authenticated sender so a malformed message names it). Each
class says whether it is broadcast (`BROADCAST = True`) or point-to-point (then `recipient` is set).
The transport must encrypt and authenticate p2p messages: a `DkgShare` carries a secret scalar.

Errors: `LocalProtocolError` when our caller calls a round twice or too early; `ProtocolAbort` naming
the peer for anything a peer did wrong (bad proof, share not matching its commitments, duplicate or
malformed message, wrong session id, echo mismatch). `receive` validates before it stores anything,
so an aborted message leaves the party unchanged.

Output: `KeyShare` (secret share, group public key, every party's verification share). It has no
wire encoder on purpose; sealing it for storage is the HSM layer's job.

Keygen among a participant set P (parties down): only the members of P deal and receive shares, but
the polynomial still has degree t-1 and the combined commitments define the verification share of
every index 1..n, absent ones included, so an absent party can later be given its share by repair
(`repair.py`) and checked against them. P is bound into the echo digest (every party must agree on
it) and, by the daemon, into the session id; the threshold is t whatever |P| is (|P| >= t).
`transcript_digest` (the echo digest) and `summed_commitments` are what the confirmation round
(`confirm.py`) signs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self

from appliance.mpc_party.protocols.group import Group, Point, Rng, commitment_eval, default_rng, eval_poly
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
    transcript_hash,
)

VERSION = 1
MAX_PARTIES = 32

KIND_DKG_COMMITMENTS = 0x11
KIND_DKG_ECHO = 0x12
KIND_DKG_SHARE = 0x13

MODE_KEYGEN = 0
MODE_REFRESH = 1

_POK_DOMAIN = b"zrkeyring/dkg/pok/v1"
_ECHO_DOMAIN = b"zrkeyring/dkg/echo/v1"


# --- message envelope shared by every protocol message in appliance.mpc_party --------------------


def write_header(w: Writer, kind: int, session_id: bytes, sender: int, recipient: int = 0) -> Writer:
    """Common prefix: version u8 | kind u8 | session id 32 | sender u16 | recipient u16 (0 = broadcast)."""
    return w.u8(VERSION).u8(kind).fixed(session_id, SESSION_ID_LEN).u16(sender).u16(recipient)


def read_header(data: bytes, kind: int, sender: int | None) -> tuple[Reader, bytes, int, int]:
    """Parse and check the common prefix. `sender` is the transport-authenticated sender (if known):
    a message claiming another sender is blamed on the one that actually sent it."""
    r = Reader(data, sender)
    version, got_kind = r.u8(), r.u8()
    if version != VERSION:
        raise ProtocolAbort(f"unsupported message version {version}", sender)
    if got_kind != kind:
        raise ProtocolAbort(f"expected message kind {kind:#x}, got {got_kind:#x}", sender)
    session_id = r.fixed(SESSION_ID_LEN)
    claimed, recipient = r.u16(), r.u16()
    if sender is not None and claimed != sender:
        raise ProtocolAbort(f"message claims sender {claimed}", sender)
    r.sender = claimed
    return r, session_id, claimed, recipient


@dataclass(frozen=True)
class WireMessage:
    """Base of every protocol message: the common header, then a body each class writes and reads.

    Subclasses are frozen dataclasses that add `recipient` when point-to-point and then their body
    fields; they implement `_write_body` and `_read_body`. `group` is how points and scalars are
    encoded; it is not on the wire (the session fixes it)."""

    KIND: ClassVar[int]
    BROADCAST: ClassVar[bool] = True
    group: Group = field(repr=False, compare=False)
    session_id: bytes
    sender: int

    def _write_body(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        recipient = 0 if self.BROADCAST else self.recipient  # type: ignore[attr-defined]
        w = write_header(Writer(), self.KIND, self.session_id, self.sender, recipient)
        self._write_body(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, group: Group, data: bytes, sender: int | None = None) -> Self:
        r, sid, claimed, recipient = read_header(data, cls.KIND, sender)
        fields: dict = {"group": group, "session_id": sid, "sender": claimed}
        if not cls.BROADCAST:
            fields["recipient"] = recipient
        elif recipient != 0:
            raise ProtocolAbort("broadcast message with a recipient", claimed)
        fields.update(cls._read_body(r, group))
        r.finish()
        return cls(**fields)


def decode_message(kinds: Mapping[int, type[WireMessage]], group: Group, data: bytes,
                   sender: int | None = None) -> WireMessage:
    """Parse a message of one of `kinds`; malformed input raises ProtocolAbort naming `sender`."""
    if len(data) < 2 or data[1] not in kinds:
        raise ProtocolAbort("malformed message: unknown message kind", sender)
    return kinds[data[1]].from_bytes(group, data, sender)


class PeerSet:
    """Bookkeeping that every session object shares: which peers exist and which sent what.

    `accept` performs the checks common to every incoming message (right session, a known peer that
    is not us, addressed to us if point-to-point, not a duplicate) without storing anything."""

    def __init__(self, session_id: bytes, me: int, peers: set[int]) -> None:
        self.session_id = session_id
        self.me = me
        self.peers = peers

    def check(self, msg: object, inbox: Mapping[int, object]) -> None:
        sender = msg.sender  # type: ignore[attr-defined]
        if sender not in self.peers:
            raise ProtocolAbort(f"message from party {sender}, which is not a peer in this session", sender)
        if not ct_equal(msg.session_id, self.session_id):  # type: ignore[attr-defined]
            raise ProtocolAbort("message for another session id", sender)
        if not msg.BROADCAST and msg.recipient != self.me:  # type: ignore[attr-defined]
            raise ProtocolAbort(f"p2p message addressed to {msg.recipient}, not to {self.me}", sender)  # type: ignore[attr-defined]
        if sender in inbox:
            raise ProtocolAbort(f"duplicate {type(msg).__name__} message", sender)


# --- messages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DkgCommitments(WireMessage):
    """Round 1, broadcast: Feldman commitments C_k = a_k * G and a proof of knowledge of a_0.

    Keygen: t commitments (C_0..C_{t-1}) and the proof (R, z). Refresh: the constant term is zero, so
    only C_1..C_{t-1} are sent and there is no proof."""

    KIND: ClassVar[int] = KIND_DKG_COMMITMENTS
    BROADCAST: ClassVar[bool] = True
    mode: int
    commitments: tuple[Point, ...]
    proof_r: Point | None = None
    proof_z: int | None = None

    def _write_body(self, w: Writer) -> None:
        w.u8(self.mode).points(self.group, self.commitments)
        if self.mode == MODE_KEYGEN:
            assert self.proof_r is not None and self.proof_z is not None
            w.point(self.group, self.proof_r).scalar(self.group, self.proof_z)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        mode = r.u8()
        if mode not in (MODE_KEYGEN, MODE_REFRESH):
            raise ProtocolAbort(f"unknown DKG mode {mode}", r.sender)
        body = {"mode": mode, "commitments": tuple(r.points(group))}
        if mode == MODE_KEYGEN:
            body["proof_r"], body["proof_z"] = r.point(group), r.scalar(group)
        return body


@dataclass(frozen=True)
class DkgEcho(WireMessage):
    """Round 2, broadcast: hash of every round-1 broadcast this party received (its own included)."""

    KIND: ClassVar[int] = KIND_DKG_ECHO
    BROADCAST: ClassVar[bool] = True
    digest: bytes

    def _write_body(self, w: Writer) -> None:
        w.fixed(self.digest, 32)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {"digest": r.fixed(32)}


@dataclass(frozen=True)
class DkgShare(WireMessage):
    """Round 2, point-to-point (must travel encrypted): f_sender(recipient)."""

    KIND: ClassVar[int] = KIND_DKG_SHARE
    BROADCAST: ClassVar[bool] = False
    recipient: int
    value: int = field(repr=False)

    def _write_body(self, w: Writer) -> None:
        w.scalar(self.group, self.value)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {"value": r.scalar(group)}


DkgMessage = DkgCommitments | DkgEcho | DkgShare
_DKG_KINDS: dict[int, type[WireMessage]] = {c.KIND: c for c in (DkgCommitments, DkgEcho, DkgShare)}


def decode_dkg_message(group: Group, data: bytes, sender: int | None = None) -> DkgMessage:
    """Parse any DKG message; malformed input raises ProtocolAbort naming `sender`."""
    return decode_message(_DKG_KINDS, group, data, sender)  # type: ignore[return-value]


# --- output ----------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class KeyShare:
    """One party's result: secret share s_i, group key Y = s*G, verification shares Y_j = s_j*G.

    Deliberately without `to_bytes`: a secret share never goes on the wire."""

    group: Group
    party_id: int
    n: int
    t: int
    secret: int
    group_public_key: Point
    verification_shares: Mapping[int, Point]
    session_id: bytes

    def __repr__(self) -> str:
        return (f"KeyShare({self.group.name}, party={self.party_id}, {self.t}-of-{self.n}, "
                f"key={self.group_public_key.hex()}, secret=<hidden>)")


# --- the state machine ---------------------------------------------------------------------------


class DkgState(enum.Enum):
    ROUND1 = "ready for round 1"
    WAITING_ROUND1 = "waiting for round-1 commitments"
    WAITING_ROUND2 = "waiting for round-2 echoes and shares"
    DONE = "done"
    FAILED = "failed"


def _check_shape(n: int, t: int, party_id: int) -> None:
    if not 1 <= t <= n <= MAX_PARTIES:
        raise LocalProtocolError(f"need 1 <= t <= n <= {MAX_PARTIES}, got t={t}, n={n}")
    if not 1 <= party_id <= n:
        raise LocalProtocolError(f"party id {party_id} outside 1..{n}")


def check_participants(n: int, t: int, party_id: int, participants: Sequence[int] | None) -> tuple[int, ...]:
    """The sorted participant set P: default every party; else distinct ids in 1..n, |P| >= t, us in it."""
    if participants is None:
        return tuple(range(1, n + 1))
    chosen = tuple(sorted(participants))
    if len(set(chosen)) != len(chosen) or not all(1 <= p <= n for p in chosen):
        raise LocalProtocolError(f"participants {list(participants)} must be distinct ids in 1..{n}")
    if len(chosen) < t:
        raise LocalProtocolError(f"{len(chosen)} participants cannot make a {t}-of-{n} key")
    if party_id not in chosen:
        raise LocalProtocolError(f"party {party_id} is not among the participants {list(chosen)}")
    return chosen


class EchoMismatch(ProtocolAbort):
    """Party `peer`'s echo differs from ours: someone equivocated, but not provably whom."""

    def __init__(self, peer: int) -> None:
        self.peer = peer
        super().__init__(f"echo mismatch with party {peer}: round-1 broadcasts differ between us (a "
                         "dealer equivocated, or the echo lied)", None)


def pok_challenge(group: Group, session_id: bytes, party_id: int, commitments: tuple[Point, ...],
                  r: Point) -> int:
    """c = H(domain, group, session id, party id, C_0..C_{t-1}, R) mod q (SHA-512, length-prefixed)."""
    h = transcript_hash(_POK_DOMAIN, group.name.encode(), session_id, party_id.to_bytes(2, "big"),
                        b"".join(commitments), r, digest_size=64)
    return int.from_bytes(h, "big") % group.order


class DkgParty:
    """One party's DKG (or refresh) session. See the module docstring for the call sequence."""

    def __init__(self, group: Group, session_id: bytes, party_id: int, n: int, t: int,
                 rng: Rng = default_rng, *, participants: Sequence[int] | None = None,
                 _old: KeyShare | None = None) -> None:
        _check_shape(n, t, party_id)
        if len(session_id) != SESSION_ID_LEN:
            raise LocalProtocolError(f"session id must be {SESSION_ID_LEN} bytes")
        self.participants = check_participants(n, t, party_id, participants)
        if _old is not None and len(self.participants) != n:
            raise LocalProtocolError("a refresh needs every holder of the key")
        self.group, self.party_id, self.n, self.t = group, party_id, n, t
        self.session_id = bytes(session_id)
        self._rng = rng
        self._old = _old
        self.mode = MODE_KEYGEN if _old is None else MODE_REFRESH
        self.state = DkgState.ROUND1
        self._peers = PeerSet(self.session_id, party_id, set(self.participants) - {party_id})
        self._coefficients: list[int] | None = None
        self._commitments: dict[int, DkgCommitments] = {}
        self._echoes: dict[int, DkgEcho] = {}
        self._shares: dict[int, DkgShare] = {}
        self._own_share: int | None = None
        self._echo_digest: bytes | None = None
        self.summed_commitments: tuple[Point, ...] = ()  # set by finish: sum over dealers of C_k

    @classmethod
    def for_refresh(cls, old: KeyShare, session_id: bytes, rng: Rng = default_rng) -> DkgParty:
        """Zero-sharing refresh: all n holders of `old`'s key take part; the key stays, shares change."""
        return cls(old.group, session_id, old.party_id, old.n, old.t, rng, _old=old)

    # -- helpers --
    def _require(self, state: DkgState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"{what} called in state '{self.state.value}'")

    def missing(self) -> dict[str, list[int]]:
        peers = sorted(self._peers.peers)
        return {
            "commitments": [p for p in peers if p not in self._commitments],
            "echoes": [p for p in peers if p not in self._echoes],
            "shares": [p for p in peers if p not in self._shares],
        }

    # -- round 1 --
    def round1(self) -> DkgCommitments:
        """Deal a random polynomial; return the commitments (and proof) to broadcast."""
        self._require(DkgState.ROUND1, "round1")
        g = self.group
        coefficients = [g.random_scalar(self._rng) for _ in range(self.t)]
        if self.mode == MODE_REFRESH:
            coefficients[0] = 0
        self._coefficients = coefficients
        first = 0 if self.mode == MODE_KEYGEN else 1
        commitments = tuple(g.base_mul(a) for a in coefficients[first:])
        proof_r = proof_z = None
        if self.mode == MODE_KEYGEN:
            k = g.random_scalar(self._rng)
            proof_r = g.base_mul(k)
            c = pok_challenge(g, self.session_id, self.party_id, commitments, proof_r)
            proof_z = (k + coefficients[0] * c) % g.order
        msg = DkgCommitments(g, self.session_id, self.party_id, self.mode, commitments, proof_r, proof_z)
        self._commitments[self.party_id] = msg
        self.state = DkgState.WAITING_ROUND1
        return msg

    def receive(self, msg: DkgMessage) -> None:
        """Take one peer message (any round, any order). Validates fully before storing it."""
        if self.state in (DkgState.DONE, DkgState.FAILED):
            raise LocalProtocolError(f"receive called in state '{self.state.value}'")
        if isinstance(msg, DkgCommitments):
            self._peers.check(msg, self._commitments)
            self._check_commitments(msg)
            self._commitments[msg.sender] = msg
        elif isinstance(msg, DkgEcho):
            self._peers.check(msg, self._echoes)
            self._echoes[msg.sender] = msg
        elif isinstance(msg, DkgShare):
            self._peers.check(msg, self._shares)
            self._shares[msg.sender] = msg
        else:
            raise LocalProtocolError(f"not a DKG message: {type(msg).__name__}")

    def _check_commitments(self, msg: DkgCommitments) -> None:
        g, who = self.group, msg.sender
        if msg.mode != self.mode:
            raise ProtocolAbort("commitments for the wrong mode (keygen vs refresh)", who)
        expected = self.t if self.mode == MODE_KEYGEN else self.t - 1
        if len(msg.commitments) != expected:
            raise ProtocolAbort(f"expected {expected} commitments, got {len(msg.commitments)}", who)
        for p in msg.commitments:  # messages built in-process bypass from_bytes: check points anyway
            self._check_point(p, who)
        if self.mode == MODE_KEYGEN:
            assert msg.proof_r is not None and msg.proof_z is not None
            self._check_point(msg.proof_r, who)
            c = pok_challenge(g, self.session_id, who, msg.commitments, msg.proof_r)
            lhs = g.base_mul(msg.proof_z)
            rhs = g.add(msg.proof_r, g.mul(msg.commitments[0], c))
            if not ct_equal(lhs, rhs):
                raise ProtocolAbort("invalid proof of knowledge of the constant term", who)

    def _check_point(self, p: Point, who: int) -> None:
        try:
            self.group.decode_point(p)
        except ValueError as exc:
            raise ProtocolAbort(f"invalid point: {exc}", who) from None

    def _full_commitments(self, msg: DkgCommitments) -> list[Point]:
        return list(msg.commitments) if self.mode == MODE_KEYGEN else [self.group.identity, *msg.commitments]

    # -- round 2 --
    def round2(self) -> tuple[DkgEcho, list[DkgShare]]:
        """Once every peer's commitments are in: echo their hash, and deal each peer its share."""
        self._require(DkgState.WAITING_ROUND1, "round2")
        if missing := self.missing()["commitments"]:
            raise LocalProtocolError(f"round2 needs commitments from parties {missing}")
        assert self._coefficients is not None
        q = self.group.order
        self._echo_digest = self._view_digest()
        echo = DkgEcho(self.group, self.session_id, self.party_id, self._echo_digest)
        shares = [DkgShare(self.group, self.session_id, self.party_id, j, eval_poly(self._coefficients, j, q))
                  for j in sorted(self._peers.peers)]
        self._own_share = eval_poly(self._coefficients, self.party_id, q)
        self._coefficients = None
        self.state = DkgState.WAITING_ROUND2
        return echo, shares

    def _view_digest(self) -> bytes:
        parts = [self.group.name.encode(), self.session_id,
                 bytes([self.mode, self.n, self.t, len(self.participants), *self.participants])]
        parts += [self._commitments[j].to_bytes() for j in self.participants]
        return transcript_hash(_ECHO_DOMAIN, *parts)

    @property
    def transcript_digest(self) -> bytes:
        """Hash of the agreed round-1 transcript (group, session, mode, n, t, P, every dealer's
        commitments): what every party's echo said, and what the confirmation round signs."""
        if self._echo_digest is None:
            raise LocalProtocolError("the transcript is known only after round 2")
        return self._echo_digest

    # -- finish --
    def finish(self) -> KeyShare:
        """Check every echo and every received share; return this party's key share."""
        self._require(DkgState.WAITING_ROUND2, "finish")
        missing = self.missing()
        if missing["echoes"] or missing["shares"]:
            raise LocalProtocolError(f"finish needs echoes from {missing['echoes']} "
                                     f"and shares from {missing['shares']}")
        try:
            result = self._finish()
        except ProtocolAbort:
            self.state = DkgState.FAILED
            raise
        self.state = DkgState.DONE
        return result

    def _finish(self) -> KeyShare:
        g, me = self.group, self.party_id
        assert self._echo_digest is not None and self._own_share is not None
        for j in sorted(self._echoes):
            if not ct_equal(self._echoes[j].digest, self._echo_digest):
                # Either j lied in its echo or a dealer showed j other commitments: from here the two
                # cannot be told apart, so nobody is named (an honest party must never be). The daemon
                # names an equivocating dealer from its two signed round-1 envelopes (`evidence.py`).
                raise EchoMismatch(j)
        full = {j: self._full_commitments(m) for j, m in self._commitments.items()}
        for j, msg in sorted(self._shares.items()):
            if not 0 <= msg.value < g.order:
                raise ProtocolAbort("secret share not reduced", j)
        secret = (self._own_share + sum(s.value for s in self._shares.values())) % g.order
        # Aggregate commitments over dealers first: one Feldman evaluation per party instead of one
        # per dealer. Our own verification share then checks the sum of every share we received in
        # one go; only when it fails do we check the dealers one by one to name the culprit.
        summed = [g.sum(full[j][k] for j in full) for k in range(self.t)]
        self.summed_commitments = tuple(summed)
        vshares = {m: commitment_eval(g, summed, m) for m in range(1, self.n + 1)}
        if not ct_equal(g.base_mul(secret), vshares[me]):
            for j, msg in sorted(self._shares.items()):
                if not ct_equal(g.base_mul(msg.value), commitment_eval(g, full[j], me)):
                    raise ProtocolAbort("secret share does not match the dealer's commitments", j)
            raise ProtocolAbort("inconsistent DKG result")  # every share checks out: cannot happen
        if self._old is None:
            group_key = summed[0]
        else:
            group_key = self._old.group_public_key
            vshares = {m: g.add(self._old.verification_shares[m], vshares[m]) for m in vshares}
            secret = (secret + self._old.secret) % g.order
        if group_key == g.identity:
            raise ProtocolAbort("the dealers' constant terms sum to zero")
        return KeyShare(g, me, self.n, self.t, secret, group_key, vshares, self.session_id)


# --- in-process driver (tests, benchmarks, demo) -------------------------------------------------


def run_local(group: Group, parties: list[DkgParty]) -> list[KeyShare]:
    """Run a set of `DkgParty` objects to completion in one process, passing every message through
    its byte encoding as a real transport would."""
    by_id = {p.party_id: p for p in parties}

    def deliver(msg: DkgMessage) -> None:
        data = msg.to_bytes()
        targets = [j for j in by_id if j != msg.sender] if msg.BROADCAST else [msg.recipient]  # type: ignore[union-attr]
        for j in targets:
            by_id[j].receive(decode_dkg_message(group, data, msg.sender))

    for msg in [p.round1() for p in parties]:
        deliver(msg)
    for echo, shares in [p.round2() for p in parties]:
        deliver(echo)
        for share in shares:
            deliver(share)
    return [p.finish() for p in parties]


def run_local_dkg(group: Group, n: int, t: int, rng: Rng = default_rng,
                  session_id: bytes | None = None, participants: Sequence[int] | None = None) -> list[KeyShare]:
    """A whole t-of-n DKG in one process (among `participants`, default all n); returns the
    participants' key shares ordered by party id."""
    sid = session_id if session_id is not None else rng(SESSION_ID_LEN)
    chosen = participants if participants is not None else range(1, n + 1)
    return run_local(group, [DkgParty(group, sid, i, n, t, rng, participants=participants) for i in chosen])


def run_local_refresh(shares: list[KeyShare], rng: Rng = default_rng,
                      session_id: bytes | None = None) -> list[KeyShare]:
    """Refresh all n shares of one key in one process."""
    sid = session_id if session_id is not None else rng(SESSION_ID_LEN)
    return run_local(shares[0].group, [DkgParty.for_refresh(s, sid, rng) for s in shares])
