"""Run a node as a child process on a free loopback port: for the demo, benchmarks and tests.

`kill()` is SIGKILL (no shutdown code runs), `start()` again reopens the same data directory.
With `tls` (certificate and key files) the node serves TLS only; `tls = None` before a `start()`
brings the same node back in plaintext.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chain_node.genesis import Genesis

ROOT = Path(__file__).resolve().parent.parent


LISTEN_PORTS_FROM = 10000  # chosen listen ports lie between this and the kernel's ephemeral range


def ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (and to bind(0))."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """A base port with `count` consecutive ports free on 127.0.0.1, below the ephemeral range.

    Why below: a port is chosen here and bound by a daemon seconds later. A port from the ephemeral
    range (what bind(0) returns) can meanwhile be taken as the source port of any outgoing connection
    on the machine, and the test suite's parallel workers make gRPC connections all the time: a party
    daemon then failed to start with "Address already in use". The kernel never hands out ports below
    its ephemeral range by itself, so there only another chooser like this one can collide."""
    high = ephemeral_low() - count
    for _ in range(200):
        base = LISTEN_PORTS_FROM + secrets.randbelow(max(1, high - LISTEN_PORTS_FROM))
        if all(port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1 below {high + count}")


@dataclass(frozen=True)
class NodeTls:
    """The PEM files a TLS node serves with, and the CA a client pins to reach it."""

    cert: Path
    key: Path
    ca: Path

    def ca_pem(self) -> bytes:
        return self.ca.read_bytes()


class LocalNode:
    def __init__(
        self, directory: Path, genesis: Genesis, block_time: float = 0.1, port: int | None = None,
        tls: NodeTls | None = None, host: str = "127.0.0.1",
    ) -> None:
        self.directory = directory
        self.genesis_path = directory / "genesis.json"
        self.genesis_path.write_text(genesis.to_json())
        self.data_dir = directory / "data"
        self.block_time = block_time
        self.port = port or free_port()
        self.host = host  # loopback, or an address of a bench's network namespace lab
        self.endpoint = f"{host}:{self.port}"
        self.log_path = directory / "node.log"
        self.tls = tls
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        command = [
            sys.executable, "-m", "chain_node.cli", "start",
            "--genesis", str(self.genesis_path), "--data-dir", str(self.data_dir),
            "--listen", self.endpoint, "--block-time", str(self.block_time),
        ]  # fmt: skip
        if self.tls is not None:
            command += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
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
                with socket.create_connection((self.host, self.port), timeout=0.2):
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


def make_dev_tls(directory: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost"),
                 days: int = 30) -> NodeTls:
    """A throwaway CA and a node certificate for `names` (IP addresses or DNS names) in `directory`.

    For the demo and tests only. The CA's private key never touches the disk (it signs the one node
    certificate in memory and is dropped), so nobody can mint a second certificate later; the node's
    key is written owner-only because the node process must read it.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"zrkeyring dev chain CA {os.getpid()}")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(node_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = NodeTls(directory / "node.pem", directory / "node.key", directory / "ca.pem")
    tls.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(node_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = node_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    fd = os.open(tls.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    return tls


def chain_sign_request(endpoint: str, msg: object, ca_pem: bytes = b"") -> None:
    """Dev only: ask the node (genesis `dev_chain_requests = true`) to create a signature request itself
    at the end of its next block, as zrChain's validation module does (see chain_node/signtx.py)."""
    import grpc
    from google.protobuf.empty_pb2 import Empty

    from chain_node.server import DEV_ADMIN_SERVICE

    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem) if ca_pem else None
    channel = grpc.secure_channel(endpoint, creds) if creds else grpc.insecure_channel(endpoint)
    try:
        call = channel.unary_unary(f"/{DEV_ADMIN_SERVICE}/ChainSignTransactionRequest",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=Empty.FromString)
        call(msg, timeout=10)
    finally:
        channel.close()
