"""Logging: journald fields on a journal socket this test owns, text fallback, PIN redaction."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.runtime import logs

ROOT = Path(__file__).resolve().parents[2]


def parse_journal(datagram: bytes) -> dict[str, str]:
    """Decode journald's native format (the inverse of encode_journal_fields)."""
    fields, rest = {}, datagram
    while rest:
        line, sep, tail = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = tail
        else:
            (size,) = struct.unpack("<Q", tail[:8])
            fields[line.decode()] = tail[8 : 8 + size].decode()
            rest = tail[8 + size + 1 :]
    return fields


@pytest.fixture
def journal(tmp_path: Path):
    path = tmp_path / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_journal_entry_has_structured_fields(journal, restore_root_logger) -> None:
    path, sock = journal
    assert logs.setup_logging("zrkeyring-party", mode="journal", journal_socket=str(path)) == "journal"
    logging.getLogger("zrkeyring.test").warning(
        "share sent to %s", "party 2", extra={"request_id": 42, "session_id": "ab12", "key_id": 7, "peer": 2}
    )
    entry = parse_journal(sock.recv(65536))
    assert entry["MESSAGE"] == "share sent to party 2"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "zrkeyring-party"
    assert entry["LOGGER"] == "zrkeyring.test"
    ids = (entry["REQUEST_ID"], entry["SESSION_ID"], entry["KEY_ID"], entry["PEER"])
    assert ids == ("42", "ab12", "7", "2")
    assert entry["CODE_FUNC"] == "test_journal_entry_has_structured_fields"


def test_journal_multiline_and_exception(journal, restore_root_logger) -> None:
    path, sock = journal
    logs.setup_logging(mode="journal", journal_socket=str(path))
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed\nbadly")
    entry = parse_journal(sock.recv(65536))
    assert entry["MESSAGE"].startswith("failed\nbadly\nTraceback")
    assert "ValueError: boom" in entry["MESSAGE"]
    assert entry["PRIORITY"] == "3"
    assert "REQUEST_ID" not in entry


def test_pin_never_reaches_the_journal(journal, restore_root_logger) -> None:
    path, sock = journal
    logs.setup_logging(mode="journal", journal_socket=str(path))
    logs.register_secret("upin-0123456789")
    log = logging.getLogger("x")
    log.info("read upin-0123456789 from file", extra={"peer": "upin-0123456789"})
    log.info('config: {"so_pin": "12345678", pin = abcd, user-pin: zz9, pin_file = /etc/zrkeyring/pin}')
    first, second = parse_journal(sock.recv(65536)), parse_journal(sock.recv(65536))
    assert first["MESSAGE"] == "read [redacted] from file" and first["PEER"] == "[redacted]"
    assert "12345678" not in second["MESSAGE"] and "abcd" not in second["MESSAGE"]
    assert "zz9" not in second["MESSAGE"]
    assert "pin_file = /etc/zrkeyring/pin" in second["MESSAGE"]  # a path to the PIN is not the PIN


def test_text_mode_outside_systemd() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    code = (
        "import logging; from appliance.runtime import logs\n"
        "print(logs.setup_logging())\n"
        "logging.getLogger('zrkeyring.t').info('fulfilled', extra={'request_id': 9, 'peer': 3})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.stdout.strip() == "text"
    assert result.stderr.rstrip().endswith("INFO zrkeyring.t: fulfilled [request_id=9 peer=3]")


def test_under_systemd_detection(tmp_path: Path) -> None:
    assert logs.under_systemd({}) is False
    info = os.fstat(sys.stderr.fileno())
    assert logs.under_systemd({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}) is True
    assert logs.under_systemd({"JOURNAL_STREAM": "1:2"}) is False  # some other process's journal stream


def test_bad_mode() -> None:
    with pytest.raises(ValueError):
        logs.setup_logging(mode="syslog")


def _repeat_logger(interval_s: float, clock) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.getMessage()}")

    handler = Collect()
    handler.addFilter(logs.RepeatFilter(interval_s, clock=clock))
    logger = logging.getLogger(f"zrkeyring.test.repeat.{id(lines)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, lines


def test_repeated_warnings_are_rate_limited_with_a_suppressed_count() -> None:
    now = [0.0]
    logger, lines = _repeat_logger(10.0, lambda: now[0])
    for _ in range(70):  # 7 a second for 10 s, as the controller did with the chain down
        logger.warning("chain unavailable: %s", "every endpoint failed")
        now[0] += 1 / 7
    logger.warning("chain unavailable: %s", "every endpoint failed")
    logger.warning("party %d refuses request %d", 1, 7)  # a different line is never held back
    logger.info("chain unavailable: every endpoint failed")  # INFO passes untouched
    assert lines == [
        "WARNING chain unavailable: every endpoint failed",
        "WARNING chain unavailable: every endpoint failed (69 identical line(s) suppressed in the last 10 s)",
        "WARNING party 1 refuses request 7",
        "INFO chain unavailable: every endpoint failed",
    ]


def test_setup_logging_installs_the_repeat_filter(capsys) -> None:
    logs.setup_logging("zrkeyring-test", mode="text")
    try:
        for _ in range(50):
            logging.getLogger("zrkeyring.test").warning("node down")
        assert capsys.readouterr().err.count("node down") == 1
    finally:
        logging.getLogger().handlers.clear()


def test_a_failing_controller_tick_logs_one_line_not_a_traceback_per_tick(tmp_path: Path, capsys,
                                                                         restore_root_logger) -> None:
    """During disk errors the controller's loop logged a full traceback every 100 ms. Now: one ERROR line
    naming the error, identical repeats held back (RepeatFilter), the traceback only with -v. The fault
    is a real one: every tick reads a corrupt SQLite file."""
    import sqlite3
    import threading
    from types import SimpleNamespace

    from appliance.controller.service import Controller

    corrupt = tmp_path / "journal.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)
    ticks = []

    def tick() -> None:
        ticks.append(1)
        with sqlite3.connect(corrupt) as db:
            db.execute("SELECT * FROM entries").fetchall()

    loop = SimpleNamespace(recover=lambda: None, tick=tick, _block_unix=None,  # no block read: plain interval
                           config=SimpleNamespace(controller=SimpleNamespace(poll_interval_s=0.01)))
    loop._poll_wait = lambda interval, elapsed: Controller._poll_wait(loop, interval, elapsed)
    loop._wake = threading.Event()
    loop._pause = lambda stop, seconds: Controller._pause(loop, stop, seconds)
    logs.setup_logging("zrkeyring-controller", mode="text")
    stop = threading.Event()
    thread = threading.Thread(target=Controller.run_forever, args=(loop, stop))
    thread.start()
    threading.Event().wait(1.0)
    stop.set()
    thread.join(timeout=5)
    err = capsys.readouterr().err
    assert len(ticks) > 20
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "controller tick failed" in line]
    assert len(lines) == 1, err
    assert "ERROR" in lines[0] and "controller tick failed: DatabaseError: file is not a database" in lines[0]
