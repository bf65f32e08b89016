"""Keeping the local party's presignature pools warm in idle time (docs/protocols/presign-pool.md).

Which keys: the `presign_hot_keys` keys this controller most recently started a signing job for.
Which signer sets: for each, every set the rules would pick first with the current live view
(`rules.attempts.likely_signer_sets`, over the key's own holders and threshold) that includes this
party; each member's controller derives the same sets. When: only while this controller is idle
(nothing queued or running, not draining) and at most every FILL_INTERVAL_S; one fill round at a
time, on its own thread, so signing jobs never wait behind it. What: a `PresignJob` per (key, set)
asking for `presign_pool_per_key` entries; the party decides whether it fills (the set's leader) or
accepts fills (the other members) and refuses when it is itself busy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from appliance.mpc_party.local_api import JobFailed, PartyClient, PresignJob
from appliance.rules.attempts import likely_signer_sets

log = logging.getLogger("zrkeyring.controller.presign")

FILL_INTERVAL_S = 1.0  # at most one fill round started per this many seconds
FILL_JOB_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HotKey:
    key_id: int
    key_type: str
    public_key: bytes


Members = Callable[[bytes], tuple[tuple[int, ...], int] | None]  # public key -> (holders, threshold)


class PoolFiller:
    """See the module docstring. `tick(idle, live)` is called once per controller tick."""

    def __init__(self, party: PartyClient, me: int, per_key: int, hot_keys: int, members: Members,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.party, self.me, self.per_key, self.hot_keys, self.members = party, me, per_key, hot_keys, members
        self.now = now
        self._hot: OrderedDict[int, HotKey] = OrderedDict()  # key id -> key, most recently signed last
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self._last = float("-inf")
        self.rounds = 0

    @property
    def enabled(self) -> bool:
        return self.per_key > 0

    def note_sign(self, key_id: int, key_type: str, public_key: bytes) -> None:
        """A signing job was started for this key: it is hot."""
        if not self.enabled:
            return
        with self._lock:
            self._hot.pop(key_id, None)
            self._hot[key_id] = HotKey(key_id, key_type, bytes(public_key))
            while len(self._hot) > self.hot_keys:
                self._hot.popitem(last=False)

    def jobs(self, live: Collection[int]) -> list[PresignJob]:
        """The PresignJobs of one fill round: hottest key first."""
        with self._lock:
            hot = list(reversed(self._hot.values()))
        out = []
        for key in hot:
            members = self.members(key.public_key)
            if members is None:
                continue
            holders, threshold = members
            for signers in likely_signer_sets(holders, threshold, set(live) | {self.me}):
                if self.me in signers:
                    out.append(PresignJob(key.key_id, key.key_type, key.public_key, signers, self.per_key))
        return out

    def tick(self, idle: bool, live: Collection[int]) -> bool:
        """Start a fill round if idle, due, and none is running; True if one was started."""
        if not self.enabled or not idle or self.now() - self._last < FILL_INTERVAL_S:
            return False
        if self._running is not None and self._running.is_alive():
            return False
        jobs = self.jobs(live)
        if not jobs:
            return False
        self._last = self.now()
        self._running = threading.Thread(target=self._round, args=(jobs,), name="presign-fill", daemon=True)
        self._running.start()
        return True

    def _round(self, jobs: list[PresignJob]) -> None:
        """Followers' jobs first (they only arm), then the ones this party leads (they run the fills)."""
        for job in sorted(jobs, key=lambda j: min(j.signers) == self.me):
            try:
                self.party.run(job, timeout=FILL_JOB_TIMEOUT_S)
            except JobFailed as exc:
                log.debug("presign job for key %d signers %s: %s", job.key_id, list(job.signers), exc)
        self.rounds += 1
