"""DKLs23 key generation and refresh: the generic Feldman DKG composed with the pairwise OT setup.

The key shares come from `appliance.mpc_party.protocols.dkg` (Feldman VSS, proofs of knowledge, echo
broadcast); DKLs23 only adds, for every ordered pair (Alice = i, Bob = j), a batch of OT_WIDTH
verified base OTs whose outputs seed the KOS OT extension used at every signature: Bob is the
base-OT sender and keeps both seeds; Alice is the base-OT receiver with her secret Delta as choice
bits. Both directions of each pair are set up, since each signer is Alice toward every peer and Bob
toward every peer.

The two run side by side, one message set per round:

    round1: DkgCommitments (broadcast)            + as Bob:   VSOT step 1 (B, proof)   to each peer
    round2: DkgEcho, DkgShare                      + as Alice: VSOT step 2 (A_1..A_128)
    round3: DKG finishes (all DKG checks)          + as Bob:   VSOT step 3 (challenges)
    round4:                                          as Alice: VSOT step 4 (responses)
    round5:                                          as Bob:   VSOT step 5 (openings), responses checked
    finish: openings checked -> Dkls23Key

Keygen among a participant set P (`participants=`, |P| >= t; parties down): the DKG runs among P
(see dkg.py) and the pairwise OT set-ups only among P; P is bound into the pairwise context. An
absent party gets its share by repair and its OT pairs by the re-setup (`resetup.py`) when it returns.

Refresh (`KeygenSession.for_refresh`) is the same composition with the DKG in zero-sharing mode:
same public key, new shares, and entirely fresh OT seeds for every pair.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from appliance.mpc_party.protocols import dkg
from appliance.mpc_party.protocols.dkg import PeerSet, WireMessage, decode_message
from appliance.mpc_party.protocols.dkls23.common import (
    GROUP,
    KIND_OT1,
    KIND_OT2,
    KIND_OT3,
    KIND_OT4,
    KIND_OT5,
    OT_WIDTH,
    h32,
    pair_id,
)
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key, PairSetup, delta_bits
from appliance.mpc_party.protocols.dkls23.ot_base import VsotReceiver, VsotSender
from appliance.mpc_party.protocols.group import Group, Rng, default_rng
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort, Reader, Writer

# step -> (number of fixed-width items, item width, items are points)
_OT_LAYOUT = {1: (2, 33, True), 2: (OT_WIDTH, 33, True), 3: (OT_WIDTH, 32, False),
              4: (OT_WIDTH, 32, False), 5: (2 * OT_WIDTH, 32, False)}


@dataclass(frozen=True)
class OtSetupMessage(WireMessage):
    """One VSOT step between a pair, p2p. Steps 1, 3, 5 come from the base-OT sender (future OT
    extension receiver, Bob); 2 and 4 from the base-OT receiver (Alice). One subclass per step."""

    STEP: ClassVar[int]
    BROADCAST: ClassVar[bool] = False
    recipient: int
    items: tuple[bytes, ...]
    z: int = 0  # the proof scalar (step 1 only)

    @property
    def step(self) -> int:
        return self.STEP

    def _write_body(self, w: Writer) -> None:
        count, width, _ = _OT_LAYOUT[self.STEP]
        if len(self.items) != count:
            raise LocalProtocolError("OT setup message has the wrong number of items")
        for item in self.items:
            w.fixed(item, width)
        if self.STEP == 1:
            w.scalar(GROUP, self.z)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        count, _, points = _OT_LAYOUT[cls.STEP]
        items = tuple(r.point(group) if points else r.fixed(32) for _ in range(count))
        return {"items": items, "z": r.scalar(group) if cls.STEP == 1 else 0}


def _step_class(step: int, kind: int) -> type[OtSetupMessage]:
    return dataclass(frozen=True)(type(f"OtSetup{step}", (OtSetupMessage,), {
        "__annotations__": {}, "STEP": step, "KIND": kind, "__module__": __name__,
        "__doc__": f"VSOT step {step}."}))


OT_STEPS = {step: _step_class(step, kind)
            for step, kind in ((1, KIND_OT1), (2, KIND_OT2), (3, KIND_OT3), (4, KIND_OT4), (5, KIND_OT5))}
_KINDS = {c.KIND: c for c in OT_STEPS.values()}


KeygenMessage = dkg.DkgMessage | OtSetupMessage


def decode_keygen_message(data: bytes, sender: int | None = None) -> KeygenMessage:
    if len(data) >= 2 and data[1] in _KINDS:
        return decode_message(_KINDS, GROUP, data, sender)  # type: ignore[return-value]
    return dkg.decode_dkg_message(GROUP, data, sender)


class KeygenState(enum.Enum):
    ROUND1 = "ready for round 1"
    ROUND2 = "waiting for round-1 messages"
    ROUND3 = "waiting for round-2 messages"
    ROUND4 = "waiting for round-3 messages"
    ROUND5 = "waiting for round-4 messages"
    FINISH = "waiting for round-5 messages"
    DONE = "done"
    FAILED = "failed"


_ORDER = list(KeygenState)


class KeygenSession:
    """One party's DKLs23 keygen (or refresh). Call round1..round5 then finish; feed every peer
    message to `receive` in between (each round needs the previous round's messages)."""

    def __init__(self, session_id: bytes, party_id: int, n: int, t: int, rng: Rng = default_rng,
                 *, participants: Sequence[int] | None = None, _old: Dkls23Key | None = None) -> None:
        if _old is None:
            self._dkg = dkg.DkgParty(GROUP, session_id, party_id, n, t, rng, participants=participants)
        else:
            if participants is not None and sorted(participants) != list(range(1, n + 1)):
                raise LocalProtocolError("a refresh needs every holder of the key")
            self._dkg = dkg.DkgParty.for_refresh(_old.as_dkg_share(), session_id, rng)
        self._old = _old
        self.session_id, self.me, self.n, self.t, self._rng = bytes(session_id), party_id, n, t, rng
        self.participants = self._dkg.participants
        self.peers = [j for j in self.participants if j != party_id]
        self._peerset = PeerSet(self.session_id, party_id, set(self.peers))
        self.ctx = h32(b"keygen/ctx", self.session_id, bytes([n, t, len(self.participants), *self.participants]),
                       (_old.key_id + _old.public_key) if _old else b"")
        self.state = KeygenState.ROUND1
        self._inbox: dict[int, dict[int, OtSetupMessage]] = {s: {} for s in _OT_LAYOUT}
        self._deltas = {j: rng(16) for j in self.peers}
        self._as_bob = {j: VsotSender(pair_id(self.ctx, j, party_id), j, rng) for j in self.peers}
        self._as_alice = {j: VsotReceiver(pair_id(self.ctx, party_id, j), j, delta_bits(self._deltas[j]), rng)
                          for j in self.peers}
        self._share: dkg.KeyShare | None = None

    @classmethod
    def for_refresh(cls, key: Dkls23Key, session_id: bytes, rng: Rng = default_rng) -> KeygenSession:
        return cls(session_id, key.party_id, key.n, key.t, rng, _old=key)

    def _advance(self, state: KeygenState, what: str, needs: int | None, fn: Callable[[dict], list]) -> list:
        """Run one round: check the state and that the messages it needs are all in (a caller error
        leaves the session unchanged), then compute; a peer's fault fails the session for good."""
        if self.state is not state:
            raise LocalProtocolError(f"{what} called in state '{self.state.value}'")
        box = self._from(needs) if needs else {}
        try:
            out = fn(box)
        except ProtocolAbort:
            self.state = KeygenState.FAILED
            raise
        self.state = _ORDER[_ORDER.index(state) + 1]
        return out

    def _from(self, step: int) -> dict[int, OtSetupMessage]:
        box = self._inbox[step]
        if missing := [j for j in self.peers if j not in box]:
            raise LocalProtocolError(f"waiting for OT setup step {step} from parties {missing}")
        return box

    def _msg(self, step: int, j: int, items, z: int = 0) -> OtSetupMessage:
        return OT_STEPS[step](GROUP, self.session_id, self.me, j, tuple(items), z)

    def receive(self, msg: KeygenMessage) -> None:
        if self.state in (KeygenState.DONE, KeygenState.FAILED):  # early messages are buffered
            raise LocalProtocolError(f"receive called in state '{self.state.value}'")
        if not isinstance(msg, OtSetupMessage):
            self._dkg.receive(msg)
            return
        box = self._inbox[msg.step]
        self._peerset.check(msg, box)
        # j sends step k+2 only after step k on the same ordered channel: anything else is reordering
        if msg.step > 2 and msg.sender not in self._inbox[msg.step - 2]:
            raise ProtocolAbort(f"OT setup step {msg.step} before step {msg.step - 2}", msg.sender)
        box[msg.sender] = msg

    def round1(self) -> list[KeygenMessage]:
        def go(_: dict) -> list[KeygenMessage]:
            out: list[KeygenMessage] = [self._dkg.round1()]
            for j in self.peers:
                big_b, r, z = self._as_bob[j].step1()
                out.append(self._msg(1, j, (big_b, r), z))
            return out
        return self._advance(KeygenState.ROUND1, "round1", None, go)

    def round2(self) -> list[KeygenMessage]:
        def go(box: dict) -> list[KeygenMessage]:
            echo, shares = self._dkg.round2()
            out: list[KeygenMessage] = [echo, *shares]
            for j in self.peers:
                m = box[j]
                out.append(self._msg(2, j, self._as_alice[j].step2(m.items[0], m.items[1], m.z)))
            return out
        if self.state is KeygenState.ROUND2 and (missing := self._dkg.missing()["commitments"]):
            raise LocalProtocolError(f"round2 needs DKG commitments from parties {missing}")
        return self._advance(KeygenState.ROUND2, "round2", 1, go)

    def round3(self) -> list[KeygenMessage]:
        def go(box: dict) -> list[KeygenMessage]:
            self._share = self._dkg.finish()
            return [self._msg(3, j, self._as_bob[j].step3(list(box[j].items))) for j in self.peers]
        missing = self._dkg.missing()
        if self.state is KeygenState.ROUND3 and (missing["echoes"] or missing["shares"]):
            raise LocalProtocolError(f"round3 needs DKG echoes and shares: {missing}")
        return self._advance(KeygenState.ROUND3, "round3", 2, go)

    def round4(self) -> list[KeygenMessage]:
        return self._advance(KeygenState.ROUND4, "round4", 3, lambda box: [
            self._msg(4, j, self._as_alice[j].step4(list(box[j].items))) for j in self.peers])

    def round5(self) -> list[KeygenMessage]:
        return self._advance(KeygenState.ROUND5, "round5", 4, lambda box: [
            self._msg(5, j, self._as_bob[j].step5(list(box[j].items))) for j in self.peers])

    @property
    def dkg(self) -> dkg.DkgParty:
        """The DKG inside (its transcript digest and summed commitments feed the confirmation)."""
        return self._dkg

    def finish(self) -> Dkls23Key:
        return self._advance(KeygenState.FINISH, "finish", 5, self._finish)  # type: ignore[return-value]

    def _finish(self, box: dict[int, OtSetupMessage]) -> Dkls23Key:
        pairs = {}
        for j in self.peers:
            seeds_delta = self._as_alice[j].finish(list(box[j].items))
            seeds0, seeds1 = self._as_bob[j].output()
            pairs[j] = PairSetup(self._deltas[j], tuple(seeds_delta), tuple(seeds0), tuple(seeds1))
        share = self._share
        assert share is not None
        key_id = self._old.key_id if self._old else self.session_id
        epoch = self._old.epoch + 1 if self._old else 0
        self._deltas = {}
        return Dkls23Key(key_id, epoch, self.me, self.n, self.t, share.secret, share.group_public_key,
                         dict(share.verification_shares), pairs)
