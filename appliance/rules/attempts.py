"""Session ids, attempts and signing quorums: the same on every party, from the request and liveness.

Every controller of a keyring sees the same requests on chain, so each derives the same attempt from the
chain height and the same *rotation order* of parties from (request id, attempt). The signing quorum is
the first `threshold` parties of that order that its party daemon sees live (`pick_signers`); with every
party live it is the window of `threshold` consecutive parties the order starts with (`quorum`). When a
quorum's session fails, the controller tries the next untried live combination in the same order at
once, within the attempt (`candidate_sets`). The signer set is part of the session id, so two sets are
two sessions and no id is ever run twice. Why this needs no agreement protocol: docs/architecture.md,
"Choosing signers".
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import struct
from collections.abc import Collection, Iterable, Iterator, Mapping

from appliance.mpc_party.protocols.wire import transcript_hash

SESSION_DOMAIN = b"zrkeyring/session/v1"


MAX_SET_RETRIES = 2  # runs of one signer set per attempt: the first, and one retry after a failure


def session_id(chain_id: str, keyring: str, kind: str, request_id: int, attempt: int,
               members: Iterable[int] = (), retry: int = 0) -> bytes:
    """32-byte session id bound to (chain, keyring, request kind, request id, attempt, members, retry).

    `members` is the signer set (signing) or the participant set (keygen), sorted and fixed-width: two
    different sets of one attempt are two different sessions, never the same id. `retry` numbers the
    runs of one set within an attempt (a set whose session failed for a passing reason, e.g. a slow
    round, is run once more with a fresh id rather than waiting for the next attempt).
    """
    ordered = sorted(set(members))
    return transcript_hash(
        SESSION_DOMAIN,
        chain_id.encode(),
        keyring.encode(),
        kind.encode(),
        struct.pack(">QI", request_id, attempt),
        struct.pack(f">H{len(ordered)}H", len(ordered), *ordered),
        struct.pack(">H", retry),
    )


@functools.lru_cache(maxsize=1 << 14)
def _rotation_seed(request_id: int) -> int:
    """The request's place in the rotation. Cached: a controller plans a backlog of hundreds of open
    requests again at every attempt, and the hash was a visible part of its CPU under overload."""
    return int.from_bytes(hashlib.sha256(struct.pack(">Q", request_id)).digest()[:8], "big")


def rotation_order(parties: Iterable[int], request_id: int, attempt: int) -> list[int]:
    """Every party once, starting at a position derived from the request id, advanced by one per
    attempt (load spreads across parties; a silent party moves to the back within n attempts)."""
    ordered = sorted(parties)
    start = (_rotation_seed(request_id) + attempt) % len(ordered)
    return [ordered[(start + k) % len(ordered)] for k in range(len(ordered))]


def quorum(parties: list[int], threshold: int, request_id: int, attempt: int) -> list[int]:
    """The `threshold` parties that run attempt `attempt` of request `request_id`.

    A window of consecutive parties (in index order) starting at a position derived from the request id
    and advanced by one per attempt, so load spreads across parties and a silent party is rotated out
    within n attempts.
    """
    if not 1 <= threshold <= len(parties):
        raise ValueError(f"threshold {threshold} out of range for {len(parties)} parties")
    return sorted(rotation_order(parties, request_id, attempt)[:threshold])


def candidate_sets(parties: Iterable[int], threshold: int, request_id: int, attempt: int,
                   live: Collection[int]) -> Iterator[tuple[int, ...]]:
    """The signer sets of one attempt that are all live, best first (each sorted).

    The combinations of the live parties taken in rotation order, lexicographically: the first is the
    first `threshold` live parties of the order (with every party live: `quorum`), then the next ones,
    so a controller whose set failed moves on to a set that controllers with the same view pick too.
    Lazy: with many parties only the first few are ever computed.
    """
    order = rotation_order(parties, request_id, attempt)
    if not 1 <= threshold <= len(order):
        raise ValueError(f"threshold {threshold} out of range for {len(order)} parties")
    alive = [p for p in order if p in live]
    for combo in itertools.combinations(alive, threshold):
        yield tuple(sorted(combo))


def pick_signers(parties: Iterable[int], threshold: int, request_id: int, attempt: int,
                 live: Collection[int], tried: Collection[tuple[int, ...]] = (),
                 me: int | None = None) -> tuple[int, ...] | None:
    """The signer set a controller runs now: the first live candidate it has not tried in this attempt.

    None when no untried live set is left (fewer than `threshold` live parties, or all tried); with `me`
    also None when the chosen set leaves `me` out (then another party signs and this one waits).
    """
    for signers in candidate_sets(parties, threshold, request_id, attempt, live):
        if signers in tried:
            continue
        return signers if me is None or me in signers else None
    return None


def pick_run(parties: Iterable[int], threshold: int, request_id: int, attempt: int, live: Collection[int],
             runs: Mapping[tuple[int, ...], int]) -> tuple[tuple[int, ...], int] | None:
    """(signers, retry) to run now, given how often each set already ran in this attempt (`runs`).

    A live set never run comes first (`pick_signers`): after a failure with a party gone, the next
    live set. When every live set has run, the first one with runs left under MAX_SET_RETRIES runs
    again as retry r (its r-th rerun): the members of a failed set all saw it fail, so they all count
    the same r. None when nothing is left for this attempt.
    """
    first = pick_signers(parties, threshold, request_id, attempt, live, tried=set(runs))
    if first is not None:
        return first, 0
    for signers in candidate_sets(parties, threshold, request_id, attempt, live):
        if runs.get(signers, 0) < MAX_SET_RETRIES:
            return signers, runs.get(signers, 0)
    return None


def likely_signer_sets(parties: Iterable[int], threshold: int, live: Collection[int]) -> list[tuple[int, ...]]:
    """Every signer set `pick_signers` can choose first for some request while `live` are live: the first
    `threshold` live parties of each rotation start (a request's start comes from its id, so every start
    occurs). At most n sets, in the order of the starts; what presignature pools are filled for."""
    ordered = sorted(parties)
    if not 1 <= threshold <= len(ordered):
        raise ValueError(f"threshold {threshold} out of range for {len(ordered)} parties")
    found: list[tuple[int, ...]] = []
    for start in range(len(ordered)):
        alive = [p for p in ordered[start:] + ordered[:start] if p in live]
        if len(alive) >= threshold and (first := tuple(sorted(alive[:threshold]))) not in found:
            found.append(first)
    return found


def keygen_participants(parties: Iterable[int], threshold: int, live: Collection[int]) -> tuple[int, ...]:
    """Who takes part in a key generation: every live party when at least `threshold` are live, else
    every party (the DKG then waits for the absent ones as before). Sorted."""
    everyone = sorted(parties)
    alive = [p for p in everyone if p in live]
    return tuple(alive if len(alive) >= threshold else everyone)


def attempt_at(height: int, mpc_btl: int, default_btl: int, attempt_blocks: int) -> int:
    """The attempt in force at `height` for a request timing out at `mpc_btl`.

    The clock is anchored at the request's creation height, recovered as mpc_btl - default_btl (the
    chain sets mpc_btl = creation height + the default lifetime), so it needs no shared state.
    """
    created = max(0, mpc_btl - default_btl)
    return max(0, (height - created) // max(1, attempt_blocks))
