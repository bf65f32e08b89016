"""Constants, message kinds and hashing helpers shared by the DKLs23 modules.

Every hash is domain-separated and length-prefixed (`transcript_hash`) and takes the session id, so
no value computed in one session, pair or direction can be replayed into another.
"""

from __future__ import annotations

import hashlib

from appliance.mpc_party.protocols.group import SECP256K1
from appliance.mpc_party.protocols.wire import ProtocolAbort, transcript_hash

GROUP = SECP256K1
Q = SECP256K1.order

KAPPA = 256  # bits of the scalar field: the binary part of the gadget vector
STAT = 80  # statistical security parameter s
XI = KAPPA + 2 * STAT  # 416 OTs per multiplication (DKLs19 gadget length)
OT_WIDTH = 128  # base OTs per ordered pair == OT-extension width (computational kappa)
KOS_PAD = OT_WIDTH + STAT  # random padding rows that hide Bob's choice bits in the KOS check
M_OT = XI + KOS_PAD  # 624 extended OTs per multiplication
NONCE_LEN = 32  # per-party, per-session freshness of every pair key in signing

# Message kinds (the DKG owns 0x11-0x13).
KIND_OT1 = 0x21
KIND_OT2 = 0x22
KIND_OT3 = 0x23
KIND_OT4 = 0x24
KIND_OT5 = 0x25
KIND_SIGN0 = 0x30
KIND_SIGN1 = 0x31
KIND_SIGN2 = 0x32
KIND_SIGN3 = 0x33


def h32(domain: bytes, *parts: bytes) -> bytes:
    return transcript_hash(b"zrkeyring/dkls23/" + domain, *parts)


def hash_to_scalars(domain: bytes, count: int, *parts: bytes) -> list[int]:
    """`count` scalars from one XOF call; 48 bytes each, so the bias mod q is below 2^-128."""
    seed = h32(domain, *parts)
    out = hashlib.shake_256(seed).digest(48 * count)
    return [int.from_bytes(out[48 * i : 48 * i + 48], "big") % Q for i in range(count)]


def pair_id(session_id: bytes, alice: int, bob: int) -> bytes:
    """Identifier of one ordered pair (Alice = OT-extension sender, Bob = receiver) in a session."""
    return h32(b"pair", session_id, alice.to_bytes(2, "big"), bob.to_bytes(2, "big"))


def fresh_pair_key(context: bytes, alice: int, bob: int, alice_nonce: bytes, bob_nonce: bytes) -> bytes:
    """The key of one ordered pair in one signing session: every KOS stream, challenge and pad hash
    of the pair is derived from it. Both sides' fresh nonces are mixed in before any stream is
    expanded, so two runs never share pads whatever session id the caller supplies (a replayed or
    restarted session meets new pads, never the old ones with different choice bits)."""
    return h32(b"pair/fresh", context, alice.to_bytes(2, "big"), bob.to_bytes(2, "big"), alice_nonce, bob_nonce)


class CorrelationAbort(ProtocolAbort):
    """A failed check whose outcome can depend on this party's long-lived OT correlation (Delta of
    the pair where this party is the OT-extension sender). Passing or failing tells the peer
    something about Delta, so the daemon must burn the (key, peer) pair: no further session as
    extension sender toward that peer until the pair's base OTs are re-run."""


def encode_scalars(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in values)


def decode_scalars(data: bytes, count: int) -> list[int] | None:
    """Fixed-width scalar vector; None if any entry is not reduced (the caller names the sender)."""
    if len(data) != 32 * count:
        return None
    out = [int.from_bytes(data[32 * i : 32 * i + 32], "big") for i in range(count)]
    if any(v >= Q for v in out):
        return None
    return out
