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
    /zrkeyring.party.v1.Local/Liveness answer: {"live": [int], "peers": {index: {"age_s": float | null,
                                                "controller_active": bool, "live": bool}}}
    /zrkeyring.party.v1.Local/Joined  request: u64 cursor (big-endian)
                                      answer:  {"boot": hex, "next": int, "signatures": [[id, hex]]}
                                      (signatures made in sessions a peer opened, from the cursor on;
                                      joined.py: the controller posts them as the session's partner)

`Liveness` is the party's view of which parties can sign now (liveness.py); calling it also tells the
daemon that its controller is active, which its pings then report to the peers. The controller picks
its signers from it (appliance/rules/attempts.py, `pick_signers`).

`retryable` tells the controller whether another attempt (with the next quorum) may succeed: a peer
that did not answer in time is retryable; a request the chain does not hold is not.

Every body is validated before the daemon sees it (`decode_job`): a JSON object with only the known
fields, integers as JSON integers (no bools, no floats) within u64 (ids), u32 (attempt) and 1..65535
(party indices, no duplicates), hex without spaces; anything else is answered `malformed job: <field>:
<why>` (tests/ops/test_malformed_input.py feeds it generated garbage). An unexpected failure inside the
daemon (a malformed database, a disk error) is answered `party daemon error: <type>: <message>`,
retryable, and logged as one ERROR line, so the controller reports the cause instead of "unreachable".

This module is the contract between the two daemons: the controller imports it and nothing else of
the party package.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from appliance.rules.roster import MAX_INDEX
from appliance.runtime.logs import describe, log_failure
from appliance.runtime.paths import ensure_dir
from chain_client.channels import LOCAL_RECONNECT_OPTIONS

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
    retry: int = 0  # the how-manieth run of this signer set in this attempt (attempts.MAX_SET_RETRIES)

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


@dataclass(frozen=True)
class PresignJob:
    """Keep up to `count` presignature pool entries of one key for one signer set (docs/protocols/
    presign-pool.md). Sent by the controller in idle time. The set's leader (lowest index) runs fill
    sessions until its pool holds `count`; every other member accepts fills from the leader for a while
    (the controller's consent, given only when it is idle). Answered with the entries held (u16)."""

    key_id: int
    key_type: str
    public_key: bytes
    signers: tuple[int, ...]
    count: int

    @property
    def kind(self) -> str:
        return "presign"


Job = KeygenJob | SignJob | RefreshJob | PresignJob
MAX_PRESIGN_COUNT = 64  # entries per (key, signer set) one job may ask for


def encode_job(job: Job) -> bytes:
    body = asdict(job)
    for name in ("public_key", "data"):
        if name in body:
            body[name] = body[name].hex()
    return json.dumps({"kind": job.kind, **body}, sort_keys=True).encode()


MAX_JOB_BYTES = 1 << 20  # a job is a few hundred bytes; anything near this is not from our controller
U32, U64 = (1 << 32) - 1, (1 << 64) - 1
_KEYGEN_FIELDS = {"kind", "request_id", "key_type", "parties", "threshold", "attempt"}
_SIGN_FIELDS = {"kind", "request_id", "key_type", "key_id", "public_key", "data", "signers", "attempt", "retry"}
_REFRESH_FIELDS = {"kind", "key_id", "key_type", "public_key", "period", "phase", "attempt"}
_PRESIGN_FIELDS = {"kind", "key_id", "key_type", "public_key", "signers", "count"}
_HEX = frozenset("0123456789abcdefABCDEF")


def decode_job(data: bytes) -> Job:
    """Parse a job from the local API; raises ValueError with the reason on anything malformed.

    Why this strict: the body crosses a process boundary, and every field later feeds protobuf
    encoders (u64 ids), struct packing (u32 attempts, u16 party indices) and the session id. A float,
    a bool (`true` is 1 in Python), an out-of-range int or a non-object body is refused here with the
    field's name, so nothing downstream meets a value it would choke on or misread.
    """
    if len(data) > MAX_JOB_BYTES:
        raise ValueError(f"malformed job: {len(data)} bytes, at most {MAX_JOB_BYTES}")
    try:
        body = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("malformed job: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"malformed job: not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"malformed job: expected a JSON object, got {type(body).__name__}")
    kind = body.get("kind")
    if kind == "key":
        _only_fields(body, _KEYGEN_FIELDS)
        parties = _indices(body, "parties")
        return KeygenJob(_int(body, "request_id", U64), _text(body, "key_type"), parties,
                         _int(body, "threshold", len(parties), low=1), _int(body, "attempt", U32, default=0))
    if kind == "sign":
        _only_fields(body, _SIGN_FIELDS)
        return SignJob(_int(body, "request_id", U64), _text(body, "key_type"), _int(body, "key_id", U64),
                       _hex(body, "public_key"), _hex(body, "data"), _indices(body, "signers"),
                       _int(body, "attempt", U32, default=0), _int(body, "retry", U32, default=0))
    if kind == "refresh":
        _only_fields(body, _REFRESH_FIELDS)
        phase = _text(body, "phase")
        return RefreshJob(_int(body, "key_id", U64), _text(body, "key_type"), _hex(body, "public_key"),
                          _int(body, "period", U64), phase, _int(body, "attempt", U32, default=0))
    if kind == "presign":
        _only_fields(body, _PRESIGN_FIELDS)
        return PresignJob(_int(body, "key_id", U64), _text(body, "key_type"), _hex(body, "public_key"),
                          _indices(body, "signers"), _int(body, "count", MAX_PRESIGN_COUNT))
    raise ValueError(f"malformed job: unknown job kind {kind!r}"[:200])


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _only_fields(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"malformed job: unknown field {unknown[0]!r}"[:200])


def _field(body: dict[str, Any], name: str, default: Any = None) -> Any:
    if name not in body:
        if default is None:
            raise ValueError(f"malformed job: {name}: missing")
        return default
    return body[name]


def _int(body: dict[str, Any], name: str, high: int, low: int = 0, default: int | None = None) -> int:
    value = _field(body, name, default)
    if type(value) is not int:  # bool is an int subclass: `true` must not pass as 1
        raise ValueError(f"malformed job: {name}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"malformed job: {name}: must be {low}..{high}")
    return value


def _text(body: dict[str, Any], name: str) -> str:
    value = _field(body, name)
    if not isinstance(value, str) or not value.isascii() or not 0 < len(value) <= 64:
        raise ValueError(f"malformed job: {name}: expected an ASCII name of 1..64 characters")
    return value


def _hex(body: dict[str, Any], name: str) -> bytes:
    value = _field(body, name)
    if not isinstance(value, str) or len(value) % 2 or not _HEX.issuperset(value):
        raise ValueError(f"malformed job: {name}: expected an even number of hex digits")
    return bytes.fromhex(value)


def _indices(body: dict[str, Any], name: str) -> tuple[int, ...]:
    value = _field(body, name)
    if not isinstance(value, list) or not 0 < len(value) <= MAX_INDEX:
        raise ValueError(f"malformed job: {name}: expected a list of party indices")
    indices = tuple(_int({name: v}, name, MAX_INDEX, low=1) for v in value)
    if len(set(indices)) != len(indices):
        raise ValueError(f"malformed job: {name}: duplicate party index")
    return indices


def job_log_fields(job: Job, sid: bytes | None = None) -> dict[str, Any]:
    """The structured journal fields (appliance.runtime.logs.STRUCTURED_FIELDS) of one job's log lines."""
    fields: dict[str, Any] = {} if isinstance(job, RefreshJob | PresignJob) else {"request_id": job.request_id}
    if sid is not None:
        fields["session_id"] = sid.hex()
    if isinstance(job, SignJob | RefreshJob | PresignJob):
        fields["key_id"] = job.key_id
    return fields


log = logging.getLogger(__name__)

SERVICE = "zrkeyring.party.v1.Local"
RUN = f"/{SERVICE}/Run"
STATUS = f"/{SERVICE}/Status"
KEYS = f"/{SERVICE}/Keys"
LIVENESS = f"/{SERVICE}/Liveness"
SIGNATURE = f"/{SERVICE}/Signature"
JOINED = f"/{SERVICE}/Joined"


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
LivenessHandler = Callable[[], dict[str, Any]]
JoinedHandler = Callable[[int], tuple[str, int, list[tuple[int, bytes]]]]  # cursor -> (boot, next, found)


def _identity(data: bytes) -> bytes:
    return data


class LocalServer:
    """Serves Run/Status on `unix:<path>`; the socket is created owner-only (0600)."""

    def __init__(self, socket_path: str | Path, run: RunHandler, status: StatusHandler,
                 workers: int = 16, keys: KeysHandler | None = None,
                 liveness: LivenessHandler | None = None,
                 signature: Callable[[int], bytes | None] | None = None,
                 joined: JoinedHandler | None = None) -> None:
        self.socket_path = Path(socket_path)
        self._run, self._status, self._keys = run, status, keys or (lambda: [])
        self._liveness = liveness
        self._signature = signature or (lambda request_id: None)
        self._joined = joined or (lambda cursor: ("", cursor, []))
        self._server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local-api"))
        handlers = {
            "Run": grpc.unary_unary_rpc_method_handler(self._handle_run, _identity, _identity),
            "Status": grpc.unary_unary_rpc_method_handler(self._handle_status, _identity, _identity),
            "Keys": grpc.unary_unary_rpc_method_handler(self._handle_keys, _identity, _identity),
            "Liveness": grpc.unary_unary_rpc_method_handler(self._handle_liveness, _identity, _identity),
            "Signature": grpc.unary_unary_rpc_method_handler(self._handle_signature, _identity, _identity),
            "Joined": grpc.unary_unary_rpc_method_handler(self._handle_joined, _identity, _identity),
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
        except Exception as exc:  # noqa: BLE001 - the controller must hear the cause, not "unreachable"
            what = f"{job.kind} request {job.request_id}" if hasattr(job, "request_id") else f"{job.kind} job"
            log_failure(log, f"{what} failed inside the party daemon", exc, extra=job_log_fields(job))
            return _answer({"ok": False, "error": internal_error(exc), "retryable": True})

    def _handle_status(self, _request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return _answer(self._status())
        except Exception as exc:  # noqa: BLE001 - same as Run: name the cause to the caller
            log_failure(log, "status failed inside the party daemon", exc)
            context.abort(grpc.StatusCode.INTERNAL, internal_error(exc))
            raise  # not reached: abort raises

    def _handle_keys(self, _request: bytes, _context: grpc.ServicerContext) -> bytes:
        return _answer({"keys": self._keys()})

    def _handle_signature(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """The signature this party made for a signature request (u64 id, big-endian), or none."""
        if len(request) != 8:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected an 8-byte request id")
        made = self._signature(int.from_bytes(request, "big"))
        return _answer({"signature": made.hex() if made is not None else None})

    def _handle_joined(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Signatures made in joined sessions from a cursor on (u64, big-endian; joined.py)."""
        if len(request) != 8:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected an 8-byte cursor")
        boot, cursor, found = self._joined(int.from_bytes(request, "big"))
        return _answer({"boot": boot, "next": cursor,
                        "signatures": [[request_id, signature.hex()] for request_id, signature in found]})

    def _handle_liveness(self, _request: bytes, context: grpc.ServicerContext) -> bytes:
        if self._liveness is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this party keeps no liveness view")
        return _answer(self._liveness())


def internal_error(exc: BaseException) -> str:
    """One line naming an unexpected failure inside the party daemon (e.g. a malformed database).

    Why: before, any such exception escaped the gRPC handler, the controller saw "party daemon
    unreachable: UNKNOWN", counted the party as down and retried forever without saying why.
    """
    return f"party daemon error: {describe(exc)}"



def _answer(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True).encode()


class PartyClient:
    """The controller's handle on its local party daemon."""

    def __init__(self, socket_path: str | Path) -> None:
        # A restarted party daemon is reached again within about a second (chain_client/channels.py).
        self._channel = grpc.insecure_channel(f"unix:{socket_path}", options=LOCAL_RECONNECT_OPTIONS)
        self._run = self._method(RUN)
        self._status = self._method(STATUS)
        self._keys = self._method(KEYS)
        self._liveness = self._method(LIVENESS)
        self._signature = self._method(SIGNATURE)
        self._joined = self._method(JOINED)

    def _method(self, path: str) -> grpc.UnaryUnaryMultiCallable:
        return self._channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)

    def run(self, job: Job, timeout: float) -> bytes:
        """Run a job; returns its result (public key or signature) or raises JobFailed."""
        try:
            answer = self._run(encode_job(job), timeout=timeout)
        except grpc.RpcError as exc:
            raise JobFailed(_rpc_failure(exc), retryable=True) from None
        return _read_answer(answer)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The daemon's status; raises JobFailed if it cannot be had (unreachable or an internal error)."""
        try:
            body = json.loads(self._status(b"", timeout=timeout))
        except grpc.RpcError as exc:
            raise JobFailed(_rpc_failure(exc), retryable=True) from None
        except ValueError:
            raise JobFailed("party daemon answered status with malformed JSON", retryable=True) from None
        if not isinstance(body, dict):
            raise JobFailed("party daemon answered status with a non-object", retryable=True)
        return body

    def keys(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The shares this party holds (public metadata only), for `zrkeyring keys`."""
        return list(json.loads(self._keys(b"", timeout=timeout))["keys"])
    def signature(self, request_id: int, timeout: float = 1.0) -> bytes | None:
        """The signature the party made for sign request `request_id` (None: none, or it cannot say)."""
        try:
            body = json.loads(self._signature(request_id.to_bytes(8, "big"), timeout=timeout))
            return bytes.fromhex(body["signature"]) if body.get("signature") else None
        except (grpc.RpcError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def joined(self, cursor: int, timeout: float = 1.0) -> tuple[str, int, list[tuple[int, bytes]]] | None:
        """(boot, next cursor, [(request id, signature)]) of the party's joined sessions from `cursor` on;
        None when the daemon cannot say (unreachable, an older daemon, a malformed answer)."""
        try:
            body = json.loads(self._joined(cursor.to_bytes(8, "big"), timeout=timeout))
            found = [(int(rid), bytes.fromhex(sig)) for rid, sig in body["signatures"]]
            return str(body["boot"]), int(body["next"]), found
        except (grpc.RpcError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def liveness(self, timeout: float = 1.0) -> set[int]:
        """The parties the local daemon sees live now (always including itself); raises JobFailed when
        the daemon cannot be asked."""
        try:
            body = json.loads(self._liveness(b"", timeout=timeout))
            return {int(p) for p in body["live"]}
        except grpc.RpcError as exc:
            raise JobFailed(f"party daemon unreachable: {exc.code().name}: {exc.details()}",
                            retryable=True) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise JobFailed(f"malformed liveness answer: {exc}") from None

    def close(self) -> None:
        self._channel.close()


def _rpc_failure(exc: grpc.RpcError) -> str:
    """Unreachable (no socket, no answer) is said as such; an error the daemon reported keeps its text."""
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"party daemon unreachable: {code.name}: {exc.details()}"
    return f"party daemon failed: {code.name}: {exc.details()}"


def _read_answer(answer: bytes) -> bytes:
    """A Run answer as the result bytes, or JobFailed; a malformed answer is a (retryable) failure too."""
    try:
        body = json.loads(answer)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        result = bytes.fromhex(body["result"]) if body.get("ok") is True else None
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise JobFailed(f"party daemon answered malformed JSON: {exc}", retryable=True) from None
    if result is not None:
        return result
    culprit, missing = body.get("culprit"), body.get("missing")
    raise JobFailed(str(body.get("error", "unknown error")), body.get("retryable") is True,
                    culprit if type(culprit) is int else None,
                    [m for m in missing if type(m) is int] if isinstance(missing, list) else [])
