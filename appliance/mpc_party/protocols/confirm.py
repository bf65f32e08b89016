"""The keygen confirmation round and its evidence: a key is final only when every participant said so.

After a DKG (or DKLs23 keygen) among participants P, each party stores its new share as PENDING and
broadcasts a signed *note*: either CONFIRM with a `KeygenStatement` (session id, request, key type,
n, t, P, the t summed Feldman commitments, the transcript digest), or ABORT with a reason (it failed,
timed out or could not store its share). A party commits its share, and only then answers its
controller, when it holds a valid CONFIRM of the same statement from every member of P. The set of
notes is the *evidence* that the key is whole; it is stored with the share, shown to peers that are
left with a pending share (so they commit too), and read by repair (`repair.py`), which derives an
absent party's verification share from the commitments in the statement.

Notes are signed by the party's identity key (Ed25519, in the HSM) under their own domain, so they
are evidence anyone holding the roster can check, independently of the envelope they travelled in.
Signing is injected (`sign`), verification is PyNaCl: still sans-IO.

Culprits: a note with a bad signature or from a party that is not its signer is dropped by whoever
checks it (`NoteError`); two different valid notes from one signer for the same session are
*equivocation* (`Equivocation`, carrying both notes: evidence every honest party can check); a CONFIRM
of another statement names its signer (honest parties that passed the echo round hold the same
statement). An ABORT names nobody: the aborting party may be honest and may be right, and we cannot
check its reason; it only makes us discard our pending share (`PeerAborted`, culprit None), so an honest
party is never named for another's misbehaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group, Point, commitment_eval
from appliance.mpc_party.protocols.sessions import BROADCAST, Outgoing, Session
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
)

NOTE_DOMAIN = b"zrkeyring/keygen-note/v1"
CONFIRM, ABORT = 1, 2
SIGNATURE_LEN = 64
MAX_REASON = 512
GROUPS: dict[str, Group] = {g.name: g for g in (ED25519, SECP256K1)}
PROTOCOL = "keygen-confirm"

Sign = Callable[[bytes], bytes]  # the identity key's Ed25519 signer (the HSM's sign_identity)


class NoteError(ValueError):
    """A note does not parse or its signature does not verify: it is not evidence of anything."""


@dataclass(frozen=True)
class KeygenStatement:
    """What a CONFIRM note says: this keygen produced this key, with these commitments."""

    session_id: bytes
    request_id: int
    key_type: str
    n: int
    t: int
    participants: tuple[int, ...]
    group_name: str
    commitments: tuple[Point, ...]  # C_0..C_{t-1}, summed over the dealers in P; C_0 is the key
    transcript: bytes  # the DKG's transcript digest (every dealer's round-1 broadcast)

    @property
    def group(self) -> Group:
        return GROUPS[self.group_name]

    @property
    def group_public_key(self) -> bytes:
        return bytes(self.commitments[0])

    def verification_share(self, index: int) -> Point:
        """Y_index = sum_k index^k C_k: the public image of any party's share, absent ones included."""
        if not 1 <= index <= self.n:
            raise LocalProtocolError(f"index {index} outside 1..{self.n}")
        return commitment_eval(self.group, self.commitments, index)

    def encode(self) -> bytes:
        w = Writer().fixed(self.session_id, SESSION_ID_LEN).u64(self.request_id)
        w.var(self.key_type.encode()).u8(self.n).u8(self.t).u8(len(self.participants))
        for p in self.participants:
            w.u16(p)
        w.var(self.group_name.encode()).points(self.group, self.commitments)
        return w.fixed(self.transcript, 32).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> KeygenStatement:
        r = Reader(data)
        sid, request_id = r.fixed(SESSION_ID_LEN), r.u64()
        key_type = r.var(64).decode("utf-8", errors="strict")
        n, t, count = r.u8(), r.u8(), r.u8()
        participants = tuple(r.u16() for _ in range(count))
        name = r.var(16).decode("ascii", errors="replace")
        if name not in GROUPS:
            raise ProtocolAbort(f"unknown group {name!r}")
        commitments = tuple(r.points(GROUPS[name]))
        transcript = r.fixed(32)
        r.finish()
        statement = cls(sid, request_id, key_type, n, t, participants, name, commitments, transcript)
        statement.check_shape()
        return statement

    def check_shape(self) -> None:
        p = self.participants
        if not 1 <= self.t <= self.n or len(self.commitments) != self.t or list(p) != sorted(set(p)) \
                or len(p) < self.t or not all(1 <= i <= self.n for i in p):
            raise ProtocolAbort("malformed keygen statement (shape)")


