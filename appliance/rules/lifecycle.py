"""The key life-cycle rules every controller and every party derive alike from chain data.

**When a key is refreshed.** Each key has a slot in every period of `period_blocks` blocks, at an
offset taken from a hash of (keyring, key id): 100 keys spread evenly over the period instead of all
refreshing at once, so refreshes never crowd out requests. A slot has two phases:

    [start, start + window)             "refresh": sync versions, reshare to the same set, sync, commit
    [start + window, start + 2 window)  "sync":    sync versions only, commit what every party holds

The second phase is the catch-up: a party that was down or cut off when the others committed
commits there (or gives up a pending version nobody else has). Within a phase the attempt number
comes from the height (`attempt_blocks` per attempt), as for requests, and so do the dealers: a
quorum window that moves with the period and the attempt.

**What to do with a version sync** (`decide`), from every party's report of the sharings it holds
(`protocols/versionsync.py`):

- COMMIT our pending sharing when every party holds it (pending or already active): only then is
  destroying the old one safe, since every party can sign with the new one;
- RETIRE our pending sharing when some party does not hold it and nobody has it active: nobody can
  ever commit it (a commit needs every party to hold it, and a pending sharing is never handed to a
  party afterwards), so it is dead weight that would block the next refresh;
- REFRESH when every party has the same active sharing and nobody has a pending one (refresh phase
  only); parties *joining* the key (the chain added them, they hold nothing of it) must report
  nothing at all, and every holder the same threshold and holder ids, which is how a joiner learns
  the sharing it is about to receive (`agreed_sharing`);
- WAIT otherwise (e.g. we committed and a peer still has our sharing pending: its own COMMIT comes).
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from appliance.mpc_party.protocols.versionsync import NONE, Holding
from appliance.mpc_party.protocols.wire import transcript_hash
from appliance.rules.attempts import quorum

OFFSET_DOMAIN = b"zrkeyring/refresh-offset/v1"
SESSION_DOMAIN = b"zrkeyring/refresh-session/v1"
PHASE_REFRESH = "refresh"
PHASE_SYNC = "sync"


@dataclass(frozen=True)
class RefreshSchedule:
    """`period_blocks` 0 turns scheduled refresh off. Must be equal on every controller and party."""

    period_blocks: int = 0
    window_blocks: int = 30
    attempt_blocks: int = 10

    def __post_init__(self) -> None:
        if self.period_blocks and not 1 <= self.attempt_blocks <= self.window_blocks:
            raise ValueError("refresh: need 1 <= attempt_blocks <= window_blocks")
        if self.period_blocks and 2 * self.window_blocks > self.period_blocks:
            raise ValueError(f"refresh: period_blocks ({self.period_blocks}) must be at least twice "
                             f"window_blocks ({self.window_blocks})")

    @property
    def enabled(self) -> bool:
        return self.period_blocks > 0


@dataclass(frozen=True)
class Slot:
    """One key's refresh job as of one height: which period, which phase, which attempt."""

    key_id: int
    period: int
    phase: str
    start: int  # first height of this phase
    attempt: int


def slot_offset(keyring: str, key_id: int, period_blocks: int) -> int:
    """Where in each period the key's slot opens (uniform over the period, the same everywhere)."""
    digest = hashlib.sha256(OFFSET_DOMAIN + keyring.encode() + struct.pack(">Q", key_id)).digest()
    return int.from_bytes(digest[:8], "big") % period_blocks


def slot_at(schedule: RefreshSchedule, keyring: str, key_id: int, height: int) -> Slot | None:
    """The key's refresh slot open at `height`, or None between slots (or when refresh is off)."""
    if not schedule.enabled:
        return None
    offset = slot_offset(keyring, key_id, schedule.period_blocks)
    for phase, delay in ((PHASE_REFRESH, 0), (PHASE_SYNC, schedule.window_blocks)):
        since = height - offset - delay
        if since < 0:
            continue
        period, inside = divmod(since, schedule.period_blocks)
        if inside < schedule.window_blocks:
            return Slot(key_id, period, phase, height - inside, inside // schedule.attempt_blocks)
    return None


def due(schedule: RefreshSchedule, keyring: str, key_ids: list[int], height: int) -> list[Slot]:
    """Every key whose slot is open at `height`, oldest slot first (then by key id)."""
    slots = [s for k in key_ids if (s := slot_at(schedule, keyring, k, height)) is not None]
    return sorted(slots, key=lambda s: (s.start, s.key_id))


def dealers(parties: list[int], threshold: int, slot: Slot) -> list[int]:
    """The t parties that deal the refresh of this slot's attempt (rotating as attempts fail)."""
    return quorum(parties, threshold, slot.key_id, slot.period * 1000 + slot.attempt)


def refresh_session_id(chain_id: str, keyring: str, slot: Slot, step: str) -> bytes:
    """32-byte id of one step ("sync1", "reshare", "sync2") of one attempt of one slot."""
    return transcript_hash(SESSION_DOMAIN, chain_id.encode(), keyring.encode(), slot.phase.encode(),
                           struct.pack(">QQI", slot.key_id, slot.period, slot.attempt), step.encode())


class Action(enum.Enum):
    COMMIT = "commit"
    RETIRE = "retire"
    REFRESH = "refresh"
    WAIT = "wait"


def agreed_sharing(holdings: Mapping[int, Holding], joining: Collection[int] = ()) -> Holding | None:
    """The one active sharing every holder reports (same digest, threshold and holder ids, nothing
    pending anywhere), with every joiner reporting nothing and named by no holder; None otherwise."""
    held = [h for p, h in holdings.items() if p not in joining]
    if not held:
        return None
    ref = held[0]
    if ref.active == NONE or any((h.active, h.pending, h.t, h.holders) != (ref.active, NONE, ref.t, ref.holders)
                                 for h in held):
        return None
    if any(holdings[p] != Holding() or p in ref.holders for p in joining if p in holdings):
        return None
    return ref


def decide(me: int, holdings: Mapping[int, Holding], allow_refresh: bool,
           joining: Collection[int] = ()) -> Action:
    """What party `me` does after a version sync (see the module docstring); `joining` are the parties
    the resharing adds to the key (`me` may be one)."""
    mine = holdings[me]
    if mine.pending != NONE:
        if all(h.holds(mine.pending) for h in holdings.values()):
            return Action.COMMIT
        if not any(h.active == mine.pending for h in holdings.values()):
            return Action.RETIRE  # someone lacks it (else COMMIT above) and will never get it
        return Action.WAIT
    agreed = agreed_sharing(holdings, joining)
    if allow_refresh and agreed is not None and (me in joining or mine.active == agreed.active):
        return Action.REFRESH
    return Action.WAIT
