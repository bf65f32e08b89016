"""Resharing (sans-IO): t old holders of a key give it to a new party set with a new threshold t'.

Same group public key, new shares, new threshold, new members. Used for chain-driven membership
changes (add / remove a party, change `party_threshold`) and, with the new set equal to the old one,
as the scheduled proactive refresh (it needs only t old parties online as dealers, where the
zero-sharing refresh of `dkg.py` needs all n). The DKLs23 composition (fresh pairwise OT set-ups
among the new set) is `dkls23/reshare.py`; docs/protocols/reshare.md has the equations and the
threat model.

Parties have one id namespace (the roster index); a party may be a dealer (it is in the old quorum
D, |D| = t), a receiver (it is in the new set N), or both. Dealer j in D holds the old share s_j and
deals f_j of degree t'-1 with f_j(0) = lambda_j(D) * s_j, Feldman-committed as C_jk = a_jk * G. New
party i keeps x_i = sum_j f_j(i); the x_i lie on F = sum_j f_j with F(0) = sum_j lambda_j s_j = s.

    r1: ReshareDeal      dealer -> all (broadcast)  key id, epoch, old verification shares, C_j0..C_j,t'-1
        ReshareSubShare  dealer -> each new party    f_j(i)  (p2p; the transport must encrypt it)
    r2: ReshareEcho      everyone -> all (broadcast) H(spec, every deal): all saw the same deals
    finish: every echo equal to ours -> KeyShare (new parties) / None (dealers leaving the set)

Checks (each names the dealer at fault): every dealer's old verification shares equal ours (when we
hold an old share) and interpolate to the chain's public key Y; C_j0 = lambda_j * Y_j (so
sum_j C_j0 = Y: the key is provably unchanged); g * f_j(i) = sum_k i^k C_jk for our sub-shares; the
echoes equal (a dealer that showed two parties different deals is caught by the parties it lied to).

    part = ReshareParty(spec, me, old_share, rng)    # old_share None for a party joining the keyring
    out = part.round1()             # [ReshareDeal, ReshareSubShare...] (dealers), [] otherwise
    part.receive(msg)               # any order; validates before it stores
    echo = part.round2()            # once every deal (and every sub-share for us) is in
    share = part.finish()           # once every echo is in
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from appliance.mpc_party.protocols.dkg import DkgEcho, DkgShare, KeyShare, PeerSet, WireMessage, decode_message
from appliance.mpc_party.protocols.group import Group, Point, Rng, commitment_eval, default_rng, eval_poly
from appliance.mpc_party.protocols.group import lagrange_at_zero as _lagrange
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
    transcript_hash,
)

KIND_RESHARE_DEAL = 0x14
KIND_RESHARE_SUBSHARE = 0x15
KIND_RESHARE_ECHO = 0x16

MAX_PARTIES = 32
MAX_INDEX = 0xFFFF
_ECHO_DOMAIN = b"zrkeyring/reshare/echo/v1"


# --- what every participant must agree on before it starts --------------------------------------


@dataclass(frozen=True)
class ReshareSpec:
    """The job, as every participant derives it from the chain: the key (its public key Y), the old
    quorum of dealers (exactly the old threshold t of them), the new party set and threshold."""

    group: Group = field(repr=False)
    session_id: bytes
    public_key: Point
    dealers: tuple[int, ...]
    new_parties: tuple[int, ...]
    new_t: int

    def __post_init__(self) -> None:
        if len(self.session_id) != SESSION_ID_LEN:
            raise LocalProtocolError(f"session id must be {SESSION_ID_LEN} bytes")
        for name, ids in (("dealers", self.dealers), ("new parties", self.new_parties)):
            if list(ids) != sorted(set(ids)) or not ids or not all(1 <= i <= MAX_INDEX for i in ids):
                raise LocalProtocolError(f"{name} must be distinct ids in 1..{MAX_INDEX}, sorted: {ids}")
        if not 1 <= self.new_t <= len(self.new_parties) <= MAX_PARTIES:
            raise LocalProtocolError(f"need 1 <= t' <= n' <= {MAX_PARTIES}, got t'={self.new_t}, "
                                     f"n'={len(self.new_parties)}")

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.dealers) | set(self.new_parties)))

    def lagrange(self, j: int) -> int:
        """lambda_j over the dealer set, at 0."""
        return _lagrange(j, self.dealers, self.group.order)

    def encode(self) -> bytes:
        w = Writer().var(self.group.name.encode()).fixed(self.session_id, SESSION_ID_LEN)
        w.point(self.group, self.public_key).u16(self.new_t)
        _write_ids(w, self.dealers)
        _write_ids(w, self.new_parties)
        return w.getvalue()


# --- messages --------------------------------------------------------------------------------------


def _write_ids(w: Writer, ids: tuple[int, ...]) -> None:
    w.u16(len(ids))
    for i in ids:
        w.u16(i)


def _read_ids(r: Reader) -> tuple[int, ...]:
    count = r.u16()
    if count > MAX_PARTIES:
        raise ProtocolAbort(f"{count} ids exceeds {MAX_PARTIES}", r.sender)
    return tuple(r.u16() for _ in range(count))


@dataclass(frozen=True)
class ReshareDeal(WireMessage):
    """Round 1, broadcast by a dealer: the key's id and epoch, the old verification shares (ids and
    points) it holds, and the Feldman commitments to its resharing polynomial (t' points)."""

    KIND: ClassVar[int] = KIND_RESHARE_DEAL
    BROADCAST: ClassVar[bool] = True
    key_id: bytes
    epoch: int
    old_t: int
    old_ids: tuple[int, ...]
    old_vshares: tuple[Point, ...]
    commitments: tuple[Point, ...]

    def _write_body(self, w: Writer) -> None:
        w.fixed(self.key_id, 32).u32(self.epoch).u16(self.old_t)
        _write_ids(w, self.old_ids)
        for p in self.old_vshares:
            w.point(self.group, p)
        w.points(self.group, self.commitments)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        key_id, epoch, old_t = r.fixed(32), r.u32(), r.u16()
        old_ids = _read_ids(r)
        vshares = tuple(r.point(group) for _ in old_ids)
        return {"key_id": key_id, "epoch": epoch, "old_t": old_t, "old_ids": old_ids,
                "old_vshares": vshares, "commitments": tuple(r.points(group))}

    def old_shares(self) -> dict[int, Point]:
        return dict(zip(self.old_ids, self.old_vshares, strict=True))


@dataclass(frozen=True)
class ReshareSubShare(DkgShare):
    """Round 1, p2p (must travel encrypted): f_sender(recipient). The DKG share's layout under a
    kind of its own, so neither protocol's decoder accepts the other's messages."""

    KIND: ClassVar[int] = KIND_RESHARE_SUBSHARE


@dataclass(frozen=True)
class ReshareEcho(DkgEcho):
    """Round 2, broadcast by every participant: H(spec, every dealer's deal in dealer order)."""

    KIND: ClassVar[int] = KIND_RESHARE_ECHO


ReshareMessage = ReshareDeal | ReshareSubShare | ReshareEcho
RESHARE_KINDS: dict[int, type[WireMessage]] = {
    c.KIND: c for c in (ReshareDeal, ReshareSubShare, ReshareEcho)}


def decode_reshare_message(group: Group, data: bytes, sender: int | None = None) -> ReshareMessage:
    """Parse any resharing message; malformed input raises ProtocolAbort naming `sender`."""
    return decode_message(RESHARE_KINDS, group, data, sender)  # type: ignore[return-value]


# --- the state machine ---------------------------------------------------------------------------


class ReshareState(enum.Enum):
    ROUND1 = "ready for round 1"
    WAITING_DEALS = "waiting for deals and sub-shares"
    WAITING_ECHOES = "waiting for echoes"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ReshareOutcome:
    """What `finish` returns: the new share (None for a dealer leaving the set), the key id and the
    epoch after the resharing (old epoch + 1), which the caller stores as the share's version."""

    share: KeyShare | None
    key_id: bytes
    epoch: int


def check_old_vshares(group: Group, public_key: Point, t: int, vshares: dict[int, Point]) -> str | None:
    """Why `vshares` is not a t-of-n sharing of `public_key` in the exponent (None if it is): every
    window of t consecutive ids must interpolate to Y, which forces all points onto one polynomial
    of degree t-1 (neighbouring windows share t-1 points and the value at 0)."""
    ids = sorted(vshares)
    if not 1 <= t <= len(ids) <= MAX_PARTIES:
        return f"{len(ids)} old verification shares for threshold {t}"
    q = group.order
    for start in range(len(ids) - t + 1):
        window = ids[start:start + t]
        got = group.multi_mul([vshares[j] for j in window], [_lagrange(j, window, q) for j in window])
        if not ct_equal(got, public_key):
            return "old verification shares do not interpolate to the public key"
    return None


class ReshareParty:
    """One participant's resharing session. See the module docstring for the call sequence."""

    def __init__(self, spec: ReshareSpec, me: int, old_share: KeyShare | None, rng: Rng = default_rng,
                 *, epoch: int = 0) -> None:
        if me not in spec.participants:
            raise LocalProtocolError(f"party {me} takes no part in this resharing")
        if me in spec.dealers and old_share is None:
            raise LocalProtocolError("a dealer needs its old share")
        if old_share is not None:
            self._check_old(spec, me, old_share)
        self.spec, self.group, self.me, self._rng = spec, spec.group, me, rng
        self._old, self._epoch = old_share, epoch
        self.state = ReshareState.ROUND1
        self._peers = PeerSet(spec.session_id, me, set(spec.participants) - {me})
        self._deals: dict[int, ReshareDeal] = {}
        self._subshares: dict[int, ReshareSubShare] = {}
        self._echoes: dict[int, ReshareEcho] = {}
        self._own_subshare: int | None = None
        self._digest: bytes | None = None

    @staticmethod
    def _check_old(spec: ReshareSpec, me: int, old: KeyShare) -> None:
        if old.group is not spec.group or old.party_id != me:
            raise LocalProtocolError("old share of another group or party")
        if not ct_equal(old.group_public_key, spec.public_key):
            raise LocalProtocolError("old share is of another key than the one to reshare")
        if len(spec.dealers) != old.t or not set(spec.dealers) <= set(old.verification_shares):
            raise LocalProtocolError(f"dealers {spec.dealers} are not t={old.t} holders of the old key")

    @property
    def is_dealer(self) -> bool:
        return self.me in self.spec.dealers

    @property
    def is_receiver(self) -> bool:
        return self.me in self.spec.new_parties

    def _require(self, state: ReshareState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"{what} called in state '{self.state.value}'")

    def missing(self) -> dict[str, list[int]]:
        dealers = [j for j in self.spec.dealers if j != self.me]
        return {
            "deals": [j for j in dealers if j not in self._deals],
            "subshares": [j for j in dealers if j not in self._subshares] if self.is_receiver else [],
            "echoes": [p for p in sorted(self._peers.peers) if p not in self._echoes],
        }

    # -- round 1 --
    def round1(self) -> list[ReshareMessage]:
        """A dealer deals lambda_j * s_j with degree t'-1; everybody else has nothing to send yet."""
        self._require(ReshareState.ROUND1, "round1")
        self.state = ReshareState.WAITING_DEALS
        if not self.is_dealer:
            return []
        assert self._old is not None
        g, spec, q = self.group, self.spec, self.group.order
        coefficients = [spec.lagrange(self.me) * self._old.secret % q]
        coefficients += [g.random_scalar(self._rng) for _ in range(spec.new_t - 1)]
        old = self._old.verification_shares
        ids = tuple(sorted(old))
        deal = ReshareDeal(g, spec.session_id, self.me, self._old.session_id, self._epoch, self._old.t, ids,
                           tuple(old[i] for i in ids), tuple(g.base_mul(a) for a in coefficients))
        self._deals[self.me] = deal
        out: list[ReshareMessage] = [deal]
        for i in spec.new_parties:
            value = eval_poly(coefficients, i, q)
            if i == self.me:
                self._own_subshare = value
            else:
                out.append(ReshareSubShare(g, spec.session_id, self.me, i, value))
        return out

    def receive(self, msg: ReshareMessage) -> None:
        """Take one peer message (any round, any order). Validates fully before storing it."""
        if self.state in (ReshareState.DONE, ReshareState.FAILED):
            raise LocalProtocolError(f"receive called in state '{self.state.value}'")
        if isinstance(msg, ReshareDeal):
            self._peers.check(msg, self._deals)
            self._require_dealer(msg.sender, "deal")
            self._check_deal(msg)
            self._deals[msg.sender] = msg
        elif isinstance(msg, ReshareSubShare):
            self._peers.check(msg, self._subshares)
            self._require_dealer(msg.sender, "sub-share")
            if not self.is_receiver:
                raise ProtocolAbort("sub-share sent to a party outside the new set", msg.sender)
            self._subshares[msg.sender] = msg
        elif isinstance(msg, ReshareEcho):
            self._peers.check(msg, self._echoes)
            self._echoes[msg.sender] = msg
        else:
            raise LocalProtocolError(f"not a resharing message: {type(msg).__name__}")

    def _require_dealer(self, sender: int, what: str) -> None:
        if sender not in self.spec.dealers:
            raise ProtocolAbort(f"{what} from party {sender}, which is not a dealer", sender)

    def _check_deal(self, deal: ReshareDeal) -> None:
        """Everything about one deal that needs no other message: shape, points, the old sharing, and
        that its constant term is lambda_j times the dealer's old verification share."""
        g, spec, who = self.group, self.spec, deal.sender
        if len(deal.commitments) != spec.new_t:
            raise ProtocolAbort(f"expected {spec.new_t} commitments, got {len(deal.commitments)}", who)
        if len(deal.old_ids) != len(deal.old_vshares) or list(deal.old_ids) != sorted(set(deal.old_ids)):
            raise ProtocolAbort("old verification share ids malformed", who)
        for p in (*deal.commitments, *deal.old_vshares):  # in-process messages bypass from_bytes
            try:
                g.decode_point(p)
            except ValueError as exc:
                raise ProtocolAbort(f"invalid point: {exc}", who) from None
        old = deal.old_shares()
        if self._old is not None:
            mine = self._old.verification_shares
            if (deal.old_t != self._old.t or sorted(old) != sorted(mine)
                    or not all(ct_equal(old[i], mine[i]) for i in mine)):
                raise ProtocolAbort("old verification shares differ from ours", who)
            if not ct_equal(deal.key_id, self._old.session_id) or deal.epoch != self._epoch:
                raise ProtocolAbort("deal names another key id or epoch", who)
        elif (why := check_old_vshares(g, spec.public_key, deal.old_t, old)) is not None:
            raise ProtocolAbort(why, who)
        if deal.old_t != len(spec.dealers) or not set(spec.dealers) <= set(old):
            raise ProtocolAbort("old sharing does not match the dealer set", who)
        if not ct_equal(deal.commitments[0], g.mul(old[who], spec.lagrange(who))):
            raise ProtocolAbort("constant term is not lambda_j times the dealer's old verification share", who)

    # -- round 2 --
    def ready_for_round2(self) -> bool:
        missing = self.missing()
        return self.state is ReshareState.WAITING_DEALS and not missing["deals"] and not missing["subshares"]

    def round2(self) -> ReshareEcho:
        """Every deal (and every sub-share for us) is in: check them together, then echo."""
        self._require(ReshareState.WAITING_DEALS, "round2")
        missing = self.missing()
        if missing["deals"] or missing["subshares"]:
            raise LocalProtocolError(f"round2 needs deals from {missing['deals']} "
                                     f"and sub-shares from {missing['subshares']}")
        try:
            self._check_together()
        except ProtocolAbort:
            self.state = ReshareState.FAILED
            raise
        self._digest = self._view_digest()
        self.state = ReshareState.WAITING_ECHOES
        return ReshareEcho(self.group, self.spec.session_id, self.me, self._digest)

    def _check_together(self) -> None:
        """The deals agree on the key and the old sharing, and our sub-shares match their dealers."""
        first = self._deals[self.spec.dealers[0]]
        for j in self.spec.dealers[1:]:
            d = self._deals[j]
            if (not ct_equal(d.key_id, first.key_id) or d.epoch != first.epoch or d.old_ids != first.old_ids
                    or not all(ct_equal(a, b) for a, b in zip(d.old_vshares, first.old_vshares, strict=True))):
                # a holder of the old share has already named the liar in receive; a joining party
                # cannot tell which dealer lies, only that they disagree
                raise ProtocolAbort(f"dealers {first.sender} and {j} disagree on the key being reshared")
        if self.is_receiver:
            g = self.group
            for j, msg in sorted(self._subshares.items()):
                if not 0 <= msg.value < g.order:
                    raise ProtocolAbort("sub-share not reduced", j)
                if not ct_equal(g.base_mul(msg.value), commitment_eval(g, self._deals[j].commitments, self.me)):
                    raise ProtocolAbort("sub-share does not match the dealer's commitments", j)

    def _view_digest(self) -> bytes:
        parts = [self.spec.encode()] + [self._deals[j].to_bytes() for j in self.spec.dealers]
        return transcript_hash(_ECHO_DOMAIN, *parts)

    # -- finish --
    def ready_to_finish(self) -> bool:
        return self.state is ReshareState.WAITING_ECHOES and not self.missing()["echoes"]

    def finish(self) -> ReshareOutcome:
        """Check every echo; return our new share (None when we leave the set)."""
        self._require(ReshareState.WAITING_ECHOES, "finish")
        if missing := self.missing()["echoes"]:
            raise LocalProtocolError(f"finish needs echoes from {missing}")
        assert self._digest is not None
        for j in sorted(self._echoes):
            if not ct_equal(self._echoes[j].digest, self._digest):
                self.state = ReshareState.FAILED
                raise ProtocolAbort("echo mismatch: this party saw different deals (it, or a dealer, "
                                    "equivocated)", j)
        first = self._deals[self.spec.dealers[0]]
        self.state = ReshareState.DONE
        return ReshareOutcome(self._new_share(first.key_id) if self.is_receiver else None,
                              first.key_id, first.epoch + 1)

    def _new_share(self, key_id: bytes) -> KeyShare:
        g, spec = self.group, self.spec
        received = sum(m.value for m in self._subshares.values())
        secret = (received + (self._own_subshare or 0)) % g.order
        summed = [g.sum(self._deals[j].commitments[k] for j in spec.dealers) for k in range(spec.new_t)]
        if not ct_equal(summed[0], spec.public_key):  # implied by the per-deal checks; kept as a guard
            raise ProtocolAbort("the deals' constant terms do not sum to the public key")
        vshares = {m: commitment_eval(g, summed, m) for m in spec.new_parties}
        if not ct_equal(g.base_mul(secret), vshares[self.me]):
            raise ProtocolAbort("inconsistent resharing result")  # every sub-share checked: cannot happen
        self._subshares, self._own_subshare = {}, None  # the new share is the only copy kept
        return KeyShare(g, self.me, len(spec.new_parties), spec.new_t, secret, spec.public_key, vshares,
                        key_id)


# --- in-process driver (tests, benchmarks) ---------------------------------------------------------


def run_local_reshare(spec: ReshareSpec, old: dict[int, KeyShare], rng: Rng = default_rng,
                      epoch: int = 0) -> dict[int, ReshareOutcome]:
    """Run a whole resharing in one process (messages through their byte encoding); `old` holds the
    old shares of the participants that have one. Returns each participant's outcome."""
    parts = {p: ReshareParty(spec, p, old.get(p), rng, epoch=epoch) for p in spec.participants}
    g = spec.group

    def deliver(msg: ReshareMessage) -> None:
        targets = [p for p in parts if p != msg.sender] if msg.BROADCAST else [msg.recipient]  # type: ignore[union-attr]
        for p in targets:
            parts[p].receive(decode_reshare_message(g, msg.to_bytes(), msg.sender))

    for out in [p.round1() for p in parts.values()]:
        for m in out:
            deliver(m)
    for echo in [p.round2() for p in parts.values()]:
        deliver(echo)
    return {p: part.finish() for p, part in parts.items()}
