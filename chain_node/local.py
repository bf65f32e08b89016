"""Run a node as a child process on a free loopback port: for the demo, benchmarks and tests.

`kill()` is SIGKILL (no shutdown code runs), `start()` again reopens the same data directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from chain_node.genesis import Genesis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalNode:
    def __init__(
        self, directory: Path, genesis: Genesis, block_time: float = 0.1, port: int | None = None
    ) -> None:
        self.directory = directory
        self.genesis_path = directory / "genesis.json"
        self.genesis_path.write_text(genesis.to_json())
        self.data_dir = directory / "data"
        self.block_time = block_time
        self.port = port or free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log_path = directory / "node.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        command = [
            sys.executable, "-m", "chain_node.cli", "start",
            "--genesis", str(self.genesis_path), "--data-dir", str(self.data_dir),
            "--listen", self.endpoint, "--block-time", str(self.block_time),
        ]  # fmt: skip
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chain node exited early:\n{self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"chain node did not listen on {self.endpoint} within {timeout_s} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
