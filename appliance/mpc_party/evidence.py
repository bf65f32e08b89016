"""Equivocation evidence from signed envelopes: two envelopes one sender signed for the same broadcast
slot (session, protocol, round) with different payloads.

A DKG dealer that shows different round-1 commitments to different parties makes their echoes
differ; the echo alone cannot say whether the dealer or the echoing party lied (dkg.EchoMismatch names
nobody). Each party keeps the round-1 broadcast envelopes it accepted (signed by their senders'
identity keys) and, on a mismatch, shows them to the party whose echo differed (`exhibits`). Two
valid envelopes of one sender for one slot with different payloads prove that sender equivocated:
anyone holding the roster can check it, so it is named, with both envelopes as the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from appliance.mpc_party.envelope import Envelope, EnvelopeError
from appliance.mpc_party.protocols.confirm import decode_notes, encode_notes
from appliance.mpc_party.protocols.wire import ProtocolAbort

_RECIPIENT, _HEADER_LEN = 36, 38  # protocol message header: version, kind, session id, sender, recipient


@dataclass(frozen=True)
class EnvelopeEquivocation:
    culprit: int
    first: bytes
    second: bytes


class DealerEquivocated(ProtocolAbort):
    """A sender signed two different broadcasts for one slot; `evidence` holds both envelopes."""

    def __init__(self, found: EnvelopeEquivocation) -> None:
        self.evidence = (found.first, found.second)
        super().__init__("signed two different round-1 broadcasts for one keygen (equivocation; both "
                         "envelopes kept as evidence)", found.culprit)


Slot = tuple[int, bytes, str, int, int]


def broadcast_slot(env: Envelope) -> Slot | None:
    """(sender, session, protocol, round, message kind) when the payload is a broadcast protocol
    message (its own header's recipient is 0), whatever recipient the envelope names: an equivocator
    may address each copy to its victim, but the message it signs still says it is for everyone."""
    payload = env.payload
    if len(payload) < _HEADER_LEN or payload[0] != 1 or payload[_RECIPIENT:_HEADER_LEN] != b"\0\0":
        return None
    return env.sender, env.session_id, env.protocol, env.round, payload[1]


def encode_exhibits(envelopes: Iterable[Envelope]) -> bytes:
    return encode_notes([env.encode() for env in envelopes if broadcast_slot(env) is not None])


def find_equivocation(ours: Iterable[Envelope], exhibits: bytes,
                      identity_keys: Mapping[int, bytes]) -> EnvelopeEquivocation | None:
    """Compare the broadcasts we accepted with a peer's exhibits; only validly signed envelopes of
    the same sender, session, protocol, round and message kind count."""
    slots = {slot: env for env in ours if (slot := broadcast_slot(env)) is not None}
    try:
        shown = decode_notes(exhibits)
    except ProtocolAbort:
        return None
    for raw in shown:
        try:
            env = Envelope.decode(raw)
        except EnvelopeError:
            continue
        slot = broadcast_slot(env)
        mine = slots.get(slot) if slot is not None else None
        key = identity_keys.get(env.sender)
        if mine is None or key is None or env.payload == mine.payload:
            continue
        if env.verify(key) and mine.verify(key):
            return EnvelopeEquivocation(env.sender, mine.encode(), env.encode())
    return None
