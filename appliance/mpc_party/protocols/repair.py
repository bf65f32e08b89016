"""Share repair (sans-IO): t helpers give a party that was absent (or lost its share) its share, and
nobody learns anything else.

A Shamir share is a point f(r) of the key's degree t-1 polynomial f. Any t holders H of shares s_h =
f(h) can write the missing one as a Lagrange combination at x = r:

    s_r = sum_{h in H} lambda_h(r) * s_h,     lambda_h(r) = prod_{m in H, m != h} (r - m) / (h - m)  (mod q)

but sending lambda_h(r) * s_h to r would hand r a multiple of each helper's share. So each helper h
splits its term into |H| random additive parts,

    lambda_h(r) * s_h = sum_{m in H} delta_{h,m}     (delta_{h,m} uniform for m != h, delta_{h,h} the rest)

and sends delta_{h,m} to helper m (round 2, point to point, encrypted by the transport). Each helper m
sends the target only the sum sigma_m = sum_h delta_{h,m} (round 3); the target adds them:
s_r = sum_m sigma_m. Every value a helper sees is uniformly random (the parts of other helpers' terms),
and every value the target sees is uniform apart from their sum, which is its own share. A coalition of
fewer than t parties therefore learns nothing it did not know (docs/protocols/repair.md).

Correctness is checked, not trusted: the target compares s_r * G with its verification share Y_r =
sum_k r^k C_k, computed from the summed Feldman commitments of the keygen's `KeygenStatement`, which it
takes only from complete confirmation evidence (every participant's identity-signed CONFIRM,
`confirm.py`) whose key is the key the chain holds. A wrong result names no single helper (a wrong
delta is invisible to the target): it names the helper set, and the daemon tries another.

Rounds (envelope round numbers; helpers join on the invitation):

    1  target -> each helper   invitation: key, helper set, nonce (the session id is derived from them)
    2  helper -> helper        RepairDelta(delta_{h,m})
    3  helper -> target        RepairSum(sigma_m) and the helper's confirmation evidence
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from appliance.mpc_party.protocols.confirm import Evidence, complete_evidence, decode_notes
from appliance.mpc_party.protocols.dkg import DkgShare, KeyShare, PeerSet, WireMessage, decode_message
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.group import Group, Rng, default_rng
from appliance.mpc_party.protocols.sessions import Outgoing, Session
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
    transcript_hash,
)

PROTOCOL = "share-repair"
KIND_REPAIR_DELTA = 0x41
KIND_REPAIR_SUM = 0x42
NONCE_LEN = 32
_SID_DOMAIN = b"zrkeyring/share-repair/sid/v1"


def lagrange_at(i: int, ids: Sequence[int], x: int, order: int) -> int:
    """lambda_i(x) for the set `ids`: the weight of f(i) in f(x) (x = 0 gives the usual coefficient)."""
    if i not in ids:
        raise LocalProtocolError(f"party {i} is not in the helper set {list(ids)}")
    num, den = 1, 1
    for m in ids:
        if m != i:
            num = num * (x - m) % order
            den = den * (i - m) % order
    return num * pow(den, -1, order) % order


def repair_session_id(public_key: bytes, target: int, helpers: Sequence[int], nonce: bytes) -> bytes:
    """Bound to the key, the target, the helper set and the target's fresh nonce."""
    return transcript_hash(_SID_DOMAIN, bytes(public_key), target.to_bytes(2, "big"),
                           b"".join(h.to_bytes(2, "big") for h in sorted(helpers)), bytes(nonce))


@dataclass(frozen=True)
class Invitation:
    """Round 1: what the target asks (the helpers recompute the session id from it)."""

    public_key: bytes
    target: int
    helpers: tuple[int, ...]
    nonce: bytes

    def encode(self) -> bytes:
        w = Writer().var(self.public_key).u16(self.target).u8(len(self.helpers))
        for h in self.helpers:
            w.u16(h)
        return w.fixed(self.nonce, NONCE_LEN).getvalue()

    @classmethod
    def decode(cls, data: bytes, sender: int | None = None) -> Invitation:
        r = Reader(data, sender)
        public_key, target = r.var(64), r.u16()
        helpers = tuple(r.u16() for _ in range(r.u8()))
        nonce = r.fixed(NONCE_LEN)
        r.finish()
        if list(helpers) != sorted(set(helpers)) or target in helpers or (sender is not None and sender != target):
            raise ProtocolAbort("malformed repair invitation", sender)
        return cls(public_key, target, helpers, nonce)

    @property
    def session_id(self) -> bytes:
        return repair_session_id(self.public_key, self.target, self.helpers, self.nonce)


