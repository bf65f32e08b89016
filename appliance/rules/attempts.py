"""Session ids, attempts and signing quorums: the same on every party, from the request alone.

Every controller of a keyring sees the same requests on chain, so each derives the same session id
and the same signing quorum from the request alone, and every party re-derives them before it takes
part. The quorum rotates with the attempt number: if a party does not answer in time, every
controller moves to attempt k+1 and the next window of parties.
"""

from __future__ import annotations

import hashlib
import struct

from appliance.mpc_party.protocols.wire import transcript_hash

SESSION_DOMAIN = b"zrkeyring/session/v1"


def session_id(chain_id: str, keyring: str, kind: str, request_id: int, attempt: int) -> bytes:
    """32-byte session id bound to (chain, keyring, request kind, request id, attempt)."""
    return transcript_hash(
        SESSION_DOMAIN,
        chain_id.encode(),
        keyring.encode(),
        kind.encode(),
        struct.pack(">QI", request_id, attempt),
    )


def quorum(parties: list[int], threshold: int, request_id: int, attempt: int) -> list[int]:
    """The `threshold` parties that run attempt `attempt` of request `request_id`.

    A window of consecutive parties (in index order) starting at a position derived from the request id
    and advanced by one per attempt, so load spreads across parties and a silent party is rotated out
    within n attempts.
    """
    if not 1 <= threshold <= len(parties):
        raise ValueError(f"threshold {threshold} out of range for {len(parties)} parties")
    ordered = sorted(parties)
    seed = int.from_bytes(hashlib.sha256(struct.pack(">Q", request_id)).digest()[:8], "big")
    start = (seed + attempt) % len(ordered)
    return sorted(ordered[(start + k) % len(ordered)] for k in range(threshold))


def attempt_at(height: int, mpc_btl: int, default_btl: int, attempt_blocks: int) -> int:
    """The attempt in force at `height` for a request timing out at `mpc_btl`.

    The clock is anchored at the request's creation height, recovered as mpc_btl - default_btl (the
    chain sets mpc_btl = creation height + the default lifetime), so it needs no shared state.
    """
    created = max(0, mpc_btl - default_btl)
    return max(0, (height - created) // max(1, attempt_blocks))
