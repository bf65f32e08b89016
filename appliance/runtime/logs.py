"""Logging set-up for the zrkeyring daemons: journald with structured fields under systemd, text otherwise.

Why: an operator chasing one request wants `journalctl -u zrkeyring-party REQUEST_ID=42` across both
daemons, which needs the ids as journal fields rather than words in a message. Callers pass them with
`extra=`:

    log.info("signature share sent", extra={"request_id": 42, "session_id": sid.hex(), "peer": 2})

Under systemd (stderr is the journal stream named by $JOURNAL_STREAM, or $INVOCATION_ID is set) each
record becomes one journal entry, written with journald's native datagram protocol: MESSAGE, PRIORITY,
SYSLOG_IDENTIFIER, LOGGER, CODE_FILE/LINE/FUNC and the fields REQUEST_ID, SESSION_ID, KEY_ID, PEER when
given. Elsewhere records are plain text lines on stderr with the same fields appended as `key=value`.

Every handler carries a `SecretFilter`: values registered with `register_secret()` (the HSM PIN, once
read) and anything written like `pin=...` / `"so_pin": "..."` are replaced by `[redacted]` before a
record reaches the journal or the terminal.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping

JOURNAL_SOCKET = "/run/systemd/journal/socket"
# extra= keys that become journal fields (and text suffixes); values are str()-ed.
STRUCTURED_FIELDS = ("request_id", "session_id", "key_id", "peer")
REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(fields)s"
MAX_MESSAGE_BYTES = 32 * 1024  # one datagram; longer messages are cut, never split

_SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b(?:so[_-]?|user[_-]?)?(?:pin|password|passphrase)\b["']?\s*[:=]\s*)   # name = / name: / "name":
    (?:"[^"]*"|'[^']*'|[^\s,;}]+)                                             # the value
    """
)
_SYSLOG_PRIORITY = ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3))


class SecretFilter(logging.Filter):
    """Redacts registered secret values and `pin=`-style assignments from messages and extra fields."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, value: str) -> None:
        if len(value) >= 4:  # shorter strings would redact ordinary words and numbers
            self._secrets.add(value)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for name in STRUCTURED_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                setattr(record, name, self.redact(str(value)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


SECRETS = SecretFilter()

REPEAT_INTERVAL_S = 10.0  # an identical warning is written at most once per this many seconds


class RepeatFilter(logging.Filter):
    """Writes an identical WARNING-or-worse line at most once per `interval_s`; the next one written
    says how many were suppressed meanwhile.

    Why: with the chain down the controller's loop warned about 7 times a second, burying everything
    else in the journal. Identical means same logger, level and rendered message, so lines that differ
    (another request id, another peer) are never held back. INFO and DEBUG pass untouched.
    """

    MAX_KEYS = 1024  # distinct messages remembered; the oldest are forgotten beyond that

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s, self._clock = interval_s, clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [last written, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        with self._lock:
            now = self._clock()
            state = self._seen.get(key)
            if state is not None and now - state[0] < self.interval_s:
                state[1] += 1
                return False
            suppressed = int(state[1]) if state is not None else 0
            self._seen.pop(key, None)
            self._seen[key] = [now, 0]
            while len(self._seen) > self.MAX_KEYS:
                self._seen.pop(next(iter(self._seen)))
        if suppressed:
            record.msg = f"{message} ({suppressed} identical line(s) suppressed in the last {self.interval_s:g} s)"
            record.args = None
        return True


def log_failure(logger: logging.Logger, what: str, exc: BaseException, **kwargs: object) -> None:
    """One ERROR line `what: Type: message` for an unexpected failure; the traceback only at DEBUG (-v).

    Why: during disk errors the controller's loop logged a full traceback every 100 ms (298 in 15 s).
    A single line is what an operator reads, and identical lines are then held back by RepeatFilter.
    """
    logger.error("%s: %s", what, describe(exc), **kwargs)  # type: ignore[arg-type]
    logger.debug("%s: traceback", what, exc_info=(type(exc), exc, exc.__traceback__))


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def register_secret(value: str) -> None:
    """Never log `value` (e.g. the HSM PIN): every zrkeyring handler replaces it with [redacted]."""
    SECRETS.add(value)


def structured_fields(record: logging.LogRecord) -> dict[str, str]:
    """The REQUEST_ID/SESSION_ID/KEY_ID/PEER fields a record carries (from `extra=`)."""
    return {name.upper(): str(getattr(record, name)) for name in STRUCTURED_FIELDS
            if getattr(record, name, None) is not None}


class TextFormatter(logging.Formatter):
    """Plain text with the structured fields appended as ` [request_id=42 peer=2]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        fields = structured_fields(record)
        record.fields = " [" + " ".join(f"{k.lower()}={v}" for k, v in fields.items()) + "]" if fields else ""
        return super().format(record)


class JournalHandler(logging.Handler):
    """Writes records to journald over its native protocol (a datagram of KEY=value fields)."""

    def __init__(self, identifier: str, socket_path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.socket_path = socket_path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_text:
                message = f"{message}\n{record.exc_text}"
            fields = {
                "MESSAGE": message[:MAX_MESSAGE_BYTES],
                "PRIORITY": str(syslog_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
                **structured_fields(record),
            }
            self._socket.sendto(encode_journal_fields(fields), self.socket_path)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._socket.close()
        super().close()


def encode_journal_fields(fields: Mapping[str, str]) -> bytes:
    """journald's native format: `KEY=value\\n`, or `KEY\\n<le64 length>value\\n` for multi-line values."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def syslog_priority(levelno: int) -> int:
    for level, priority in _SYSLOG_PRIORITY:
        if levelno <= level:
            return priority
    return 2  # CRITICAL


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """True when our stderr is the journal (JOURNAL_STREAM matches it) or systemd started us."""
    env = os.environ if env is None else env
    stream = env.get("JOURNAL_STREAM", "")
    if stream:
        try:
            info = os.fstat(sys.stderr.fileno())
            if stream == f"{info.st_dev}:{info.st_ino}":
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return bool(env.get("INVOCATION_ID")) and os.path.exists(JOURNAL_SOCKET)


def setup_logging(identifier: str = "zrkeyring", verbose: bool = False, mode: str = "auto",
                  journal_socket: str = JOURNAL_SOCKET) -> str:
    """Configure the root logger once per daemon; returns the mode used ("journal" or "text")."""
    if mode == "auto":
        mode = "journal" if under_systemd() else "text"
    if mode == "journal":
        handler: logging.Handler = JournalHandler(identifier, journal_socket)
    elif mode == "text":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(TextFormatter())
    else:
        raise ValueError(f"log mode must be auto, journal or text, not {mode!r}")
    handler.addFilter(RepeatFilter())
    handler.addFilter(SECRETS)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return mode
