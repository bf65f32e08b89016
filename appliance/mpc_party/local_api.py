"""The party daemon's local endpoint for its own controller: gRPC over a unix socket.

Only the controller on the same host talks to it (the socket file's permissions are the access
control), so it carries plain JSON bodies on raw-bytes gRPC methods, no protobuf stubs:

    /zrkeyring.party.v1.Local/Run     request: a job (see `encode_job`)
                                      answer:  {"ok": true, "result": hex}
                                            or {"ok": false, "error": str, "retryable": bool,
                                                "culprit": int | null, "missing": [int]}
    /zrkeyring.party.v1.Local/Status  answer:  {"party": int, "identity_key": hex, "chain_address": str,
                                                "peers": {index: bool}, "hsm": str, "sessions": int}
    /zrkeyring.party.v1.Local/Keys    answer:  {"keys": [{"public_key": hex, "key_type": str, "version": int,
                                                "pending_version": int, "threshold": int, "parties": [int],
                                                "stored_at": float, "request_id": int}]}
                                      (this party's shares, no secret; `parties` are the key's
                                      holders, from which the controller takes its signing quorums)

`retryable` tells the controller whether another attempt (with the next quorum) may succeed: a peer
that did not answer in time is retryable; a request the chain does not hold is not.

This module is the contract between the two daemons: the controller imports it and nothing else of
the party package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from appliance.runtime.paths import ensure_dir

# --- the jobs a controller asks for (the contract between the two daemons) -----------------------


@dataclass(frozen=True)
class KeygenJob:
    request_id: int
    key_type: str
    parties: tuple[int, ...]
    threshold: int
    attempt: int = 0

    @property
    def kind(self) -> str:
        return "key"


@dataclass(frozen=True)
class SignJob:
    request_id: int
    key_type: str
    key_id: int
    public_key: bytes
    data: bytes
    signers: tuple[int, ...]
    attempt: int = 0

    @property
    def kind(self) -> str:
        return "sign"


@dataclass(frozen=True)
class RefreshJob:
    """Refresh one key in its scheduled slot (appliance/rules/lifecycle.py): version sync, resharing to
    the same set, version sync, commit. `key_id` is the chain's key id; the party re-derives the slot
    from the chain height and refuses one that is not open."""

    key_id: int
    key_type: str
    public_key: bytes
    period: int
    phase: str
    attempt: int = 0

    @property
    def kind(self) -> str:
        return "refresh"


Job = KeygenJob | SignJob | RefreshJob


def encode_job(job: Job) -> bytes:
    body = asdict(job)
    for name in ("public_key", "data"):
        if name in body:
            body[name] = body[name].hex()
    return json.dumps({"kind": job.kind, **body}, sort_keys=True).encode()


def decode_job(data: bytes) -> Job:
    """Parse a job from the local API; raises ValueError with the reason on anything malformed."""
    try:
        body = json.loads(data)
        kind = body.pop("kind")
        if kind == "key":
            return KeygenJob(int(body["request_id"]), str(body["key_type"]),
                             tuple(int(p) for p in body["parties"]), int(body["threshold"]),
                             int(body.get("attempt", 0)))
        if kind == "sign":
            return SignJob(int(body["request_id"]), str(body["key_type"]), int(body["key_id"]),
                           bytes.fromhex(body["public_key"]), bytes.fromhex(body["data"]),
                           tuple(int(p) for p in body["signers"]), int(body.get("attempt", 0)))
        if kind == "refresh":
            return RefreshJob(int(body["key_id"]), str(body["key_type"]), bytes.fromhex(body["public_key"]),
                              int(body["period"]), str(body["phase"]), int(body.get("attempt", 0)))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed job: {exc}") from None
    raise ValueError(f"unknown job kind {kind!r}")


def job_log_fields(job: Job, sid: bytes | None = None) -> dict[str, Any]:
    """The structured journal fields (appliance.runtime.logs.STRUCTURED_FIELDS) of one job's log lines."""
    fields: dict[str, Any] = {} if isinstance(job, RefreshJob) else {"request_id": job.request_id}
    if sid is not None:
        fields["session_id"] = sid.hex()
    if isinstance(job, SignJob | RefreshJob):
        fields["key_id"] = job.key_id
    return fields


