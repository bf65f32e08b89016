"""sd_notify: a real child process reports READY/STATUS/WATCHDOG/STOPPING on a socket this test owns."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.runtime.systemd import Notifier, socket_sender, watchdog_interval

ROOT = Path(__file__).resolve().parents[2]


def _receive_until(sock: socket.socket, wanted: str, seen: list[str], deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(data)
        if wanted in data.split("\n"):
            return
    pytest.fail(f"{wanted} not received; got {seen!r}")


def _run_child(address: str, mode: str, sock: socket.socket) -> list[str]:
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000", "PYTHONPATH": str(ROOT)}
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([sys.executable, "-m", "tests.ops.notify_child", mode], env=env, cwd=ROOT)
    seen: list[str] = []
    try:
        _receive_until(sock, "READY=1", seen)
        _receive_until(sock, "WATCHDOG=1", seen)
        _receive_until(sock, "WATCHDOG=1", seen)  # a second ping: the loop keeps feeding it
        child.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", seen)
        assert child.wait(timeout=10) == 0, "graceful SIGTERM must exit 0"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return seen


@pytest.mark.parametrize("mode", ["native", "direct"])
def test_child_lifecycle_on_path_socket(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        seen = _run_child(str(path), mode, sock)
    messages = [line for message in seen for line in message.split("\n")]
    assert "STATUS=checking config" in messages
    ready = next(m for m in seen if "READY=1" in m.split("\n"))
    assert "STATUS=serving" in ready.split("\n")
    assert any(line.startswith("MAINPID=") for line in ready.split("\n"))
    assert messages.index("STATUS=checking config") < messages.index("READY=1")
    assert "STATUS=stopping on signal" in messages


def test_child_lifecycle_on_abstract_socket() -> None:
    name = f"zrkeyring-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        seen = _run_child("@" + name, "direct", sock)
    assert any("READY=1" in m.split("\n") for m in seen)


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog(force=True) is False
    assert notifier.loop_timeout(3.0) == 3.0


def test_watchdog_interval_and_rate_limit(tmp_path: Path) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # not our pid
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    sent: list[str] = []
    notifier = Notifier(env={"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "10000000"},
                        sender=lambda m: sent.append(m) or True)
    assert notifier.loop_timeout(60.0) == 5.0
    assert notifier.watchdog() is True
    assert notifier.watchdog() is False  # within half the interval
    assert sent == ["WATCHDOG=1"]


def test_status_is_one_line() -> None:
    sent: list[str] = []
    notifier = Notifier(env={"NOTIFY_SOCKET": "/x"}, sender=lambda m: sent.append(m) or True)
    notifier.status("two\nlines")
    assert sent == ["STATUS=two lines"]


def test_send_to_missing_socket_reports_failure(tmp_path: Path) -> None:
    assert socket_sender(str(tmp_path / "absent.sock"))("READY=1") is False


def _start_waiting_child(address: str, party_socket: Path) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "PYTHONPATH": str(ROOT)}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "tests.ops.notify_child", "wait-socket", str(party_socket)],
                            env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _lines(seen: list[str]) -> list[str]:
    return [line for message in seen for line in message.split("\n")]


def test_ready_waits_for_the_readiness_check_and_says_why(tmp_path: Path) -> None:
    """Not ready: READY=1 unsent, STATUS= and the log give the reason; ready: READY=1 follows."""
    path, party_socket = tmp_path / "notify.sock", tmp_path / "party.sock"
    reason = f"not ready: party socket {party_socket} does not exist (is zrkeyring-party running?)"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        child = _start_waiting_child(str(path), party_socket)
        seen: list[str] = []
        try:
            _receive_until(sock, f"STATUS={reason}", seen)
            time.sleep(1.0)  # ten more checks: still not ready
            _drain(sock, seen)
            assert "READY=1" not in _lines(seen)
            with socket.socket(socket.AF_UNIX) as party:
                party.bind(str(party_socket))
                _receive_until(sock, "READY=1", seen)
                child.send_signal(signal.SIGTERM)
                _receive_until(sock, "STOPPING=1", seen)
                assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        stderr = child.stderr.read()
    assert f"WARNING {reason}" in stderr
    assert stderr.count(reason) == 1, "an unchanged reason is logged once, not at every check"
    ready = next(m for m in seen if "READY=1" in m.split("\n"))
    assert "STATUS=serving" in ready.split("\n")


def test_stop_before_ready_never_sends_ready(tmp_path: Path) -> None:
    path, party_socket = tmp_path / "notify.sock", tmp_path / "party.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        child = _start_waiting_child(str(path), party_socket)
        seen: list[str] = []
        try:
            _receive_until(sock, f"STATUS=not ready: party socket {party_socket} does not exist "
                                 "(is zrkeyring-party running?)", seen)
            child.send_signal(signal.SIGTERM)
            _receive_until(sock, "STOPPING=1", seen)
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stderr.close()
    assert "READY=1" not in _lines(seen)


def _drain(sock: socket.socket, seen: list[str]) -> None:
    sock.settimeout(0.05)
    while True:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            return