@dataclass(frozen=True)
class RepairDelta(DkgShare):
    """Round 2, helper to helper (secret: must travel encrypted): one additive part delta_{h,m}.
    The same body as a DKG share (one scalar), under its own message kind."""

    KIND: ClassVar[int] = KIND_REPAIR_DELTA


@dataclass(frozen=True)
class RepairSum(DkgShare):
    """Round 3, helper to target: sigma_m and the helper's evidence that the key is whole."""

    KIND: ClassVar[int] = KIND_REPAIR_SUM
    evidence: bytes = b""

    def _write_body(self, w: Writer) -> None:
        super()._write_body(w)
        w.var(self.evidence)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {**super()._read_body(r, group), "evidence": r.var(1 << 20)}


_KINDS: dict[int, type[WireMessage]] = {RepairDelta.KIND: RepairDelta, RepairSum.KIND: RepairSum}


def decode_repair_message(group: Group, data: bytes, sender: int | None = None) -> RepairDelta | RepairSum:
    return decode_message(_KINDS, group, data, sender)  # type: ignore[return-value]


class RepairHelperSession(Session):
    """One helper h: split lambda_h(r) s_h, exchange parts with the other helpers, send the sum to r."""

    protocol = PROTOCOL

    def __init__(self, group: Group, invitation: Invitation, me: int, secret: int, evidence: Evidence,
                 rng: Rng = default_rng) -> None:
        if me not in invitation.helpers:
            raise LocalProtocolError(f"party {me} is not in the helper set {list(invitation.helpers)}")
        if len(invitation.helpers) < evidence.statement.t:
            raise LocalProtocolError(f"{len(invitation.helpers)} helpers cannot repair a "
                                     f"{evidence.statement.t}-of-n share")
        self.group, self.inv, self.me = group, invitation, me
        self.session_id = invitation.session_id
        self.participants = tuple(sorted((*invitation.helpers, invitation.target)))
        self._others = [h for h in invitation.helpers if h != me]
        self._peerset = PeerSet(self.session_id, me, set(self._others))
        self._evidence = evidence
        q = group.order
        term = lagrange_at(me, invitation.helpers, invitation.target, q) * secret % q
        parts = {m: group.random_scalar(rng) for m in self._others}
        self._own_part = (term - sum(parts.values())) % q
        self._parts_out = parts
        self._received: dict[int, RepairDelta] = {}
        self._sent_sum = False

    def start(self) -> list[Outgoing]:
        out = [Outgoing(m, 2, RepairDelta(self.group, self.session_id, self.me, m, v).to_bytes())
               for m, v in sorted(self._parts_out.items())]
        self._parts_out = {}
        return out + self._sum_if_ready()

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        if sender == self.inv.target:  # the invitation again (the target re-sends it until accepted)
            if Invitation.decode(payload, sender) != self.inv:
                raise ProtocolAbort("a second, different repair invitation", sender)
            return []
        msg = decode_repair_message(self.group, payload, sender)
        if not isinstance(msg, RepairDelta):
            raise ProtocolAbort("a helper sent a repair sum to a helper", sender)
        self._peerset.check(msg, self._received)
        self._received[sender] = msg
        return self._sum_if_ready()

    def _sum_if_ready(self) -> list[Outgoing]:
        if self._sent_sum or any(m not in self._received for m in self._others):
            return []
        q = self.group.order
        sigma = (self._own_part + sum(d.value for d in self._received.values())) % q
        self._own_part, self._received, self._sent_sum = 0, {}, True
        msg = RepairSum(self.group, self.session_id, self.me, self.inv.target, sigma, self._evidence.encode())
        return [Outgoing(self.inv.target, 3, msg.to_bytes())]

    @property
    def done(self) -> bool:
        return self._sent_sum

    def result(self) -> None:
        return None

    @property
    def current_round(self) -> int:
        return 2

    def waiting_for(self) -> list[int]:
        return [] if self._sent_sum else [m for m in self._others if m not in self._received]


