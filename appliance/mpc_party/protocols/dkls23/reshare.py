"""DKLs23 resharing: the generic resharing (`protocols/reshare.py`) composed with fresh pairwise OT
set-ups among the new party set.

The dealers (t old holders) reshare the secp256k1 share as for any group; every ordered pair of the
new set then runs the same five VSOT steps as keygen (`keygen.OT_STEPS`, Bob = base-OT sender, Alice =
base-OT receiver with a fresh Delta as choice bits), so no OT seed or Delta of the old key survives
into the new one: a party that leaves the set keeps nothing that works with the new shares, and one
that joins gets pairs with everybody. Rounds (a dealer leaving the set stops after round 2):

    round 1: ReshareDeal + ReshareSubShare (dealers)   + VSOT step 1 as Bob to each new peer
    round 2: ReshareEcho (everyone)                    + VSOT step 2 as Alice
    round 3: resharing finishes (echoes checked)       + VSOT step 3 as Bob
    round 4: VSOT step 4 as Alice     round 5: VSOT step 5 as Bob     finish: openings checked

The pair identifiers are bound to H(spec) (session id, key, dealers, new set, t'), so nothing of one
resharing replays into another. The result keeps the key id and takes epoch = old epoch + 1.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.mpc_party.protocols.dkg import PeerSet
from appliance.mpc_party.protocols.dkls23.common import GROUP, KIND_OT1, KIND_OT5, h32, pair_id
from appliance.mpc_party.protocols.dkls23.keygen import OT_STEPS, OtSetupMessage, decode_keygen_message
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key, PairSetup, delta_bits
from appliance.mpc_party.protocols.dkls23.ot_base import VsotReceiver, VsotSender
from appliance.mpc_party.protocols.group import Rng, default_rng
from appliance.mpc_party.protocols.reshare import (
    ReshareMessage,
    ReshareOutcome,
    ReshareParty,
    ReshareSpec,
    decode_reshare_message,
)
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort

DklsReshareMessage = ReshareMessage | OtSetupMessage


def decode_dkls_reshare_message(data: bytes, sender: int | None = None) -> DklsReshareMessage:
    if len(data) >= 2 and KIND_OT1 <= data[1] <= KIND_OT5:
        return decode_keygen_message(data, sender)  # type: ignore[return-value]
    return decode_reshare_message(GROUP, data, sender)


class DklsReshareParty:
    """One participant's DKLs23 resharing. Feed peer messages to `receive`; while `ready()`, `step()`
    produces the next round's messages; `done` / `result()` at the end."""

    def __init__(self, spec: ReshareSpec, me: int, old_key: Dkls23Key | None, rng: Rng = default_rng) -> None:
        if spec.group is not GROUP:
            raise LocalProtocolError("DKLs23 resharing is over secp256k1")
        old = old_key.as_dkg_share() if old_key is not None else None
        self.core = ReshareParty(spec, me, old, rng, epoch=old_key.epoch if old_key else 0)
        self.spec, self.me = spec, me
        self.new_peers = [j for j in spec.new_parties if j != me] if me in spec.new_parties else []
        self._ot_peers = PeerSet(spec.session_id, me, set(self.new_peers))
        self.ctx = h32(b"reshare/ctx", spec.encode())
        self._inbox: dict[int, dict[int, OtSetupMessage]] = {s: {} for s in OT_STEPS}
        self._deltas = {j: rng(16) for j in self.new_peers}
        self._as_bob = {j: VsotSender(pair_id(self.ctx, j, me), j, rng) for j in self.new_peers}
        self._as_alice = {j: VsotReceiver(pair_id(self.ctx, me, j), j, delta_bits(self._deltas[j]), rng)
                          for j in self.new_peers}
        self._outcome: ReshareOutcome | None = None
        self._key: Dkls23Key | None = None
        self.round = 0  # the last round produced
        self.failed = False

    def receive(self, msg: DklsReshareMessage) -> None:
        if self.done or self.failed:
            raise LocalProtocolError("receive called after the resharing ended")
        if not isinstance(msg, OtSetupMessage):
            self.core.receive(msg)
            return
        box = self._inbox[msg.step]
        self._ot_peers.check(msg, box)
        if msg.step > 2 and msg.sender not in self._inbox[msg.step - 2]:
            raise ProtocolAbort(f"OT setup step {msg.step} before step {msg.step - 2}", msg.sender)
        box[msg.sender] = msg

    def _ot_missing(self, step: int) -> list[int]:
        return [j for j in self.new_peers if j not in self._inbox[step]]

    def waiting_for(self) -> list[int]:
        """Peers whose messages the next round still needs."""
        if self.done or self.round == 0:
            return []
        missing = self.core.missing()
        if self.round == 1:
            return sorted(set(missing["deals"]) | set(missing["subshares"]) | set(self._ot_missing(1)))
        if self.round == 2:
            return sorted(set(missing["echoes"]) | set(self._ot_missing(2)))
        return self._ot_missing(self.round)

    def ready(self) -> bool:
        return not self.done and not self.failed and not self.waiting_for()

    def step(self) -> list[DklsReshareMessage]:
        """Produce the next round (call when `ready()`); a peer's fault fails the session for good."""
        self.round += 1
        step: Callable[[], list[DklsReshareMessage]] = {
            1: self._round1, 2: self._round2, 3: self._round3, 4: self._round4, 5: self._round5,
            6: self._finish}[self.round]
        try:
            return step()
        except ProtocolAbort:
            self.failed = True
            raise

    def _ot(self, step: int, j: int, items, z: int = 0) -> OtSetupMessage:
        return OT_STEPS[step](GROUP, self.spec.session_id, self.me, j, tuple(items), z)

    def _round1(self) -> list[DklsReshareMessage]:
        out: list[DklsReshareMessage] = list(self.core.round1())
        for j in self.new_peers:
            big_b, r, z = self._as_bob[j].step1()
            out.append(self._ot(1, j, (big_b, r), z))
        return out

    def _round2(self) -> list[DklsReshareMessage]:
        out: list[DklsReshareMessage] = [self.core.round2()]
        for j in self.new_peers:
            m = self._inbox[1][j]
            out.append(self._ot(2, j, self._as_alice[j].step2(m.items[0], m.items[1], m.z)))
        return out

    def _round3(self) -> list[DklsReshareMessage]:
        self._outcome = self.core.finish()
        return [self._ot(3, j, self._as_bob[j].step3(list(self._inbox[2][j].items))) for j in self.new_peers]

    def _round4(self) -> list[DklsReshareMessage]:
        return [self._ot(4, j, self._as_alice[j].step4(list(self._inbox[3][j].items))) for j in self.new_peers]

    def _round5(self) -> list[DklsReshareMessage]:
        return [self._ot(5, j, self._as_bob[j].step5(list(self._inbox[4][j].items))) for j in self.new_peers]

    def _finish(self) -> list[DklsReshareMessage]:
        assert self._outcome is not None and self._outcome.share is not None
        pairs = {}
        for j in self.new_peers:
            seeds_delta = self._as_alice[j].finish(list(self._inbox[5][j].items))
            seeds0, seeds1 = self._as_bob[j].output()
            pairs[j] = PairSetup(self._deltas[j], tuple(seeds_delta), tuple(seeds0), tuple(seeds1))
        s, o = self._outcome.share, self._outcome
        self._deltas = {}
        self._key = Dkls23Key(o.key_id, o.epoch, self.me, s.n, s.t, s.secret, s.group_public_key,
                              dict(s.verification_shares), pairs)
        self._key.validate()
        return []

    @property
    def done(self) -> bool:
        if self._key is not None:
            return True
        return self._outcome is not None and self._outcome.share is None

    def result(self) -> Dkls23Key | None:
        """The new key (None for a dealer that leaves the set)."""
        if not self.done:
            raise LocalProtocolError("resharing not finished")
        return self._key

    @property
    def outcome(self) -> ReshareOutcome | None:
        return self._outcome
