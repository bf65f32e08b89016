"""This party's view of which peers can sign now: an authenticated ping on the mTLS peer channel.

Every `PING_INTERVAL_S` the daemon pings each peer (`/zrkeyring.party.v1.Peer/Ping`, same mutual TLS
and pinned certificates as envelope delivery). The answer carries one flag: whether that peer's own
controller has asked its daemon for work within `CONTROLLER_ACTIVE_S` (a controller calls `liveness`
on its local socket every tick, see `note_controller`). A peer is **live** when its last ping
succeeded within `LIVE_WINDOW_S` and its controller is active: only then will it start the sessions
its controller picks, so only then is it worth choosing as a signer.

A peer is **down** (sessions waiting for it fail at once instead of at the round deadline) when its
daemon is gone, not merely slow: the last `DOWN_FAILURES` pings found no connection (refused: a
stopped process, a host that answers with a reset) and none succeeded for `DOWN_AFTER_S`; or pings
have failed in any way (timeouts: a host that vanished without a word) for `DOWN_SILENT_S`. A daemon
starved of CPU answers late, but it does not refuse connections, so a session with it is not cut.

The pings also keep every peer channel connecting, so a peer that returns is reached within the
channel's reconnect backoff (at most 1 s, transport.py) and is live again within about a second.
Any sign of life between pings counts too (`heard`): an authenticated envelope from the peer, or
an answer to one of our deliveries, clears its failures at once. A peer that has just restarted
sends its hello before our next ping reaches it; without this, our half of the session it asked us
to join failed on the spot as "down" and left its half waiting out a whole round.
The view is local and may differ briefly between parties; docs/architecture.md ("Choosing signers")
says why that is safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

PING_INTERVAL_S = 0.5
PING_TIMEOUT_S = 1.0
LIVE_WINDOW_S = 2.5  # five ping intervals: a lost ping or a busy host does not take a peer out
CONTROLLER_ACTIVE_S = 5.0  # a controller ticks every 0.5 s by default; a slow tick must not look dead
DOWN_AFTER_S = 0.75
DOWN_FAILURES = 2
DOWN_SILENT_S = 5.0

PingFn = Callable[[int, float], bool]  # (peer, timeout) -> its controller is active; raises if unreachable
# (an exception with `refused = True` when there is no connection at all, transport.PeerClient.ping)


@dataclass
class PeerView:
    """What the last pings of one peer said."""

    last_ok: float = float("-inf")  # monotonic time of the last successful ping
    controller_active: bool = False
    failures: int = 0  # consecutive failed pings
    refusals: int = 0  # consecutive pings that found no connection
    ever_seen: bool = False
    last_heard: float = float("-inf")  # monotonic time of the last other sign of life (`heard`)


def _down(view: PeerView, now: float) -> bool:
    """See the module docstring: refused for a moment, or silent for long."""
    silent = now - max(view.last_ok, view.last_heard)
    refused = view.refusals >= DOWN_FAILURES and silent > DOWN_AFTER_S
    return refused or (view.failures >= DOWN_FAILURES and silent > DOWN_SILENT_S)


class Liveness:
    """Pings peers in the background; `live()` and `is_down()` read the latest view (thread-safe)."""

    def __init__(self, me: int, peers: Iterable[int], ping: PingFn, *,
                 on_change: Callable[[int, bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.me = me
        self._ping = ping
        self._clock = clock
        self._views = {p: PeerView() for p in sorted(set(peers)) if p != me}
        self._controller_seen = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._on_change = on_change or (lambda _peer, _live: None)
        self._reported: dict[int, bool] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._views)), thread_name_prefix="ping")
        self._thread = threading.Thread(target=self._loop, name="liveness", daemon=True)

    # --- our own controller ------------------------------------------------------------------------

    def note_controller(self) -> None:
        """Our controller asked for the view: it is ticking, so it will start the sessions it picks."""
        with self._lock:
            self._controller_seen = self._clock()

    def controller_active(self) -> bool:
        with self._lock:
            return self._clock() - self._controller_seen <= CONTROLLER_ACTIVE_S

    # --- the view ----------------------------------------------------------------------------------

    def live(self) -> set[int]:
        """Parties that can sign now: this party, and every peer answering pings with an active
        controller, and not down (so a session cut for a down peer is never retried with it)."""
        now = self._clock()
        with self._lock:
            return {self.me} | {p for p, v in self._views.items()
                                if now - v.last_ok <= LIVE_WINDOW_S and v.controller_active
                                and not _down(v, now)}

    def is_down(self, peer: int) -> bool:
        """The peer's daemon is gone (not just slow): a session waiting for it may fail now."""
        now = self._clock()
        with self._lock:
            view = self._views.get(peer)
            return view is not None and _down(view, now)

    def snapshot(self) -> dict[int, dict[str, float | bool]]:
        """Per peer: seconds since the last successful ping (None: never), controller flag, live."""
        now = self._clock()
        live = self.live()
        with self._lock:
            return {p: {"age_s": round(now - v.last_ok, 3) if v.ever_seen else None,
                        "controller_active": v.controller_active, "live": p in live}
                    for p, v in self._views.items()}

    # --- pinging -----------------------------------------------------------------------------------

    def record(self, peer: int, ok: bool, controller_active: bool = False, refused: bool = False) -> None:
        """One ping's outcome (also what tests feed in directly)."""
        with self._lock:
            view = self._views.get(peer)
            if view is None:
                return
            if ok:
                view.last_ok, view.controller_active, view.ever_seen = self._clock(), controller_active, True
                view.failures = view.refusals = 0
            else:
                view.failures += 1
                view.refusals = view.refusals + 1 if refused else 0

    def heard(self, peer: int) -> None:
        """The peer's daemon just answered or sent us an authenticated envelope: it is not down.
        It is not down again until the usual count of failed pings *and* the usual silence since this
        moment; whether it is *live* (its controller active) stays the pings' call."""
        with self._lock:
            view = self._views.get(peer)
            if view is not None:
                view.last_heard = self._clock()
                view.failures = view.refusals = 0

    def ping_all(self) -> None:
        """Ping every peer at once and record the answers (one round of the background loop)."""
        futures = {p: self._pool.submit(self._ping, p, PING_TIMEOUT_S) for p in self._views}
        for peer, future in futures.items():
            try:
                self.record(peer, True, bool(future.result()))
            except Exception as exc:  # unreachable, refused, malformed: all mean "not answering"
                log.debug("ping of party %d failed: %s", peer, exc, extra={"peer": peer})
                self.record(peer, False, refused=bool(getattr(exc, "refused", False)))
        self._report()

    def _report(self) -> None:
        live = self.live()
        for peer in self._views:
            now_live = peer in live
            if self._reported.get(peer) != now_live:
                self._reported[peer] = now_live
                log.info("party %d sees party %d %s", self.me, peer, "live" if now_live else "not live",
                         extra={"peer": peer})
                self._on_change(peer, now_live)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self.ping_all()
            except Exception:  # the monitor must outlive any one bad round
                log.exception("liveness round failed")
            self._stop.wait(max(0.0, PING_INTERVAL_S - (self._clock() - started)))

    def start(self) -> Liveness:
        if self._views:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
