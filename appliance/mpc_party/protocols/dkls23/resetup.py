"""Pairwise OT re-setup: fresh base OTs for one pair of a DKLs23 key, key shares unchanged.

When a check whose outcome depends on a party's long-lived OT correlation fails (the KOS consistency
check, `common.CorrelationAbort`), the peer may have learnt a bit of that party's Delta. The daemon then
burns the (key, peer) pair and the two parties run this session: both directions of the pair get new
base OTs (each side draws a new Delta for the direction where it is the OT-extension sender), exactly
the OT part of keygen (`keygen.py`, VSOT steps 1-5), and nothing else changes — same shares, same
public key, same epoch, the other pairs untouched.

Session id (`resetup_session_id`) binds the keyring's key id, the public key, the initiator, the
responder and a fresh nonce from the initiator, so the responder can recompute it from the first
message's header alone and a replayed invitation names a session nobody runs.

    round 1: header (public key 33 B || nonce 32 B) || VSOT step 1 as Bob      (both sides)
    round 2: VSOT step 2 as Alice (new Delta as choice bits)
    round 3: VSOT step 3 as Bob        round 4: step 4 as Alice     round 5: step 5 as Bob
    finish:  openings checked -> the key with pairs[peer] replaced

A failed re-setup stores nothing; the next one draws another Delta, so a selective failure during the
base OTs never meets a Delta that stays in use.
"""

from __future__ import annotations

from dataclasses import replace

from appliance.mpc_party.protocols.dkg import PeerSet
from appliance.mpc_party.protocols.dkls23.common import GROUP, NONCE_LEN, h32, pair_id
from appliance.mpc_party.protocols.dkls23.keygen import OT_STEPS, OtSetupMessage, decode_keygen_message
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key, PairSetup, delta_bits
from appliance.mpc_party.protocols.dkls23.ot_base import VsotReceiver, VsotSender
from appliance.mpc_party.protocols.group import Rng, default_rng
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort

HEADER_LEN = 33 + NONCE_LEN


def resetup_session_id(key_id: bytes, public_key: bytes, initiator: int, responder: int, nonce: bytes) -> bytes:
    """The 32-byte id of one pairwise re-setup (the responder recomputes it from the header)."""
    if len(nonce) != NONCE_LEN:
        raise LocalProtocolError(f"re-setup nonce must be {NONCE_LEN} bytes")
    return h32(b"resetup/sid", key_id, public_key, initiator.to_bytes(2, "big"), responder.to_bytes(2, "big"),
               nonce)


def header(public_key: bytes, nonce: bytes) -> bytes:
    return bytes(public_key) + bytes(nonce)


def split_header(payload: bytes) -> tuple[bytes, bytes, bytes]:
    """(public key, nonce, rest) of a round-1 payload; ValueError if it is too short."""
    if len(payload) < HEADER_LEN:
        raise ValueError("re-setup round-1 payload shorter than its header")
    return payload[:33], payload[33:HEADER_LEN], payload[HEADER_LEN:]


class PairResetupSession:
    """One side of a pairwise re-setup with `peer`. Drive like keygen: round1..round5, then finish;
    feed the peer's message of each round to `receive` in between."""

    def __init__(self, key: Dkls23Key, session_id: bytes, peer: int, rng: Rng = default_rng) -> None:
        if peer == key.party_id or not 1 <= peer <= key.n:  # a missing pair (absent at keygen) is set up
            raise LocalProtocolError(f"party {peer} is not a peer of this key")
        self.key, self.session_id, self.peer, self.me = key, bytes(session_id), peer, key.party_id
        self._peerset = PeerSet(self.session_id, self.me, {peer})
        lo, hi = sorted((self.me, peer))
        self.ctx = h32(b"resetup/ctx", self.session_id, key.key_id, key.public_key,
                       lo.to_bytes(2, "big"), hi.to_bytes(2, "big"))
        self._delta = rng(16)
        self._as_bob = VsotSender(pair_id(self.ctx, peer, self.me), peer, rng)
        self._as_alice = VsotReceiver(pair_id(self.ctx, self.me, peer), peer, delta_bits(self._delta), rng)
        self._inbox: dict[int, OtSetupMessage] = {}
        self._next = 1  # the next round we may produce
        self.failed = False

    def receive(self, msg: OtSetupMessage) -> None:
        if not isinstance(msg, OtSetupMessage):
            raise ProtocolAbort(f"unexpected {type(msg).__name__} in an OT re-setup", getattr(msg, "sender", None))
        self._peerset.check(msg, {msg.sender: None} if msg.step in self._inbox else {})
        if msg.step > 2 and msg.step - 2 not in self._inbox:
            raise ProtocolAbort(f"OT re-setup step {msg.step} before step {msg.step - 2}", msg.sender)
        self._inbox[msg.step] = msg

    def has(self, step: int) -> bool:
        return step in self._inbox

    def _need(self, step: int) -> OtSetupMessage:
        if step not in self._inbox:
            raise LocalProtocolError(f"waiting for OT re-setup step {step} from party {self.peer}")
        return self._inbox[step]

    def _round(self, n: int, fn) -> OtSetupMessage:
        if self._next != n or self.failed:
            raise LocalProtocolError(f"round{n} called out of order")
        try:
            out = fn()
        except ProtocolAbort:
            self.failed = True
            raise
        self._next = n + 1
        return out

    def _msg(self, step: int, items, z: int = 0) -> OtSetupMessage:
        return OT_STEPS[step](GROUP, self.session_id, self.me, self.peer, tuple(items), z)

    def round1(self) -> OtSetupMessage:
        def go() -> OtSetupMessage:
            big_b, r, z = self._as_bob.step1()
            return self._msg(1, (big_b, r), z)
        return self._round(1, go)

    def round2(self) -> OtSetupMessage:
        def go() -> OtSetupMessage:
            m = self._need(1)
            return self._msg(2, self._as_alice.step2(m.items[0], m.items[1], m.z))
        return self._round(2, go)

    def round3(self) -> OtSetupMessage:
        return self._round(3, lambda: self._msg(3, self._as_bob.step3(list(self._need(2).items))))

    def round4(self) -> OtSetupMessage:
        return self._round(4, lambda: self._msg(4, self._as_alice.step4(list(self._need(3).items))))

    def round5(self) -> OtSetupMessage:
        return self._round(5, lambda: self._msg(5, self._as_bob.step5(list(self._need(4).items))))

    def finish(self) -> Dkls23Key:
        """The key with a fresh pair set-up toward `peer`; everything else is unchanged."""
        def go() -> Dkls23Key:
            seeds_delta = self._as_alice.finish(list(self._need(5).items))
            seeds0, seeds1 = self._as_bob.output()
            pair = PairSetup(self._delta, tuple(seeds_delta), tuple(seeds0), tuple(seeds1))
            self._delta = b""
            return replace(self.key, pairs={**self.key.pairs, self.peer: pair})
        return self._round(6, go)


def decode_resetup_message(data: bytes, sender: int | None = None) -> OtSetupMessage:
    msg = decode_keygen_message(data, sender)
    if not isinstance(msg, OtSetupMessage):
        raise ProtocolAbort("not an OT set-up message", sender)
    return msg
