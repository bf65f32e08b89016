"""Mutual-TLS gRPC between parties: one raw-bytes method, envelopes in, small acks out.

There are no protobuf stubs: `/zrkeyring.party.v1.Peer/Deliver` takes an encoded `Envelope` and answers
an `Ack` (accepted, or the gate's drop reason); `/zrkeyring.party.v1.Peer/Ping` takes nothing and answers
a `Pong` (whether this party's controller is active), for the liveness view (liveness.py).
Both ends present certificates from the cluster CA (`zrkeyring cluster init`); the server requires a
client certificate, reads the peer's CN (`party-<i>`) from the TLS auth context, checks it against the
roster's pinned certificate for party i, and hands the envelope to the `Gate` with that identity, so a
peer cannot speak as another party even holding a leaked identity key. The client dials each peer with
the TLS target name `party-<j>`, so it also knows which party answered.

The peer port is reachable before anyone has authenticated, so the server bounds what a stranger can
hold (docs/transport.md, "Limits"): at most `max_connections` TCP connections at once (gRPC closes
any further one right after accept), a TLS handshake must finish within `handshake_timeout_s`, dead
connections are found by keepalive pings, at most `max_concurrent_rpcs` calls run at once, and no
message may exceed the largest payload the gate could accept (`limits.largest_payload`).

Failure is explicit: a peer that is down or refuses the handshake raises `PeerUnavailable` after a
bounded number of attempts within the send timeout, never a hang.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.cluster.ca import party_cn, party_index_from_cn
from appliance.cluster.sealkey import KEY_FILE, SEALED_FILE, Sealer, unseal_tls_key
from appliance.mpc_party.envelope import DropReason, Envelope, Gate, Verdict
from appliance.mpc_party.limits import largest_payload
from appliance.mpc_party.protocols.wire import ProtocolAbort, Reader, Writer
from appliance.rules.roster import Roster
from appliance.runtime.errors import ConfigError, UserError
from chain_client.channels import RECONNECT_OPTIONS

log = logging.getLogger(__name__)

SERVICE = "zrkeyring.party.v1.Peer"
DELIVER = f"/{SERVICE}/Deliver"
PING = f"/{SERVICE}/Ping"
PONG_VERSION = 1
MAX_MESSAGE = largest_payload() + 4096  # the largest payload the gate may accept, plus the envelope
ACK_VERSION = 1
# RESOURCE_EXHAUSTED: the server is at MAX_CONCURRENT_RPCS; back off and try again like UNAVAILABLE.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    *RECONNECT_OPTIONS,
]


# Server-side limits. The cap counts every connection, authenticated or not, so it is sized far
# above what the cluster needs (each peer keeps one channel) and far below the descriptor limit:
# LimitNOFILE in packaging/debian/units is 8192, and a daemon run with systemd's default soft limit
# of 1024 still has hundreds of descriptors left for the HSM, SQLite, sockets and the metrics server.
MAX_CONNECTIONS = 256
HANDSHAKE_TIMEOUT_S = 5.0
MAX_CONCURRENT_RPCS = 256  # queued + running; x 132 KiB max message = 33 MiB worst case
MAX_STREAMS_PER_CONNECTION = 32
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000


def server_options(max_connections: int = MAX_CONNECTIONS,
                   handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S) -> list[tuple[str, Any]]:
    """gRPC core channel arguments of the peer server; see the module docstring for why each."""
    if max_connections < 1 or handshake_timeout_s <= 0:
        raise UserError(f"peer server limits must be positive (connections {max_connections}, "
                        f"handshake timeout {handshake_timeout_s} s)")
    return [
        *_CHANNEL_OPTIONS,
        # No SO_REUSEPORT: a second daemon on the same address must fail, not silently share the port.
        ("grpc.so_reuseport", 0),
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.server_handshake_timeout_ms", int(handshake_timeout_s * 1000)),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]


class PeerUnavailable(UserError):
    """A peer could not be reached (down, unreachable, or TLS handshake refused) within the timeout."""


@dataclass(frozen=True)
class TlsCredentials:
    """This party's transport credential: the cluster CA, its certificate and its TLS key (PEM)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_bundle(cls, directory: str | Path, sealer: Sealer | None = None) -> TlsCredentials:
        """Read ca.pem, party.pem and the TLS key from a `cluster init` party directory: the HSM-sealed
        `party.key.sealed` when there is one (unsealed with `sealer`), else the plaintext `party.key`."""
        directory = Path(directory)
        try:
            ca, cert = (directory / "ca.pem").read_bytes(), (directory / "party.pem").read_bytes()
            if (directory / SEALED_FILE).exists():
                if (directory / KEY_FILE).exists():  # a rotation's phase 2 copied a new key: not sealed yet
                    raise UserError(f"TLS bundle {directory}: both {KEY_FILE} and {SEALED_FILE} are there; run "
                                    f"`zrkeyring cluster seal-key --bundle-dir {directory} --config ...` first")
                if sealer is None:
                    raise UserError(f"TLS bundle {directory}: the key is sealed but no HSM was given")
                return cls(ca, cert, unseal_tls_key(directory, sealer))
            return cls(ca, cert, (directory / KEY_FILE).read_bytes())
        except OSError as exc:
            raise UserError(f"TLS bundle {directory}: {exc.strerror}: {exc.filename}") from None

    def __repr__(self) -> str:
        return "TlsCredentials(<ca>, <cert>, <key redacted>)"


