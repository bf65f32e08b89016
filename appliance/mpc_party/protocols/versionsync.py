"""Share-version sync (sans-IO): every holder of a key says which sharing it holds, active and pending.

The two-phase switch of a refresh (docs/protocols/reshare.md, "Two phases") needs each party to know
that every other party durably holds the new sharing before it destroys the old one. Parties do not
compare their store's version numbers (those are local: an OT re-setup bumps them on two parties
only) but a digest of the public sharing itself: H(group public key, every (id, verification share)).
Two parties with the same digest hold shares of the same polynomial.

One round: each participant broadcasts a `VersionReport` (active digest, pending digest; 32 zero
bytes for "none"; and the threshold and holder ids of its active sharing, which a party joining the
key has no share to read them from); the result is every participant's report, ours included. What to do with the
reports is a pure rule of its own (`appliance/rules/lifecycle.py`, `decide`), so every party applies
the same rule to the same reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from appliance.mpc_party.protocols.dkg import PeerSet, WireMessage, decode_message
from appliance.mpc_party.protocols.group import ED25519, Group, Point
from appliance.mpc_party.protocols.sessions import BROADCAST, Outgoing, Session
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
    transcript_hash,
)

KIND_VERSION_REPORT = 0x17
NONE = bytes(32)  # "no such version"
_DIGEST_DOMAIN = b"zrkeyring/sharing-digest/v1"
PROTOCOL = "share-version-sync"
PROTOCOL_INVITE = "share-version-sync-invite"  # the same, opening an unscheduled refresh (a header first)


def invite_header(public_key: bytes, nonce: bytes) -> bytes:
    """u8 length | public key | 32-byte nonce: names the key and the run of an unscheduled refresh."""
    if len(nonce) != 32 or not 1 <= len(public_key) <= 64:
        raise LocalProtocolError("invitation header: bad public key or nonce")
    return bytes([len(public_key)]) + bytes(public_key) + bytes(nonce)


def split_invite_header(payload: bytes) -> tuple[bytes, bytes]:
    """(public key, nonce) from an invitation's first payload; ValueError if it has none."""
    if not payload or len(payload) < 1 + payload[0] + 32 or not 1 <= payload[0] <= 64:
        raise ValueError("no invitation header")
    n = payload[0]
    return payload[1:1 + n], payload[1 + n:1 + n + 32]


def sharing_digest(public_key: bytes, verification_shares: Mapping[int, Point]) -> bytes:
    """The identity of one sharing of a key: equal on every holder, different after a refresh."""
    parts = [bytes(public_key)]
    parts += [i.to_bytes(2, "big") + bytes(verification_shares[i]) for i in sorted(verification_shares)]
    return transcript_hash(_DIGEST_DOMAIN, *parts)


MAX_HOLDERS = 32  # as many as a resharing's party set (reshare.MAX_PARTIES)


@dataclass(frozen=True)
class Holding:
    """What one party holds of one key: digests of its active and its pending sharing (NONE if none),
    and the active sharing's threshold and holder ids (0 and () when it holds none). The last two are
    claims: a joining party uses them only when every holder's report agrees (rules/lifecycle.py)."""

    active: bytes = NONE
    pending: bytes = NONE
    t: int = 0
    holders: tuple[int, ...] = ()

    def holds(self, digest: bytes) -> bool:
        return digest != NONE and digest in (self.active, self.pending)


@dataclass(frozen=True)
class VersionReport(WireMessage):
    """The one message, broadcast: active digest 32 | pending digest 32 | t u16 | count u16 | count ids
    u16 (the active sharing's threshold and holders)."""

    KIND: ClassVar[int] = KIND_VERSION_REPORT
    BROADCAST: ClassVar[bool] = True
    active: bytes
    pending: bytes
    t: int = 0
    holders: tuple[int, ...] = ()

    def _write_body(self, w: Writer) -> None:
        if len(self.holders) > MAX_HOLDERS:
            raise LocalProtocolError(f"version report: more than {MAX_HOLDERS} holders")
        w.fixed(self.active, 32).fixed(self.pending, 32).u16(self.t).u16(len(self.holders))
        for i in self.holders:
            w.u16(i)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        active, pending, t, count = r.fixed(32), r.fixed(32), r.u16(), r.u16()
        if count > MAX_HOLDERS:
            raise ProtocolAbort(f"version report names {count} holders (at most {MAX_HOLDERS})", r.sender)
        holders = tuple(r.u16() for _ in range(count))
        if list(holders) != sorted(set(holders)) or (holders and not 1 <= t <= len(holders)):
            raise ProtocolAbort("version report: holders not sorted and distinct, or threshold out of range",
                                r.sender)
        return {"active": active, "pending": pending, "t": t, "holders": holders}


_KINDS: dict[int, type[WireMessage]] = {KIND_VERSION_REPORT: VersionReport}


class VersionSyncSession(Session):
    """Broadcast our holding, collect every peer's; result: {party: Holding} (ours included).

    With a `header` (an invitation to an unscheduled refresh: what the session is about, from which
    a peer that has not opened it recomputes its id) every report carries it first, and a report with
    another header is refused."""

    def __init__(self, session_id: bytes, me: int, participants: tuple[int, ...], mine: Holding,
                 header: bytes = b"") -> None:
        if len(session_id) != SESSION_ID_LEN or me not in participants:
            raise LocalProtocolError("version sync: bad session id or party set")
        self.session_id, self.me, self.participants = bytes(session_id), me, tuple(sorted(participants))
        self._mine, self._header = mine, bytes(header)
        self.protocol = PROTOCOL_INVITE if header else PROTOCOL
        self._peers = PeerSet(self.session_id, me, set(self.participants) - {me})
        self._reports: dict[int, VersionReport] = {}

    def start(self) -> list[Outgoing]:
        m = self._mine
        msg = VersionReport(ED25519, self.session_id, self.me, m.active, m.pending, m.t, m.holders)
        return [Outgoing(BROADCAST, 1, self._header + msg.to_bytes())]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        if not ct_equal(payload[:len(self._header)], self._header):
            raise ProtocolAbort("version report for another invitation", sender)
        msg = decode_message(_KINDS, ED25519, payload[len(self._header):], sender)
        self._peers.check(msg, self._reports)
        self._reports[sender] = msg  # type: ignore[assignment]
        return []

    @property
    def done(self) -> bool:
        return not self.waiting_for()

    def result(self) -> dict[int, Holding]:
        out = {j: Holding(m.active, m.pending, m.t, m.holders) for j, m in self._reports.items()}
        out[self.me] = self._mine
        return out

    @property
    def current_round(self) -> int:
        return 1

    def waiting_for(self) -> list[int]:
        return [j for j in sorted(self._peers.peers) if j not in self._reports]
