"""Shared pieces of every sans-IO protocol: error types, fixed-width encodings, transcripts.

Errors say whose fault it was (the h11 model): `LocalProtocolError` means our own caller misused the
state machine (wrong round, a second use of a nonce); `ProtocolAbort` means a peer broke the protocol
and names it in `culprit` when the protocol can tell. Decoding a peer's bytes raises `ProtocolAbort`
through `Reader`, so malformed input never becomes an unhandled exception in an honest party.

Encodings are explicit and length-prefixed: integers are fixed-width big-endian, variable-length
byte strings carry a u32 length, and `transcript_hash` prefixes every part with its length so that
no two different transcripts hash alike (the TSSHOCK lesson).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable

from appliance.mpc_party.protocols.group import EncodingError, Group, Point

SESSION_ID_LEN = 32


class ProtocolError(Exception):
    """Base class of protocol errors."""


class LocalProtocolError(ProtocolError):
    """Our caller used the state machine wrongly (wrong state, replayed round, second use)."""


class ProtocolAbort(ProtocolError):
    """A peer broke the protocol. `culprit` is its party id when the protocol can tell."""

    def __init__(self, reason: str, culprit: int | None = None) -> None:
        self.reason = reason
        self.culprit = culprit
        who = f"party {culprit}" if culprit is not None else "unknown party"
        super().__init__(f"{reason} (culprit: {who})")


class StateMismatch(ProtocolAbort):
    """A peer runs the session over another state of the key than ours: another epoch (a refresh or a
    resharing committed on one side and not yet on the other) or another context. It is raised before
    anything secret-dependent has been checked, so it tells the peer nothing and burns nothing; an
    honest pair sees it for the moment between two parties' commits, and the next attempt succeeds."""


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality for commitments, MACs and anything secret-dependent."""
    return hmac.compare_digest(a, b)


class Writer:
    """Builds a fixed-layout byte string."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(struct.pack(">B", v))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(struct.pack(">H", v))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(struct.pack(">I", v))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(struct.pack(">Q", v))
        return self

    def fixed(self, data: bytes, length: int) -> Writer:
        if len(data) != length:
            raise LocalProtocolError(f"field must be {length} bytes, got {len(data)}")
        self._parts.append(bytes(data))
        return self

    def var(self, data: bytes) -> Writer:
        self.u32(len(data))
        self._parts.append(bytes(data))
        return self

    def scalar(self, group: Group, k: int) -> Writer:
        self._parts.append(group.encode_scalar(k))
        return self

    def point(self, group: Group, p: Point) -> Writer:
        self._parts.append(group.encode_point(p))
        return self

    def points(self, group: Group, ps: Iterable[Point]) -> Writer:
        ps = list(ps)
        self.u16(len(ps))
        for p in ps:
            self.point(group, p)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Parses a byte string written by `Writer`; any defect raises ProtocolAbort naming `sender`."""

    def __init__(self, data: bytes, sender: int | None = None) -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0
        self.sender = sender

    def _fail(self, reason: str) -> ProtocolAbort:
        return ProtocolAbort(f"malformed message: {reason}", self.sender)

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise self._fail("truncated")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self._take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self._take(8))[0]

    def fixed(self, length: int) -> bytes:
        return self._take(length)

    def var(self, max_len: int = 1 << 24) -> bytes:
        n = self.u32()
        if n > max_len:
            raise self._fail(f"field of {n} bytes exceeds {max_len}")
        return self._take(n)

    def scalar(self, group: Group) -> int:
        try:
            return group.decode_scalar(self._take(group.scalar_len))
        except EncodingError as exc:
            raise self._fail(str(exc)) from None

    def point(self, group: Group) -> Point:
        try:
            return group.decode_point(self._take(group.point_len))
        except EncodingError as exc:
            raise self._fail(str(exc)) from None

    def points(self, group: Group, expected: int | None = None) -> list[Point]:
        n = self.u16()
        if expected is not None and n != expected:
            raise self._fail(f"expected {expected} points, got {n}")
        return [self.point(group) for _ in range(n)]

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise self._fail(f"{len(self._data) - self._pos} trailing bytes")


def transcript_hash(domain: bytes, *parts: bytes, digest_size: int = 32) -> bytes:
    """SHA-256 (or SHA-512 when digest_size=64) over the domain and length-prefixed parts."""
    h = hashlib.sha512() if digest_size == 64 else hashlib.sha256()
    for part in (domain, *parts):
        h.update(struct.pack(">Q", len(part)))
        h.update(part)
    return h.digest()
