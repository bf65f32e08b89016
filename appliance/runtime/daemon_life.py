"""The life of a daemon process under systemd (or a terminal): ready, watchdog, graceful stop.

Both daemons call `serve_until_signalled` once their start-up checks (config, HSM login, listeners)
have passed. READY=1 then waits for the daemon's readiness check (appliance/runtime/readiness.py:
chain reachable with the configured chain id, party socket present, TLS material valid), so READY=1
means "really serving"; until then STATUS= and the log say why not. The main thread then only feeds the
watchdog, refreshes /readyz and waits for SIGTERM/SIGINT; the work runs on the daemons' own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from appliance.runtime.metrics_http import Health
from appliance.runtime.readiness import Check
from appliance.runtime.systemd import Notifier, stop_on_signals

log = logging.getLogger("zrkeyring")

READY_RETRY_S = 2.0  # how often a daemon that is not ready checks again
READY_RECHECK_S = 10.0  # how often a ready daemon refreshes /readyz
NOT_READY_LOG_S = 30.0  # an unchanged "not ready" is logged again this often


def check_now(readiness: Check | None) -> list[str]:
    """The readiness reasons; a check that raises is itself a reason (never a crash of the main loop)."""
    if readiness is None:
        return []
    try:
        return list(readiness())
    except Exception as exc:  # noqa: BLE001 - reported as "not ready", with the cause
        return [f"readiness check failed: {type(exc).__name__}: {exc}"]


def wait_until_ready(notifier: Notifier, stopping: threading.Event, readiness: Check | None,
                     health: Health, retry_s: float = READY_RETRY_S) -> bool:
    """Check readiness until it passes (True) or a stop signal arrives first (False). Meanwhile STATUS=
    and the log say "not ready: <reasons>" (logged on each change, and every NOT_READY_LOG_S otherwise)."""
    last_text, last_logged = "", float("-inf")
    while True:
        reasons = check_now(readiness)
        health.update(reasons)
        if not reasons:
            return True
        text = "not ready: " + "; ".join(reasons)
        notifier.status(text)
        if text != last_text or time.monotonic() - last_logged >= NOT_READY_LOG_S:
            log.warning("%s", text)
            last_text, last_logged = text, time.monotonic()
        notifier.watchdog()
        if stopping.wait(notifier.loop_timeout(retry_s)):
            return False


def serve_until_signalled(ready_status: str, stop: Callable[[], None],
                          status: Callable[[], str] | None = None, tick_s: float = 1.0,
                          health: Health | None = None, readiness: Check | None = None,
                          retry_s: float = READY_RETRY_S, recheck_s: float = READY_RECHECK_S,
                          after_ready: Check | None = None) -> None:
    """Wait for `readiness`, announce READY=1, keep the watchdog fed, and on SIGTERM/SIGINT call `stop`
    and return. Without a check the daemon is ready at once (the component demos). `after_ready` adds
    reasons only once READY=1 was sent (drain mode: a daemon restarted while drained must still start,
    and then reports "drained" until `zrkeyring drain off`)."""
    notifier = Notifier()
    stopping = stop_on_signals()
    health = health or Health()
    if wait_until_ready(notifier, stopping, readiness, health, retry_s):
        notifier.ready(ready_status)
        log.info("%s", ready_status)
        combined = readiness if after_ready is None else _both(readiness, after_ready)
        _serve(notifier, stopping, combined, health, status, tick_s, recheck_s)
    notifier.stopping("stopping: finishing open work")
    stop()
    log.info("stopped")


def _both(first: Check | None, second: Check) -> Check:
    return lambda: check_now(first) + check_now(second)


def _serve(notifier: Notifier, stopping: threading.Event, readiness: Check | None, health: Health,
           status: Callable[[], str] | None, tick_s: float, recheck_s: float) -> None:
    """The main loop after READY=1: watchdog, STATUS=, and /readyz refreshed every `recheck_s`."""
    next_check = time.monotonic() + recheck_s
    while not stopping.wait(notifier.loop_timeout(tick_s)):
        notifier.watchdog()
        reasons: list[str] = list(health.reasons)
        if readiness is not None and time.monotonic() >= next_check:
            reasons = check_now(readiness)
            if reasons and health.ready:
                log.warning("no longer ready: %s", "; ".join(reasons))
            elif not reasons and not health.ready:
                log.info("ready again")
            health.update(reasons)
            next_check = time.monotonic() + recheck_s
        if reasons:
            notifier.status("degraded: " + "; ".join(reasons))
        elif status is not None:
            notifier.status(status())
