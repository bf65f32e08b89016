"""Drain mode: a daemon stops taking new work, finishes what runs, and says "drained" in /readyz and
STATUS= so a restart or upgrade loses nothing mid-session.

The switch is a file, `<data_dir>/drain`, written by `zrkeyring drain on` and removed by `drain off`:
both daemons look at it for every new job (one stat), so no signal or socket is needed. It survives a
restart on purpose (drain on, restart or upgrade, check, drain off: like cordoning a node): a daemon
started with the switch on logs so, still sends READY=1 (the drain reasons count only after it), and
takes no work until `drain off`. While draining /readyz answers 503 with "draining: N running", then
"drained: nothing running"; systemctl status shows `degraded: drained ...`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from appliance.runtime.errors import UserError

DRAIN_FILE = "drain"
DRAINED = "drained"
log = logging.getLogger("zrkeyring")


class Drain:
    """The drain switch of one daemon, kept in its data directory."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / DRAIN_FILE

    @property
    def on(self) -> bool:
        return self.path.exists()

    def set(self, on: bool) -> None:
        try:
            if on:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640)
                os.close(fd)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot {'create' if on else 'remove'} the drain switch: "
                            f"{exc.strerror or exc} (run as the service user or root)") from None

    def warn_at_start(self) -> None:
        if self.on:
            log.warning("drain switch %s is on: no new work until `zrkeyring drain off`", self.path)


def drain_reasons(drain: Drain, running: Callable[[], int], what: str) -> list[str]:
    """Readiness reasons while draining: how much `what` still runs, or that the daemon is drained."""
    if not drain.on:
        return []
    count = running()
    if count:
        return [f"draining: {count} {what} still running, no new ones taken (zrkeyring drain off to resume)"]
    return [f"{DRAINED}: no {what} running, no new ones taken (zrkeyring drain off to resume)"]