SERVICE = "zrkeyring.party.v1.Local"
RUN = f"/{SERVICE}/Run"
STATUS = f"/{SERVICE}/Status"
KEYS = f"/{SERVICE}/Keys"


@dataclass
class JobFailed(Exception):
    """A job did not produce a result; `retryable` says whether a new attempt could."""

    error: str
    retryable: bool = False
    culprit: int | None = None
    missing: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        blame = f" (culprit: party {self.culprit})" if self.culprit is not None else ""
        wait = f" (no answer from parties {self.missing})" if self.missing else ""
        return f"{self.error}{blame}{wait}"


RunHandler = Callable[[Job], bytes]
StatusHandler = Callable[[], dict[str, Any]]
KeysHandler = Callable[[], list[dict[str, Any]]]


def _identity(data: bytes) -> bytes:
    return data


class LocalServer:
    """Serves Run/Status on `unix:<path>`; the socket is created owner-only (0600)."""

    def __init__(self, socket_path: str | Path, run: RunHandler, status: StatusHandler,
                 workers: int = 16, keys: KeysHandler | None = None) -> None:
        self.socket_path = Path(socket_path)
        self._run, self._status, self._keys = run, status, keys or (lambda: [])
        self._server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local-api"))
        handlers = {
            "Run": grpc.unary_unary_rpc_method_handler(self._handle_run, _identity, _identity),
            "Status": grpc.unary_unary_rpc_method_handler(self._handle_status, _identity, _identity),
            "Keys": grpc.unary_unary_rpc_method_handler(self._handle_keys, _identity, _identity),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    def start(self) -> LocalServer:
        ensure_dir(self.socket_path.parent, "party.local_socket (its directory)")
        if self.socket_path.exists():
            self.socket_path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server.add_insecure_port(f"unix:{self.socket_path}")
            self._server.start()
        finally:
            os.umask(old_umask)
        return self

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()
        self.socket_path.unlink(missing_ok=True)

    def _handle_run(self, request: bytes, _context: grpc.ServicerContext) -> bytes:
        try:
            job = decode_job(request)
        except ValueError as exc:
            return _answer({"ok": False, "error": str(exc), "retryable": False})
        try:
            return _answer({"ok": True, "result": self._run(job).hex()})
        except JobFailed as exc:
            return _answer({"ok": False, "error": exc.error, "retryable": exc.retryable,
                            "culprit": exc.culprit, "missing": exc.missing})

    def _handle_status(self, _request: bytes, _context: grpc.ServicerContext) -> bytes:
        return _answer(self._status())

    def _handle_keys(self, _request: bytes, _context: grpc.ServicerContext) -> bytes:
        return _answer({"keys": self._keys()})


def _answer(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True).encode()


class PartyClient:
    """The controller's handle on its local party daemon."""

    def __init__(self, socket_path: str | Path) -> None:
        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self._run = self._method(RUN)
        self._status = self._method(STATUS)
        self._keys = self._method(KEYS)

    def _method(self, path: str) -> grpc.UnaryUnaryMultiCallable:
        return self._channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)

    def run(self, job: Job, timeout: float) -> bytes:
        """Run a job; returns its result (public key or signature) or raises JobFailed."""
        try:
            body = json.loads(self._run(encode_job(job), timeout=timeout))
        except grpc.RpcError as exc:
            raise JobFailed(f"party daemon unreachable: {exc.code().name}: {exc.details()}",
                            retryable=True) from None
        if body.get("ok"):
            return bytes.fromhex(body["result"])
        raise JobFailed(body.get("error", "unknown error"), bool(body.get("retryable")), body.get("culprit"),
                        list(body.get("missing") or []))

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self._status(b"", timeout=timeout))

    def keys(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The shares this party holds (public metadata only), for `zrkeyring keys`."""
        return list(json.loads(self._keys(b"", timeout=timeout))["keys"])

    def close(self) -> None:
        self._channel.close()
