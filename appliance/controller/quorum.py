"""Which parties this controller asks to sign (or to make a key) now: the rule of attempts.py applied
to its party daemon's liveness view, plus what it already tried in the current attempt.

Each tick the controller reads the view once (`refresh`). For a signature request it runs the first
live candidate set of the attempt that it has not tried yet (`signers`); a set whose session failed is
never run again in that attempt (its session id is used up on the parties anyway), so the next tick
moves on at once to the next live set instead of waiting for the next attempt window. For a key
request every party takes part that has not been out of the view for `KEYGEN_ABSENT_S`, when at least
`threshold` have not (`keygen_parties`): a DKG waits for every participant, so a party is left out
only once its absence is settled, not while views are still filling (a controller just started, a
peer's controller not yet ticking), when controllers would each pick another participant set.

docs/architecture.md ("Choosing signers") explains why controllers need not agree on the view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from appliance.mpc_party.local_api import JobFailed, PartyClient
from appliance.rules.attempts import keygen_participants, pick_run, pick_signers

log = logging.getLogger("zrkeyring.controller")

KEYGEN_ABSENT_S = 3.0  # out of the live view this long (continuously) before keygen goes on without it


class QuorumPicker:
    """The live view of one tick and the signer sets tried per (request, attempt)."""

    def __init__(self, me: int, parties: Iterable[int], threshold: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.me, self.parties, self.threshold = me, sorted(parties), threshold
        self._clock = clock
        self.live: set[int] = set(self.parties)  # until the daemon first answers: everyone
        self._last_live = dict.fromkeys(self.parties, clock())  # everyone counts present at start
        self._runs: dict[tuple[int, int], dict[tuple[int, ...], int]] = {}  # (request, attempt) -> set -> runs
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
        now = self._clock()
        for p in self.live:
            self._last_live[p] = now
        return self.live

    def signers(self, request_id: int, attempt: int, holders: Iterable[int] | None = None,
                threshold: int | None = None) -> tuple[tuple[int, ...], int] | None:
        """(set, retry) to sign with now: the first live set not run yet in this attempt, else a rerun
        of the first live one with runs left (attempts.pick_run); None if none is left. `holders` and
        `threshold` are the key's own (controller/members.py; they differ from the roster's while a
        resharing is under way), the roster's by default."""
        runs = self._runs.get((request_id, attempt), {})
        parties = sorted(holders) if holders is not None else self.parties
        return pick_run(parties, threshold or self.threshold, request_id, attempt, self.live, runs)

    def mark_tried(self, request_id: int, attempt: int, signers: tuple[int, ...]) -> None:
        """A session with `signers` was started: its next run in this attempt is a retry."""
        runs = self._runs.setdefault((request_id, attempt), {})
        key = tuple(sorted(signers))
        runs[key] = runs.get(key, 0) + 1

    def unmark_tried(self, request_id: int, attempt: int, signers: tuple[int, ...]) -> None:
        """A job marked tried was shed before its session started: the set was not tried after all, so
        the next plan of this attempt still picks it (the quorum partner, planning alike, picks it too)."""
        runs = self._runs.get((request_id, attempt), {})
        key = tuple(sorted(signers))
        if runs.get(key, 0) > 1:
            runs[key] -= 1
        else:
            runs.pop(key, None)

    def eager(self, request_id: int, attempt: int) -> bool:
        """Whether this party is in the first live set: it posts at once, the others LATE_POST_BLOCKS
        later (for keygen and rejections, where every party has the answer)."""
        first = pick_signers(self.parties, self.threshold, request_id, attempt, self.live)
        return first is not None and self.me in first

    def keygen_parties(self, parties: Iterable[int] | None = None, threshold: int | None = None) -> tuple[int, ...]:
        """The keygen participant set (sorted): every party not settled absent, if at least t. `parties`
        and `threshold` are the chain keyring's (controller/service.py), the roster's by default."""
        now = self._clock()
        among = sorted(parties) if parties is not None else self.parties
        present = {p for p in among if now - self._last_live.get(p, float("-inf")) < KEYGEN_ABSENT_S}
        return keygen_participants(among, threshold or self.threshold, present)

    def forget(self, open_ids: set[int]) -> None:
        """Drop what was tried for requests that are no longer open."""
        for tag in [t for t in self._runs if t[0] not in open_ids]:
            del self._runs[tag]