@dataclass(frozen=True)
class Note:
    """One signed CONFIRM or ABORT note; `raw` is its exact encoding (what evidence stores)."""

    kind: int
    signer: int
    session_id: bytes
    statement: KeygenStatement | None
    reason: str
    raw: bytes

    @property
    def is_confirm(self) -> bool:
        return self.kind == CONFIRM


def _body(kind: int, signer: int, session_id: bytes, payload: bytes) -> bytes:
    return Writer().u8(kind).u16(signer).fixed(session_id, SESSION_ID_LEN).var(payload).getvalue()


def _signing_bytes(body: bytes) -> bytes:
    return Writer().var(NOTE_DOMAIN).getvalue() + body


def make_confirm(sign: Sign, signer: int, statement: KeygenStatement) -> bytes:
    """A CONFIRM note for `statement`, signed by `sign` (the HSM identity key's Ed25519 signer)."""
    return _signed(sign, _body(CONFIRM, signer, statement.session_id, statement.encode()))


def make_abort(sign: Sign, signer: int, session_id: bytes, reason: str) -> bytes:
    """An ABORT note: this party will not commit a share of `session_id`, and why (for logs only)."""
    text = reason.encode("utf-8", errors="replace")[:MAX_REASON]
    return _signed(sign, _body(ABORT, signer, session_id, text))


def _signed(sign: Sign, body: bytes) -> bytes:
    signature = sign(_signing_bytes(body))
    if len(signature) != SIGNATURE_LEN:
        raise LocalProtocolError(f"signer returned {len(signature)} bytes, expected {SIGNATURE_LEN}")
    return body + bytes(signature)


def read_note(data: bytes, identity_keys: Mapping[int, bytes]) -> Note:
    """Parse and verify one note against the roster's identity keys; NoteError if it is not valid."""
    if len(data) < SIGNATURE_LEN + 3:
        raise NoteError("note too short")
    body, signature = data[:-SIGNATURE_LEN], data[-SIGNATURE_LEN:]
    try:
        r = Reader(body)
        kind, signer, sid = r.u8(), r.u16(), r.fixed(SESSION_ID_LEN)
        payload = r.var(1 << 16)
        r.finish()
        key = identity_keys.get(signer)
        if key is None:
            raise NoteError(f"note from party {signer}, which is not in the roster")
        try:
            VerifyKey(bytes(key)).verify(_signing_bytes(body), signature)
        except (BadSignatureError, ValueError):
            raise NoteError(f"note claiming party {signer} has a bad signature") from None
        if kind == CONFIRM:
            statement = KeygenStatement.decode(payload)
            if not ct_equal(statement.session_id, sid):
                raise NoteError("confirmation whose statement names another session")
            return Note(kind, signer, sid, statement, "", bytes(data))
        if kind == ABORT:
            return Note(kind, signer, sid, None, payload.decode("utf-8", errors="replace"), bytes(data))
    except ProtocolAbort as exc:
        raise NoteError(f"malformed note: {exc.reason}") from None
    raise NoteError(f"unknown note kind {kind}")


class Equivocation(ProtocolAbort):
    """Party `culprit` signed two different notes for one session: `evidence` holds both."""

    def __init__(self, culprit: int, first: bytes, second: bytes) -> None:
        self.evidence = (first, second)
        super().__init__("signed two different keygen notes for one session (equivocation)", culprit)


class PeerAborted(ProtocolAbort):
    """A participant said it will not commit: discard the pending share. Names nobody (see module)."""

    def __init__(self, party: int, reason: str) -> None:
        self.party, self.peer_reason = party, reason
        # the peer's words, not ours: never let them read like this party's own blame
        quoted = reason.replace("culprit", "blames").replace("\n", " ")[:MAX_REASON]
        super().__init__(f"party {party} aborted the keygen, saying: {quoted!r}", None)


def find_equivocation(notes: Iterable[Note]) -> Equivocation | None:
    """Two valid notes of one signer for one session that differ, if any."""
    seen: dict[tuple[int, bytes], Note] = {}
    for note in notes:
        key = (note.signer, note.session_id)
        first = seen.setdefault(key, note)
        if first.raw != note.raw:
            return Equivocation(note.signer, first.raw, note.raw)
    return None


@dataclass(frozen=True)
class Evidence:
    """A statement and a valid CONFIRM of it from every participant: the key is whole."""

    statement: KeygenStatement
    notes: tuple[bytes, ...]  # one per participant, in participant order

    def encode(self) -> bytes:
        return encode_notes(self.notes)


def decode_notes(data: bytes) -> list[bytes]:
    """The raw notes of an encoded `Evidence` (or of any note list), unverified."""
    r = Reader(data)
    notes = [r.var(1 << 16) for _ in range(r.u8())]
    r.finish()
    return notes


