"""Which parties this controller asks to sign (or to make a key) now: the rule of attempts.py applied
to its party daemon's liveness view, plus what it already tried in the current attempt.

Each tick the controller reads the view once (`refresh`). For a signature request it runs the first
live candidate set of the attempt that it has not tried yet (`signers`); a set whose session failed is
never run again in that attempt (its session id is used up on the parties anyway), so the next tick
moves on at once to the next live set instead of waiting for the next attempt window. For a key
request every live party takes part when at least `threshold` are live (`keygen_parties`).

docs/architecture.md ("Choosing signers") explains why controllers need not agree on the view.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from appliance.mpc_party.local_api import JobFailed, PartyClient
from appliance.rules.attempts import keygen_participants, pick_signers

log = logging.getLogger("zrkeyring.controller")


class QuorumPicker:
    """The live view of one tick and the signer sets tried per (request, attempt)."""

    def __init__(self, me: int, parties: Iterable[int], threshold: int) -> None:
        self.me, self.parties, self.threshold = me, sorted(parties), threshold
        self.live: set[int] = set(self.parties)  # until the daemon first answers: everyone
        self._tried: dict[tuple[int, int], set[tuple[int, ...]]] = {}
        self._unavailable = False

    def refresh(self, party: PartyClient) -> set[int]:
        """Ask the local daemon who is live (this also tells it our controller is active). If it cannot
        say, every party counts as live: jobs then fail at the daemon as they did before."""
        try:
            view = party.liveness() & set(self.parties)
        except JobFailed as exc:
            if not self._unavailable:
                log.warning("no liveness view from the party daemon (%s): assuming every party is live", exc)
            self._unavailable = True
            view = set(self.parties)
        else:
            self._unavailable = False
        if view != self.live:
            log.info("live parties now %s", sorted(view))
        self.live = view | {self.me}
        return self.live

    def signers(self, request_id: int, attempt: int) -> tuple[int, ...] | None:
        """The set to sign with now: the first live, untried candidate; None if none is left."""
        tried = self._tried.get((request_id, attempt), set())
        return pick_signers(self.parties, self.threshold, request_id, attempt, self.live, tried)

    def mark_tried(self, request_id: int, attempt: int, signers: tuple[int, ...]) -> None:
        """A session with `signers` was started: never start it again in this attempt."""
        self._tried.setdefault((request_id, attempt), set()).add(tuple(sorted(signers)))

    def eager(self, request_id: int, attempt: int) -> bool:
        """Whether this party is in the first live set: it posts at once, the others LATE_POST_BLOCKS
        later (for keygen and rejections, where every party has the answer)."""
        first = pick_signers(self.parties, self.threshold, request_id, attempt, self.live)
        return first is not None and self.me in first

    def keygen_parties(self) -> tuple[int, ...]:
        return keygen_participants(self.parties, self.threshold, self.live)

    def forget(self, open_ids: set[int]) -> None:
        """Drop what was tried for requests that are no longer open."""
        for tag in [t for t in self._tried if t[0] not in open_ids]:
            del self._tried[tag]
