"""The hello: a signing session's announcement to a peer that has not opened it (mpc_party/join.py),
and the result note a peer answers it with when it has signed the request already.

Fixed width, big-endian: request id u64, attempt u32, retry u16, signer count u16, then that many
signer indices u16, sorted and distinct. These are the fields of the session id besides the chain id
and keyring (rules/attempts.session_id); the receiver recomputes the id and reads everything else
about the job from the chain. The hello travels in an ordinary signed envelope (protocol
`sign-hello`, round 1), so it is authenticated like every message; it carries no secret.

The result note (protocol `sign-result`, round 1, in the opener's session id) carries the signature
the peer already made for the request (or found on chain): the opener verifies it under the key with
an independent library and ends its session with it instead of waiting for a partner that will
never send a round message.

The leave note (protocol `sign-leave`, round 1, in the session's id, one byte: why) tells the other
signers that this party is out of the session: it timed out waiting, refused it, or failed. Without
it, signers that had heard from each other waited a whole round deadline for the one that had left,
and, a request's sessions being serial on each party, the next session found them still waiting
(CI: a 3-of-3 quorum missed every attempt of a request that way). A note from a non-signer, or for a
session that has ended, changes nothing; a signer could abort by going silent anyway, so a note
only makes that quick.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from appliance.mpc_party.protocols.dkg import MAX_PARTIES

HELLO_PROTOCOL = "sign-hello"
HELLO_ROUND = 1
MAX_RETRY = 1 << 8  # retries of a signer set are a handful (rules/attempts.MAX_SET_RETRIES); bound the field
_FIXED = struct.Struct(">QIHH")  # request id, attempt, retry, number of signers
MAX_HELLO_LEN = _FIXED.size + 2 * MAX_PARTIES
RESULT_PROTOCOL = "sign-result"
RESULT_ROUND = 1
MAX_RESULT_LEN = 128  # an ECDSA signature is 64 or 65 bytes, Ed25519 64
LEAVE_PROTOCOL = "sign-leave"
LEAVE_ROUND = 1
LEAVE_LEN = 1


class LeaveReason:
    """The leave note's one byte."""

    TIMEOUT = 1  # a round passed without some signer's message
    REFUSED = 2  # the session was refused before it ran (budget, claim, rules)
    FAILED = 3  # a protocol abort, a state mismatch or a local error
    NAMES = {TIMEOUT: "timed out", REFUSED: "refused it", FAILED: "failed"}

    @classmethod
    def describe(cls, payload: bytes) -> str:
        return cls.NAMES.get(payload[0], "left") if len(payload) == LEAVE_LEN else "left"


class HelloError(ValueError):
    """A hello that does not decode, or does not name the session it came in."""


@dataclass(frozen=True)
class Hello:
    """What a signing session's id is made of, besides the chain and the keyring."""

    request_id: int
    attempt: int
    retry: int
    signers: tuple[int, ...]

    def encode(self) -> bytes:
        ordered = sorted(set(self.signers))
        return _FIXED.pack(self.request_id, self.attempt, self.retry, len(ordered)) + struct.pack(
            f">{len(ordered)}H", *ordered)

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        """Strict: exact length, 1..MAX_PARTIES signers, sorted and distinct, retry below MAX_RETRY."""
        if not _FIXED.size <= len(payload) <= MAX_HELLO_LEN:
            raise HelloError(f"hello of {len(payload)} bytes")
        request_id, attempt, retry, count = _FIXED.unpack_from(payload)
        if not 1 <= count <= MAX_PARTIES or len(payload) != _FIXED.size + 2 * count:
            raise HelloError(f"hello names {count} signers in {len(payload)} bytes")
        signers = struct.unpack_from(f">{count}H", payload, _FIXED.size)
        if list(signers) != sorted(set(signers)) or retry >= MAX_RETRY:
            raise HelloError("hello signers not sorted and distinct, or retry out of range")
        return cls(request_id, attempt, retry, tuple(signers))