def encode_notes(notes: Sequence[bytes]) -> bytes:
    w = Writer().u8(len(notes))
    for raw in notes:
        w.var(raw)
    return w.getvalue()


def complete_evidence(raw_notes: Iterable[bytes], identity_keys: Mapping[int, bytes],
                      session_id: bytes | None = None, request_id: int | None = None) -> Evidence | None:
    """The first statement (optionally of `session_id` / `request_id`) that every one of its
    participants confirmed, from any pile of notes (invalid ones are ignored: they prove nothing).
    Raises Equivocation when one signer signed two different notes for one session."""
    notes = []
    for raw in raw_notes:
        try:
            notes.append(read_note(raw, identity_keys))
        except NoteError:
            continue
    if (equivocation := find_equivocation(notes)) is not None:
        raise equivocation
    by_statement: dict[bytes, dict[int, Note]] = {}
    for note in notes:
        if note.is_confirm and (session_id is None or ct_equal(note.session_id, session_id)):
            assert note.statement is not None
            if request_id is not None and note.statement.request_id != request_id:
                continue
            by_statement.setdefault(note.statement.encode(), {})[note.signer] = note
    for encoded, signers in sorted(by_statement.items()):
        statement = KeygenStatement.decode(encoded)
        if all(p in signers for p in statement.participants):
            return Evidence(statement, tuple(signers[p].raw for p in statement.participants))
    return None


class ConfirmSession(Session):
    """The confirmation round of one keygen among `participants`: send our note, collect theirs.

    With our own CONFIRM: done when every peer's CONFIRM of the same statement is in; `result()` is the
    `Evidence`. With our own ABORT (`statement` None): done at once (we only tell the others)."""

    protocol = PROTOCOL

    def __init__(self, me: int, participants: Sequence[int], own_note: bytes,
                 statement: KeygenStatement | None, identity_keys: Mapping[int, bytes]) -> None:
        self.me, self.participants = me, tuple(sorted(participants))
        self.statement, self._keys = statement, dict(identity_keys)
        self._own = read_note(own_note, self._keys)
        if self._own.signer != me or (statement is None) != (not self._own.is_confirm):
            raise LocalProtocolError("our own note does not match the session")
        self._notes: dict[int, Note] = {me: self._own}
        self._started = False

    def start(self) -> list[Outgoing]:
        self._started = True
        return [Outgoing(BROADCAST, 1, self._own.raw)]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        try:
            note = read_note(payload, self._keys)
        except NoteError as exc:
            raise ProtocolAbort(f"invalid keygen note: {exc}", sender) from None
        if note.signer != sender or sender not in self.participants or sender == self.me:
            raise ProtocolAbort(f"note signed by party {note.signer} relayed by party {sender}", sender)
        if not ct_equal(note.session_id, self._own.session_id):
            raise ProtocolAbort("keygen note for another session", sender)
        first = self._notes.get(sender)
        if first is not None:
            if first.raw != note.raw:
                raise Equivocation(sender, first.raw, note.raw)
            return []
        self._notes[sender] = note
        if not note.is_confirm:
            raise PeerAborted(sender, note.reason)
        assert self.statement is not None and note.statement is not None
        if note.statement != self.statement:
            raise ProtocolAbort("confirmed a different key or transcript than ours", sender)
        return []

    @property
    def done(self) -> bool:
        if self.statement is None:
            return self._started
        return all(p in self._notes for p in self.participants)

    def result(self) -> Evidence | None:
        if self.statement is None:
            return None
        if not self.done:
            raise LocalProtocolError("confirmation not complete")
        return Evidence(self.statement, tuple(self._notes[p].raw for p in self.participants))

    def notes(self) -> list[bytes]:
        """Every note held so far (ours included): what we show peers when resolving a pending share."""
        return [self._notes[p].raw for p in sorted(self._notes)]

    @property
    def current_round(self) -> int:
        return 1

    def waiting_for(self) -> list[int]:
        return [] if self.done else [p for p in self.participants if p not in self._notes]


def statement_for(dkg_party, request_id: int, key_type: str) -> KeygenStatement:  # noqa: ANN001
    """The statement a finished `DkgParty` (or the DKG inside a DKLs23 keygen) confirms."""
    return KeygenStatement(dkg_party.session_id, request_id, key_type, dkg_party.n, dkg_party.t,
                           tuple(dkg_party.participants), dkg_party.group.name,
                           tuple(dkg_party.summed_commitments), dkg_party.transcript_digest)


# --- resolving what a previous attempt left: the holdings exchange ----------------------------------

