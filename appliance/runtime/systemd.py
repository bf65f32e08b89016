"""systemd service notifications (Type=notify) and graceful stop for the zrkeyring daemons.

Why this exists: the units are `Type=notify` with `WatchdogSec=`, so systemd considers a daemon started
only when it says READY=1 (which the daemons send after HSM login and config checks, not at exec), and
restarts it when its main loop stops sending WATCHDOG=1. STATUS= lines show up in `systemctl status`.

Messages go through systemd-python's `systemd.daemon.notify` when that package is importable, else
through a few lines writing one datagram to $NOTIFY_SOCKET (a path, or an abstract socket written as
`@name`). With NOTIFY_SOCKET unset (a terminal, a test) every call is a cheap no-op returning False.

Typical daemon use:

    notifier = Notifier()
    stop = stop_on_signals()                 # SIGTERM/SIGINT set the event; the loop winds down
    notifier.status("logging in to the HSM")
    ... HSM login, config checks ...
    notifier.ready("watching the chain")
    while not stop.wait(timeout=notifier.loop_timeout(1.0)):
        ... one unit of work ...
        notifier.watchdog()                  # rate-limited: sends at most every half interval
    notifier.stopping("finishing open sessions")
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Sender = Callable[[str], bool]


def _systemd_python_sender() -> Sender | None:
    """systemd-python's notify, if installed (it reads NOTIFY_SOCKET itself on every call)."""
    try:
        from systemd import daemon  # type: ignore[import-not-found]
    except ImportError:
        return None
    return lambda message: bool(daemon.notify(message))


def socket_sender(address: str) -> Sender:
    """A sender writing datagrams to `address` (a filesystem path, or `@name` for an abstract socket)."""
    target = "\0" + address[1:] if address.startswith("@") else address

    def send(message: str) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message.encode("utf-8"), target)
            except OSError as exc:
                log.warning("sd_notify to %s failed: %s", address, exc)
                return False
        return True

    return send


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when no watchdog is asked for.

    WATCHDOG_PID, when set, names the process the watchdog is meant for; any other process ignores it.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """One per daemon process. Reads the environment once, at construction."""

    def __init__(self, env: Mapping[str, str] | None = None, sender: Sender | None = None,
                 prefer_systemd_python: bool = True) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        self.interval = watchdog_interval(env)
        self._last_ping = float("-inf")
        if sender is not None:
            self._send: Sender | None = sender
        elif self.address is None:
            self._send = None
        else:
            # systemd-python reads os.environ, so only use it when we were given the real environment.
            native = _systemd_python_sender() if prefer_systemd_python and env is os.environ else None
            self._send = native or socket_sender(self.address)

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one message; False when not under systemd or the send failed."""
        if self._send is None:
            return False
        return self._send("\n".join(fields))

    def ready(self, status: str | None = None) -> bool:
        """Call once, after the HSM login and config checks succeeded: systemd then reports 'active'."""
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self, force: bool = False) -> bool:
        """Ping the watchdog from the main loop; sends at most once per half WatchdogSec unless forced."""
        if self.interval is None:
            return False
        now = time.monotonic()
        if not force and now - self._last_ping < self.interval:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd a stop is under way (a graceful shutdown is not mistaken for a hang)."""
        fields = ["STOPPING=1"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def loop_timeout(self, wanted: float) -> float:
        """A main-loop wait no longer than `wanted` and short enough to keep the watchdog fed."""
        if self.interval is None:
            return wanted
        return min(wanted, self.interval)


def stop_on_signals(event: threading.Event | None = None,
                    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """Make SIGTERM/SIGINT set an event instead of killing the process; returns the event.

    A daemon's main loop waits on it, then finishes open work (journal sync, session abort messages)
    before exiting with status 0, so `systemctl stop` and `restart` are clean. Main thread only.
    """
    event = event or threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        event.set()

    for signum in signals:
        signal.signal(signum, handler)
    return event


def _one_line(text: str) -> str:
    return " ".join(text.split())
