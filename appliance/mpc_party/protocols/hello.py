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
