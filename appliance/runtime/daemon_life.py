"""The life of a daemon process under systemd (or a terminal): ready, watchdog, graceful stop.

Both daemons call `serve_until_signalled` once their start-up checks (config, HSM login, listeners)
have passed, so READY=1 means "really serving". The main thread then only feeds the watchdog and
waits for SIGTERM/SIGINT; the work runs on the daemons' own threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.runtime.metrics_http import Health
from appliance.runtime.systemd import Notifier, stop_on_signals

log = logging.getLogger("zrkeyring")


def serve_until_signalled(ready_status: str, stop: Callable[[], None],
                          status: Callable[[], str] | None = None, tick_s: float = 1.0,
                          health: Health | None = None) -> None:
    """Announce readiness, keep the watchdog fed, and on SIGTERM/SIGINT call `stop` and return."""
    notifier = Notifier()
    stopping = stop_on_signals()
    notifier.ready(ready_status)
    if health is not None:
        health.update([])
    log.info("%s", ready_status)
    while not stopping.wait(notifier.loop_timeout(tick_s)):
        notifier.watchdog()
        if status is not None:
            notifier.status(status())
    notifier.stopping("stopping: finishing open work")
    stop()
    log.info("stopped")