@dataclass(frozen=True, repr=False)
class Repaired:
    """The target's result: its share, checked against the evidence-authenticated commitments."""

    secret: int
    evidence: Evidence

    def __repr__(self) -> str:
        return f"Repaired(key={self.evidence.statement.group_public_key.hex()}, secret=<hidden>)"

    def key_share(self, me: int) -> KeyShare:
        """As a generic DKG share (FROST)."""
        st = self.evidence.statement
        vshares = {j: st.verification_share(j) for j in range(1, st.n + 1)}
        return KeyShare(st.group, me, st.n, st.t, self.secret, st.group_public_key, vshares, st.session_id)

    def dkls23_key(self, me: int) -> Dkls23Key:
        """As a DKLs23 key without OT pairs (the pairwise re-setup with each peer makes them)."""
        share = self.key_share(me)
        key = Dkls23Key(share.session_id, 0, me, share.n, share.t, share.secret, share.group_public_key,
                        dict(share.verification_shares), {})
        key.validate()
        return key


class RepairTargetSession(Session):
    """The returning party r: invite the helpers, add their sums, check the result."""

    protocol = PROTOCOL

    def __init__(self, group: Group, invitation: Invitation, public_key: bytes,
                 identity_keys: Mapping[int, bytes]) -> None:
        self.group, self.inv, self.me = group, invitation, invitation.target
        self.session_id = invitation.session_id
        self.participants = tuple(sorted((*invitation.helpers, invitation.target)))
        self._public_key, self._keys = bytes(public_key), dict(identity_keys)
        self._peerset = PeerSet(self.session_id, self.me, set(invitation.helpers))
        self._sums: dict[int, RepairSum] = {}
        self._result: Repaired | None = None

    def start(self) -> list[Outgoing]:
        payload = self.inv.encode()
        return [Outgoing(h, 1, payload) for h in self.inv.helpers]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        msg = decode_repair_message(self.group, payload, sender)
        if not isinstance(msg, RepairSum):
            raise ProtocolAbort("a helper sent the target a part instead of a sum", sender)
        self._peerset.check(msg, self._sums)
        self._sums[sender] = msg
        if len(self._sums) == len(self.inv.helpers):
            self._result = self._finish()
        return []

    def _evidence(self) -> Evidence:
        notes = [raw for m in self._sums.values() for raw in decode_notes(m.evidence)]
        evidence = complete_evidence(notes, self._keys)
        if evidence is None or not ct_equal(evidence.statement.group_public_key, self._public_key):
            raise ProtocolAbort(f"helpers {list(self.inv.helpers)} showed no complete confirmation "
                                "evidence of this key")
        if self.me > evidence.statement.n or len(self.inv.helpers) < evidence.statement.t:
            raise ProtocolAbort("repair of an index or with a helper count the key does not allow")
        return evidence

    def _finish(self) -> Repaired:
        evidence = self._evidence()
        q = self.group.order
        secret = sum(m.value for m in self._sums.values()) % q
        if not ct_equal(self.group.base_mul(secret), evidence.statement.verification_share(self.me)):
            raise ProtocolAbort(f"the sum from helper set {list(self.inv.helpers)} is not our share "
                                "(one of them cheated or holds a wrong share); try another set")
        return Repaired(secret, evidence)

    @property
    def done(self) -> bool:
        return self._result is not None

    def result(self) -> Repaired:
        assert self._result is not None, "repair not finished"
        return self._result

    @property
    def current_round(self) -> int:
        return 3

    def waiting_for(self) -> list[int]:
        return [] if self._result is not None else [h for h in self.inv.helpers if h not in self._sums]


def helper_secret(share: Any) -> int:
    """The Shamir share of a stored key (a FROST `KeyShare` or a `Dkls23Key`)."""
    return int(share.secret)


def check_invitation(invitation: Invitation, me: int, session_id: bytes) -> None:
    """A helper's checks on the envelope it was invited by (the daemon adds roster, chain and rate
    checks): the session id is the invitation's and we are one of its helpers."""
    if not ct_equal(invitation.session_id, session_id):
        raise LocalProtocolError("repair session id does not match its invitation")
    if me not in invitation.helpers:
        raise LocalProtocolError(f"party {me} is not among the invited helpers")
    if len(invitation.nonce) != NONCE_LEN or len(session_id) != SESSION_ID_LEN:
        raise LocalProtocolError("malformed repair invitation")