@dataclass(frozen=True)
class Ack:
    """The server's answer to one delivery."""

    accepted: bool
    reason: str = ""

    def encode(self) -> bytes:
        return Writer().u8(ACK_VERSION).u8(1 if self.accepted else 0).var(self.reason.encode()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        r = Reader(data)
        if r.u8() != ACK_VERSION:
            raise ProtocolAbort("unsupported ack version")
        accepted, reason = r.u8() == 1, r.var(256).decode("ascii", errors="replace")
        r.finish()
        return cls(accepted, reason)

    @classmethod
    def of(cls, verdict: Verdict) -> Ack:
        return cls(verdict.accepted, verdict.reason.value if verdict.reason else "")


# --- server -----------------------------------------------------------------------------------------


class PeerServer:
    """Serves `Deliver` for one party; every envelope goes through `gate`."""

    def __init__(
        self,
        gate: Gate,
        listen: str,
        tls: TlsCredentials,
        pinned_certs: Mapping[int, bytes] | None = None,
        workers: int = 8,
        *,
        max_connections: int = MAX_CONNECTIONS,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        controller_active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.gate = gate
        self.listen = listen
        self.controller_active = controller_active  # what a Pong says; the daemon sets its liveness here
        # A roster certificate file may hold several PEM certificates (old and new during a rotation,
        # docs/operations.md "Certificate rotation"): any of them is accepted for that party.
        self._pinned = {i: _cert_ders(pem) for i, pem in (pinned_certs or {}).items()}
        self._server = grpc.server(ThreadPoolExecutor(max_workers=workers),
                                   options=server_options(max_connections, handshake_timeout_s),
                                   maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Deliver": grpc.unary_unary_rpc_method_handler(self._deliver),
                      "Ping": grpc.unary_unary_rpc_method_handler(self._ping)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        creds = grpc.ssl_server_credentials(
            [(tls.key_pem, tls.cert_pem)], root_certificates=tls.ca_pem, require_client_auth=True
        )
        try:
            self.port = self._server.add_secure_port(listen, creds)
        except RuntimeError as exc:
            raise UserError(f"cannot listen on {listen}: {exc}") from None
        if not self.port:
            raise UserError(f"cannot listen on {listen} (address in use or not local)")

    @classmethod
    def from_roster(cls, roster: Roster, me: int, gate: Gate, tls: TlsCredentials,
                    listen: str | None = None, **limits: Any) -> PeerServer:
        """Listen on our roster address (or `listen`), pinning every peer's roster certificate."""
        pinned = {}
        for p in roster.parties:
            try:
                pinned[p.index] = roster.tls_cert_path(p.index).read_bytes()
            except OSError as exc:
                raise ConfigError(f"{p.name}.tls_cert: {exc.filename}: {exc.strerror}") from None
        return cls(gate, listen or roster.party(me).address, tls, pinned, **limits)

    def start(self) -> PeerServer:
        self._server.start()
        log.info("party %d serving %s on %s", self.gate.me, DELIVER, self.listen)
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> PeerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tls_party(self, context: grpc.ServicerContext) -> tuple[int, str]:
        """The party the client's certificate names, and why it does not count ("" when it is the
        roster's pinned certificate of that party). Aborts the call for a certificate of no party."""
        auth = context.auth_context()
        cns = auth.get("x509_common_name") or []
        tls_party = party_index_from_cn(cns[0].decode("ascii", errors="replace")) if len(cns) == 1 else None
        if tls_party is None:
            # Only reachable with a CA-signed certificate that is not a party's: refuse outright.
            self.gate.drop(DropReason.PEER_MISMATCH, f"TLS peer CN {cns!r} is not a party")
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "client certificate is not a party certificate")
        pinned = self._pinned.get(tls_party)
        if pinned is not None:
            presented = auth.get("x509_pem_cert") or [b""]
            if _cert_der(presented[0]) not in pinned:
                return tls_party, f"party-{tls_party} certificate is not the roster's"
        return tls_party, ""

    def _deliver(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        tls_party, mismatch = self._tls_party(context)
        if mismatch:
            return Ack.of(self.gate.drop(DropReason.PEER_MISMATCH, mismatch)).encode()
        return Ack.of(self.gate.offer(request, tls_party=tls_party)).encode()

    def _ping(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Answer a roster peer's liveness ping; a stranger (or a party with another certificate) is
        refused, so a ping cannot tell it whether our controller is up."""
        tls_party, mismatch = self._tls_party(context)
        if not mismatch and not self.gate.knows(tls_party):
            mismatch = f"party-{tls_party} is not in the roster"
        if mismatch or request:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, mismatch or "a ping carries no body")
        return encode_pong(self.controller_active())


def encode_pong(controller_active: bool) -> bytes:
    return Writer().u8(PONG_VERSION).u8(1 if controller_active else 0).getvalue()


def decode_pong(data: bytes) -> bool:
    """Whether the pinged party's controller is active; ProtocolAbort on anything malformed."""
    r = Reader(data)
    if r.u8() != PONG_VERSION:
        raise ProtocolAbort("unsupported pong version")
    flag = r.u8()
    r.finish()
    if flag > 1:
        raise ProtocolAbort("pong flag is not 0 or 1")
    return flag == 1


def _cert_ders(pem: bytes) -> frozenset[bytes]:
    """DER of every certificate in a PEM file (nothing if it holds none that parse)."""
    try:
        return frozenset(c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem))
    except ValueError:
        return frozenset()


def _cert_der(pem: bytes) -> bytes:
    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    except ValueError:
        return b""


# --- client -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    index: int
    address: str


class PeerClient:
    """One TLS channel per peer; `send` retries transient failures with backoff inside `timeout`."""

    def __init__(
        self,
        peers: Mapping[int, str],
        tls: TlsCredentials,
        *,
        timeout: float = 3.0,
        attempts: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._creds = grpc.ssl_channel_credentials(
            root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem
        )
        self._peers = {index: Peer(index, address) for index, address in peers.items()}
        self._channels: dict[int, grpc.Channel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_roster(cls, roster: Roster, me: int, tls: TlsCredentials, **kwargs: Any) -> PeerClient:
        return cls({p.index: p.address for p in roster.parties if p.index != me}, tls, **kwargs)

    def _channel(self, index: int) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(index)
            if channel is None:
                peer = self._peers.get(index)
                if peer is None:
                    raise UserError(f"party {index} is not a peer here (peers: {sorted(self._peers)})")
                options = [*_CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", party_cn(index))]
                channel = grpc.secure_channel(peer.address, self._creds, options=options)
                self._channels[index] = channel
        return channel

    def _stub(self, index: int) -> grpc.UnaryUnaryMultiCallable:
        return self._channel(index).unary_unary(DELIVER)  # no serializers: raw bytes both ways

    def ping(self, index: int, timeout: float) -> bool:
        """One liveness ping of party `index`: whether its controller is active. Raises PeerUnavailable
        if it does not answer within `timeout` (no retry: the next ping is the retry)."""
        try:
            return decode_pong(self._channel(index).unary_unary(PING)(b"", timeout=timeout))
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            failure = PeerUnavailable(f"party {index}: {code.name}")
            # UNAVAILABLE: no connection (refused, or reconnect backoff after a refusal): the daemon is
            # gone; DEADLINE_EXCEEDED: connected but slow, e.g. a host under load
            failure.refused = code == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            raise failure from None
        except ProtocolAbort as exc:
            raise PeerUnavailable(f"party {index} sent a malformed pong: {exc.reason}") from None

    def send(self, index: int, envelope: Envelope | bytes, timeout: float | None = None,
             retry_not_open: bool = False) -> Ack:
        """Deliver to party `index`; returns its Ack, or raises PeerUnavailable within `timeout`.

        Transport failures (peer down, handshake refused) are retried `attempts` times with doubling
        backoff. With `retry_not_open`, a `session_not_open` answer (the peer's controller has not yet
        seen the request on chain) is retried too until `timeout`, and then returned as it stands.
        """
        data = envelope.encode() if isinstance(envelope, Envelope) else envelope
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        stub = self._stub(index)
        where = f"party {index} ({self._peers[index].address})"
        last, failures, not_open = "no attempt made", 0, None
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                ack = Ack.decode(stub(data, timeout=remaining))
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                last = f"{code.name}: {exc.details()}"  # type: ignore[attr-defined]
                if code not in _RETRYABLE:
                    raise PeerUnavailable(f"{where} refused: {last}") from None
                failures += 1
                if failures >= self.attempts:
                    break
                pause = self.backoff * 2 ** (failures - 1)
            except ProtocolAbort as exc:
                raise PeerUnavailable(f"{where} sent a malformed ack: {exc.reason}") from None
            else:
                if not (retry_not_open and ack.reason == DropReason.SESSION_NOT_OPEN.value):
                    return ack
                not_open, pause = ack, self.backoff
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        if not_open is not None and failures < self.attempts:
            return not_open
        raise PeerUnavailable(f"{where} unreachable after {failures} attempt(s) in {budget:.1f} s: {last}")

    def broadcast(self, envelope: Envelope, timeout: float | None = None) -> dict[int, Ack | PeerUnavailable]:
        """Send one envelope to every peer; a failure is reported, not raised, so the others still get it."""
        results: dict[int, Ack | PeerUnavailable] = {}
        for index in sorted(self._peers):
            try:
                results[index] = self.send(index, envelope, timeout)
            except PeerUnavailable as exc:
                results[index] = exc
        return results

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
