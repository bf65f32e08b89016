"""The controller's side of scheduled refresh: start the refresh jobs the chain height makes due.

Every controller reads the same keys from the chain and applies the same rule
(appliance/rules/lifecycle.py), so all parties start the same key's refresh in the same attempt
without talking. To keep refreshes from crowding out requests they run on one worker thread of
their own few worker threads (request jobs keep the controller's pool), at most `CONCURRENT` keys
at a time, the oldest due slot first (the same order on every controller), and a job whose attempt
has gone by while it waited is dropped rather than run late. A phase is finished for this controller
once one job of it ran to an outcome (`refreshed`, `committed`, `retired`, `waiting`): every party
then saw every report and acted on it, and a second refresh in the same period would only repeat
the work. A job that failed (a peer silent, a session aborted) is retried in the next attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from appliance.mpc_party.local_api import JobFailed, PartyClient, RefreshJob
from appliance.rules.keytypes import parse_key_type
from appliance.rules.lifecycle import RefreshSchedule, Slot, due, slot_at

log = logging.getLogger("zrkeyring.controller.lifecycle")

KEYS_REFRESH_S = 10.0  # the keyring's key list is re-read this often
CONCURRENT = 3  # refresh jobs in flight at once: a peer stuck on one key does not hold up the others


class RefreshDriver:
    """Owned by the `Controller`; `tick(height)` is its one call site."""

    def __init__(self, *, chain: Any, party: PartyClient, keyring: str, schedule: RefreshSchedule,
                 job_timeout_s: float) -> None:
        self.chain, self.party, self.keyring, self.schedule = chain, party, keyring, schedule
        self.job_timeout_s = job_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=CONCURRENT, thread_name_prefix="refresh")
        self._keys: dict[int, Any] = {}
        self._keys_read = float("-inf")
        self._started: set[tuple[int, int, str, int]] = set()  # (key, period, phase, attempt)
        self._finished: set[tuple[int, int, str]] = set()  # (key, period, phase)
        self._running: set[int] = set()  # key ids with a job queued or running
        self._lock = threading.Lock()
        self.outcomes: dict[str, int] = {}

    def tick(self, height: int) -> None:
        if not self.schedule.enabled:
            return
        if time.monotonic() - self._keys_read >= KEYS_REFRESH_S:
            self._read_keys()
            self._forget_before(height // self.schedule.period_blocks - 2)
        for slot in due(self.schedule, self.keyring, sorted(self._keys), height):
            mark = (slot.key_id, slot.period, slot.phase)
            with self._lock:
                if len(self._running) >= CONCURRENT:
                    return
                if mark in self._finished or (*mark, slot.attempt) in self._started \
                        or slot.key_id in self._running:
                    continue
                self._started.add((*mark, slot.attempt))
                self._running.add(slot.key_id)
            self._pool.submit(self._run, self._keys[slot.key_id], slot)

    def _forget_before(self, period: int) -> None:
        """Slots of periods long gone need no memory (a key's period index lags height // period by at
        most one)."""
        with self._lock:
            self._started = {m for m in self._started if m[1] >= period}
            self._finished = {m for m in self._finished if m[1] >= period}

    def _read_keys(self) -> None:
        try:
            keys = self.chain.keys()
        except Exception as exc:  # the chain may be unreachable for a while: retry next time
            log.warning("refresh: cannot list the keyring's keys: %s", exc)
            return
        self._keys = {k.id: k for k in keys if k.keyring_addr == self.keyring and parse_key_type(k.type)}
        self._keys_read = time.monotonic()

    def _run(self, key: Any, slot: Slot) -> None:
        try:
            current = slot_at(self.schedule, self.keyring, slot.key_id, self.chain.latest_height())
            if current is None or current.attempt != slot.attempt or current.phase != slot.phase:
                return  # its attempt went by while queued: the next tick starts the current one
            job = RefreshJob(key.id, key.type, bytes(key.public_key), slot.period, slot.phase, slot.attempt)
            outcome = self.party.run(job, timeout=self.job_timeout_s)
            self.outcomes[outcome.decode()] = self.outcomes.get(outcome.decode(), 0) + 1
            self._finished.add((slot.key_id, slot.period, slot.phase))  # any outcome: the phase did its work
            log.info("refresh of key %d (period %d, %s, attempt %d): %s", key.id, slot.period, slot.phase,
                     slot.attempt, outcome.decode(), extra={"key_id": key.id})
        except JobFailed as exc:
            log.warning("refresh of key %d (period %d, %s, attempt %d) failed: %s", key.id, slot.period,
                        slot.phase, slot.attempt, exc, extra={"key_id": key.id})
        except Exception:
            log.exception("refresh of key %d: unexpected error", key.id)
        finally:
            with self._lock:
                self._running.discard(slot.key_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