HOLDINGS_PROTOCOL = "keygen-holdings"
NONE, PENDING, COMMITTED = 0, 1, 2


@dataclass(frozen=True)
class Resolution:
    """What the exchange found: complete evidence for the request (then every holder of a pending
    share of that statement commits it), or None (then every pending share is discarded)."""

    evidence: Evidence | None
    statuses: Mapping[int, int]
    notes: tuple[bytes, ...]


class HoldingsSession(Session):
    """Before a keygen attempt, the participants say what they hold for the request and show the
    notes they have: round 1, (status, notes); round 2, the complete evidence each found in round 1
    (or none). A party decides on the evidence found in round 1 or relayed in round 2, so a
    participant that shows its evidence to one honest party only in round 1 is relayed to the rest.
    (One that does so only in round 2 can still leave that party committing alone; it then holds a
    share the others lack until they repair theirs from the key on chain: docs/protocols/dkg.md.)"""

    protocol = HOLDINGS_PROTOCOL

    def __init__(self, me: int, participants: Sequence[int], request_id: int, status: int,
                 notes: Sequence[bytes], identity_keys: Mapping[int, bytes]) -> None:
        self.me, self.participants = me, tuple(sorted(participants))
        self.request_id, self._keys = request_id, dict(identity_keys)
        self._status, self._own_notes = status, list(notes)
        self._round1: dict[int, tuple[int, list[bytes]]] = {}
        self._round2: dict[int, list[bytes]] = {}
        self._first: Evidence | None = None
        self._result: Resolution | None = None
        self._sent2 = False

    def start(self) -> list[Outgoing]:
        payload = bytes([1, self._status]) + encode_notes(self._own_notes)
        if self._status == COMMITTED:
            # Final already (our notes are complete evidence): show it in both rounds and stop; the
            # others' rounds need nothing more from us, and our answer needs nothing from them.
            evidence = complete_evidence(self._own_notes, self._keys, request_id=self.request_id)
            if evidence is None:
                raise LocalProtocolError("a committed share without complete evidence")
            self._result = Resolution(evidence, {self.me: COMMITTED}, tuple(self._own_notes))
            self._sent2 = True
            return [Outgoing(BROADCAST, 1, payload), Outgoing(BROADCAST, 2, b"\x02" + encode_notes(evidence.notes))]
        return [Outgoing(BROADCAST, 1, payload), *self._advance()]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        if sender not in self.participants or sender == self.me or len(payload) < 2:
            raise ProtocolAbort("malformed holdings message", sender)
        try:
            if payload[0] == 1 and sender not in self._round1:
                if payload[1] not in (NONE, PENDING, COMMITTED):
                    raise ProtocolAbort(f"unknown holding status {payload[1]}", sender)
                self._round1[sender] = (payload[1], decode_notes(payload[2:]))
            elif payload[0] == 2 and sender not in self._round2:
                self._round2[sender] = decode_notes(payload[1:])
            else:
                raise ProtocolAbort("unexpected or duplicate holdings message", sender)
        except ProtocolAbort as exc:
            raise ProtocolAbort(exc.reason, sender) from None
        return self._advance()

    def _all_notes(self, *, relayed: bool) -> list[bytes]:
        notes = list(self._own_notes) + [n for _, ns in self._round1.values() for n in ns]
        return notes + [n for ns in self._round2.values() for n in ns] if relayed else notes

    def _advance(self) -> list[Outgoing]:
        peers = [p for p in self.participants if p != self.me]
        out: list[Outgoing] = []
        if not self._sent2 and all(p in self._round1 for p in peers):
            self._first = complete_evidence(self._all_notes(relayed=False), self._keys,
                                            request_id=self.request_id)
            shown = list(self._first.notes) if self._first is not None else []
            out.append(Outgoing(BROADCAST, 2, b"\x02" + encode_notes(shown)))
            self._sent2 = True
        if self._sent2 and self._result is None and all(p in self._round2 for p in peers):
            notes = self._all_notes(relayed=True)
            evidence = self._first or complete_evidence(notes, self._keys, request_id=self.request_id)
            statuses = {self.me: self._status, **{p: st for p, (st, _) in self._round1.items()}}
            self._result = Resolution(evidence, statuses, tuple(dict.fromkeys(notes)))
        return out

    @property
    def done(self) -> bool:
        return self._result is not None

    def result(self) -> Resolution:
        assert self._result is not None, "holdings exchange not finished"
        return self._result

    @property
    def current_round(self) -> int:
        return 2 if self._sent2 else 1

    def waiting_for(self) -> list[int]:
        box = self._round2 if self._sent2 else self._round1
        return [] if self.done else [p for p in self.participants if p != self.me and p not in box]
