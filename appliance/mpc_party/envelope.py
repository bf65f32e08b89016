"""Signed envelopes for protocol messages between parties, and the gate that decides what gets in.

Protocol state machines produce opaque payload bytes; before a payload leaves a party it is wrapped in
an `Envelope` that binds it to (version, session id, protocol name, round, sender, recipient, per-sender
sequence number) and is signed (Ed25519). The signature covers a domain-separated, fixed-width and
length-prefixed encoding of every field, so an envelope cannot be moved to another session, round,
protocol or recipient, and no two field tuples sign alike.

Two versions: version 1 is signed by the sender's HSM identity key itself; version 2 (what parties
send) is signed by the sender's in-memory envelope key and carries that key's certificate, signed by
the identity key (`envelope_cert.py`: one HSM signature per hour instead of one per envelope). The
certificate is inside the signed fields, so a version-2 envelope alone, with the roster, proves its
sender as a version-1 envelope does.

Mutual TLS already authenticates the hop; the signature is what lets a party prove later who said what,
and it still holds if a TLS key leaks (the TLS key is a file, the identity key never leaves the HSM, and
the envelope key never leaves the party process's memory).

`Gate` is the receiving side: it checks an encoded envelope against the roster's identity keys and the
sessions this party has opened (the daemon opens a session only after its own controller has checked
the request on chain), drops anything that fails with a reason, counts drops per reason in plain
integers that metrics can read, and queues accepted envelopes per session and round for `wait_for`.
It is thread-safe: gRPC handler threads call `offer`, session threads call `wait_for`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from appliance.mpc_party.envelope_cert import (
    MAX_CERT_LEN,
    CertificateError,
    EnvelopeKeys,
    KeyCertificate,
    cluster_bytes,
)
from appliance.mpc_party.limits import limits_for
from appliance.mpc_party.protocols.wire import SESSION_ID_LEN, ProtocolAbort, Reader, Writer
from appliance.rules.roster import MAX_INDEX

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1  # signed by the identity key (still accepted)
CERTIFIED_VERSION = 2  # signed by a certified envelope key, certificate inside (what Outbox sends)
SIGNING_DOMAIN = b"zrkeyring/party-envelope/v1"
SIGNING_DOMAIN_V2 = b"zrkeyring/party-envelope/v2"
_DOMAINS = {ENVELOPE_VERSION: SIGNING_DOMAIN, CERTIFIED_VERSION: SIGNING_DOMAIN_V2}
SIGNATURE_LEN = 64
BROADCAST = 0
MAX_PROTOCOL_LEN = 32
MAX_PAYLOAD = 16 << 20
_PROTOCOL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")

Signer = Callable[[bytes], bytes]


class EnvelopeError(ValueError):
    """An envelope cannot be built (our caller's fault) or parsed (the peer's fault)."""


def check_protocol_name(name: str) -> str:
    """Protocol names are short lower-case ASCII (`frost-ed25519-dkg`), so they encode one way only."""
    if not 1 <= len(name) <= MAX_PROTOCOL_LEN or not set(name) <= _PROTOCOL_CHARS:
        raise EnvelopeError(f"protocol name must be 1-{MAX_PROTOCOL_LEN} chars of [a-z0-9.-], got {name!r}")
    return name


@dataclass(frozen=True)
class Envelope:
    """One protocol message on the wire. `recipient` 0 means broadcast; party indices are 1..65535."""

    session_id: bytes
    protocol: str
    round: int
    sender: int
    recipient: int
    seq: int
    payload: bytes = field(repr=False)
    signature: bytes = field(default=b"", repr=False)
    version: int = ENVELOPE_VERSION
    certificate: bytes = field(default=b"", repr=False)  # version 2: the envelope key's certificate

    @classmethod
    def create(
        cls,
        sign: Signer | EnvelopeKeys,
        *,
        session_id: bytes,
        protocol: str,
        round: int,
        sender: int,
        recipient: int,
        seq: int,
        payload: bytes,
    ) -> Envelope:
        """Build and sign an envelope: version 2 with `EnvelopeKeys` (signed in software, certificate
        attached), version 1 with an identity-key signer (the HSM's `sign_identity`, or a test key)."""
        check_protocol_name(protocol)
        if isinstance(sign, EnvelopeKeys):
            key, cert = sign.current()
            unsigned = cls(session_id, protocol, round, sender, recipient, seq, payload,
                           version=CERTIFIED_VERSION, certificate=cert)
            signature = key.sign(unsigned.signing_bytes()).signature
        else:
            unsigned = cls(session_id, protocol, round, sender, recipient, seq, payload)
            signature = sign(unsigned.signing_bytes())
        if len(signature) != SIGNATURE_LEN:
            raise EnvelopeError(f"signer returned {len(signature)} bytes, expected {SIGNATURE_LEN}")
        return cls(session_id, protocol, round, sender, recipient, seq, payload, bytes(signature),
                   unsigned.version, unsigned.certificate)

    def _write_fields(self, w: Writer) -> Writer:
        if not 1 <= self.sender <= MAX_INDEX or not 0 <= self.recipient <= MAX_INDEX:
            raise EnvelopeError(f"party index out of range: sender {self.sender}, recipient {self.recipient}")
        if not 0 <= self.round <= 0xFFFF or not 0 <= self.seq < 1 << 64:
            raise EnvelopeError(f"round {self.round} or seq {self.seq} out of range")
        if len(self.payload) > MAX_PAYLOAD:
            raise EnvelopeError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        protocol = check_protocol_name(self.protocol).encode("ascii")
        w.u8(self.version).fixed(self.session_id, SESSION_ID_LEN)
        w.u8(len(protocol)).fixed(protocol, len(protocol))
        w.u16(self.round).u16(self.sender).u16(self.recipient).u64(self.seq)
        w.var(self.payload)
        if self.version == CERTIFIED_VERSION:
            if not 0 < len(self.certificate) <= MAX_CERT_LEN:
                raise EnvelopeError("a version-2 envelope needs its key certificate")
            w.var(self.certificate)
        elif self.version != ENVELOPE_VERSION or self.certificate:
            raise EnvelopeError(f"envelope version {self.version} with {len(self.certificate)} certificate bytes")
        return w

    def signing_bytes(self) -> bytes:
        """What the signing key signs: the version's length-prefixed domain, then every field but the
        signature (for version 2 that includes the certificate)."""
        return self._write_fields(Writer().var(_DOMAINS.get(self.version, SIGNING_DOMAIN))).getvalue()

    def encode(self) -> bytes:
        if len(self.signature) != SIGNATURE_LEN:
            raise EnvelopeError("envelope is not signed")
        return self._write_fields(Writer()).fixed(self.signature, SIGNATURE_LEN).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse wire bytes; any defect (truncation, trailing bytes, bad name) raises EnvelopeError."""
        try:
            r = Reader(data)
            version = r.u8()
            if version not in _DOMAINS:
                raise EnvelopeError(f"unsupported envelope version {version}")
            session_id = r.fixed(SESSION_ID_LEN)
            protocol = r.fixed(r.u8()).decode("ascii", errors="replace")
            round_, sender, recipient, seq = r.u16(), r.u16(), r.u16(), r.u64()
            payload = r.var(MAX_PAYLOAD)
            certificate = r.var(MAX_CERT_LEN) if version == CERTIFIED_VERSION else b""
            signature = r.fixed(SIGNATURE_LEN)
            r.finish()
        except ProtocolAbort as exc:
            raise EnvelopeError(exc.reason) from None
        if sender == 0:
            raise EnvelopeError("sender index 0")
        check_protocol_name(protocol)
        if version == CERTIFIED_VERSION and not certificate:
            raise EnvelopeError("version-2 envelope without a certificate")
        return cls(session_id, protocol, round_, sender, recipient, seq, payload, signature, version, certificate)

    def key_certificate(self) -> KeyCertificate:
        """The decoded certificate of a version-2 envelope; EnvelopeError when absent or malformed."""
        try:
            return KeyCertificate.decode(self.certificate)
        except CertificateError as exc:
            raise EnvelopeError(f"key certificate: {exc}") from None

    def verify(self, public_key: bytes, *, cluster: str | None = None, now: float | None = None) -> bool:
        """True when the envelope is signed for `sender` under the identity key `public_key`.

        Version 1: the identity key's signature itself. Version 2: the identity key certified an
        envelope key for this sender (and for `cluster`, when given), and that key signed the
        envelope; with `now`, the certificate must also be valid then (receivers pass it; evidence
        checked later does not, since it is about the past)."""
        try:
            if self.version == CERTIFIED_VERSION:
                cert = self.key_certificate()
                if cert.party != self.sender or not cert.verify(public_key):
                    return False
                if cluster is not None and cert.cluster != cluster_bytes(cluster):
                    return False
                if now is not None and not cert.valid_at(now):
                    return False
                public_key = cert.public_key
            VerifyKey(bytes(public_key)).verify(self.signing_bytes(), self.signature)
        except (BadSignatureError, EnvelopeError, CertificateError, ValueError, TypeError):
            return False
        return True


class Outbox:
    """Seals outgoing payloads for one party: numbers them per session so receivers can spot replays."""

    def __init__(self, me: int, sign: Signer | EnvelopeKeys) -> None:
        self.me = me
        self._sign = sign
        self._seq: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def seal(self, session_id: bytes, protocol: str, round: int, recipient: int, payload: bytes) -> Envelope:
        with self._lock:
            seq = self._seq.get(session_id, 0)
            self._seq[session_id] = seq + 1
        return Envelope.create(
            self._sign, session_id=session_id, protocol=protocol, round=round, sender=self.me,
            recipient=recipient, seq=seq, payload=payload,
        )

    def forget(self, session_id: bytes) -> None:
        with self._lock:
            self._seq.pop(session_id, None)


class DropReason(enum.StrEnum):
    """Why the gate refused an envelope. The values are metric label values: keep them stable."""

    MALFORMED = "malformed"
    PEER_MISMATCH = "peer_mismatch"  # TLS peer is not the party the envelope claims as sender
    STRANGER = "stranger"  # sender index not in the roster
    BAD_SIGNATURE = "bad_signature"
    BAD_CERTIFICATE = "bad_certificate"  # version 2: key certificate forged, expired, or for another party
    WRONG_RECIPIENT = "wrong_recipient"
    SESSION_NOT_OPEN = "session_not_open"
    REPLAY = "replay"
    QUEUE_FULL = "queue_full"  # too many queued for (session, round, sender), or for the whole session
    BAD_ROUND = "bad_round"  # a round number the envelope's protocol does not have
    OVERSIZE = "oversize"  # payload larger than the largest message of its protocol round
    OVER_BUDGET = "over_budget"  # the sender already sent the session's whole byte budget


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: DropReason | None = None
    envelope: Envelope | None = None


@dataclass(frozen=True)
class Arrival:
    """What `wait_for` got: envelopes per sender (in arrival order) and the senders still missing."""

    arrived: dict[int, list[Envelope]]
    missing: frozenset[int]

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass
class _Session:
    seen: set[tuple[int, int, int]] = field(default_factory=set)  # (sender, round, seq)
    per_sender: dict[int, int] = field(default_factory=dict)  # accepted so far, bounds `seen`
    bytes_per_sender: dict[int, int] = field(default_factory=dict)  # payload bytes accepted so far
    queues: dict[tuple[int, int], list[Envelope]] = field(default_factory=dict)  # (round, sender)
    woken: bool = False  # `Gate.wake`: waits on this session return at once


_SECURITY_REASONS = {DropReason.PEER_MISMATCH, DropReason.STRANGER, DropReason.BAD_SIGNATURE,
                     DropReason.BAD_CERTIFICATE}


@dataclass(frozen=True)
class _Certified:
    """A certificate the gate has checked against the roster: whose, which key, valid when."""

    party: int
    key: VerifyKey
    cert: KeyCertificate


class Gate:
    """Acceptance rules, drop counters and the per-session inbox of one receiving party.

    Checks run in this order, the first failure deciding the reason: malformed, peer_mismatch (TLS
    identity differs from the claimed sender), stranger, bad_certificate (version 2: the key
    certificate is not the identity key's, names another party or cluster, or is outside its
    validity window), bad_signature, wrong_recipient,
    session_not_open, replay, bad_round, oversize, over_budget, queue_full. Authentication comes before
    routing, so the routing counters only ever count envelopes that a roster member really signed.

    The size rules come from `limits`: per session and sender, only the rounds of the envelope's
    protocol, no payload above that round's largest message, and no more payload bytes in total than
    the protocol's budget (one budget per session and sender whatever protocols the envelopes name,
    so naming several protocols does not buy a sender more). A protocol the table does not know gets
    the conservative `limits.DEFAULT`.

    Certificates are checked once: a verified one is kept (by its encoded bytes, up to
    `certificates_cached`, oldest dropped first) with its envelope key, so each later envelope
    costs one Ed25519 verification in software. The validity window is checked on every envelope.
    `cluster`, when given, is what certificates must name (the roster's cluster name).
    """

    _UNKNOWN_LOGGED = 64  # protocol names warned about, at most (names come from signed envelopes)

    def __init__(
        self,
        me: int,
        identity_keys: Mapping[int, bytes],
        *,
        max_queued_per_sender: int = 64,
        max_per_session_sender: int = 4096,
        closed_memory: int = 4096,
        announcements: Iterable[str] = (),
        cluster: str | None = None,
        clock: Callable[[], float] = time.time,
        certificates_cached: int = 64,
    ) -> None:
        self.me = me
        # protocols whose envelopes only announce a session (join.py's hello): never queued in an inbox
        self._announcements = frozenset(announcements)
        self._keys = {index: VerifyKey(bytes(key)) for index, key in identity_keys.items()}
        self._cluster = cluster_bytes(cluster) if cluster is not None else None
        self._clock = clock
        self._certs: OrderedDict[bytes, _Certified] = OrderedDict()
        self._certs_cached = certificates_cached
        self._certs_lock = threading.Lock()
        self._parties = len(self._keys)
        self._unknown_protocols: set[str] = set()
        self._max_queued = max_queued_per_sender
        self._max_session = max_per_session_sender
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._closed_memory = closed_memory
        self._sessions: dict[bytes, _Session] = {}
        self._cond = threading.Condition()
        # Called (outside the lock) with each authenticated envelope for a session not open here: the
        # daemon uses it to join sessions a peer starts itself (the pairwise OT re-setup).
        self.on_unopened: Callable[[Envelope], None] | None = None
        # Called (outside the lock) with each announcement for a session open here (join.py's result note)
        self.on_announcement: Callable[[Envelope], None] | None = None
        # Called with the sender of each envelope whose signature verified, whatever happens to it
        # next: proof that the sender's daemon is up (liveness.Liveness.heard). Must be cheap.
        self.on_authenticated: Callable[[int], None] | None = None
        self.accepted = 0
        self.dropped: dict[str, int] = {reason.value: 0 for reason in DropReason}

    # --- sessions ---------------------------------------------------------------------------------

    def open_session(self, session_id: bytes) -> None:
        """Start accepting envelopes for `session_id`. A closed session id can never reopen."""
        if len(session_id) != SESSION_ID_LEN:
            raise EnvelopeError(f"session id must be {SESSION_ID_LEN} bytes")
        with self._cond:
            if session_id in self._closed:
                raise EnvelopeError(f"session {session_id.hex()[:16]}… was closed and cannot reopen")
            self._sessions.setdefault(session_id, _Session())

    def close_session(self, session_id: bytes) -> None:
        """Stop accepting for the session and free its queue and replay memory."""
        with self._cond:
            self._sessions.pop(session_id, None)
            self._closed[session_id] = None
            while len(self._closed) > self._closed_memory:
                self._closed.popitem(last=False)
            self._cond.notify_all()

    def wake(self, session_id: bytes) -> None:
        """End every wait on the session's inbox now (its runner has a result another way)."""
        with self._cond:
            session = self._sessions.get(session_id)
            if session is not None:
                session.woken = True
                self._cond.notify_all()

    def is_open(self, session_id: bytes) -> bool:
        with self._cond:
            return session_id in self._sessions

    # --- acceptance -------------------------------------------------------------------------------

    def drop(self, reason: DropReason, detail: str = "") -> Verdict:
        """Count a drop; the transport uses it for refusals it decides itself (pinned certificates)."""
        with self._cond:
            self.dropped[reason.value] += 1
        level = logging.WARNING if reason in _SECURITY_REASONS else logging.DEBUG
        log.log(level, "party %d dropped envelope: %s (%s)", self.me, reason.value, detail or "-")
        return Verdict(False, reason)

    def knows(self, party: int) -> bool:
        """Whether `party` is a roster member with an identity key (not a stranger)."""
        return party in self._keys

    def offer(self, data: bytes, tls_party: int | None = None) -> Verdict:
        """Decide on one encoded envelope; `tls_party` is the sender index from the TLS certificate."""
        try:
            env = Envelope.decode(data)
        except EnvelopeError as exc:
            return self.drop(DropReason.MALFORMED, str(exc))
        who = f"claimed sender {env.sender}"
        if tls_party is not None and tls_party != env.sender:
            return self.drop(DropReason.PEER_MISMATCH, f"{who}, TLS peer party-{tls_party}")
        key = self._keys.get(env.sender)
        if key is None:
            return self.drop(DropReason.STRANGER, who)
        if env.version == CERTIFIED_VERSION:
            certified = self._certified(env, key)
            if isinstance(certified, str):
                return self.drop(DropReason.BAD_CERTIFICATE, f"{who}: {certified}")
            key = certified
        try:
            key.verify(env.signing_bytes(), env.signature)
        except BadSignatureError:
            return self.drop(DropReason.BAD_SIGNATURE, who)
        if self.on_authenticated is not None:
            self.on_authenticated(env.sender)
        if env.recipient not in (BROADCAST, self.me):
            return self.drop(DropReason.WRONG_RECIPIENT, f"{who}, recipient {env.recipient}")
        return self._enqueue(env)

    def _certified(self, env: Envelope, identity: VerifyKey) -> VerifyKey | str:
        """The envelope key a version-2 envelope's certificate vouches for, or why it does not."""
        with self._certs_lock:
            known = self._certs.get(env.certificate)
            if known is not None:
                self._certs.move_to_end(env.certificate)
        if known is None:
            try:
                cert = env.key_certificate()
            except EnvelopeError as exc:
                return str(exc)
            if cert.party != env.sender:
                return f"certificate is for party {cert.party}"
            if self._cluster is not None and cert.cluster != self._cluster:
                return f"certificate is for cluster {cert.cluster!r}"
            if not cert.verify(identity):
                return "certificate not signed by the sender's identity key"
            known = _Certified(cert.party, VerifyKey(cert.public_key), cert)
            with self._certs_lock:
                self._certs[env.certificate] = known
                while len(self._certs) > self._certs_cached:
                    self._certs.popitem(last=False)
        if known.party != env.sender:  # the cache is keyed by bytes; the party check stays per envelope
            return f"certificate is for party {known.party}"
        if not known.cert.valid_at(self._clock()):
            return f"certificate valid {known.cert.not_before}..{known.cert.not_after}, not now"
        return known.key

    def _enqueue(self, env: Envelope) -> Verdict:
        if env.protocol in self._announcements:
            return self._announced(env)
        with self._cond:
            session = self._sessions.get(env.session_id)
            if session is None:
                reason = DropReason.SESSION_NOT_OPEN
            elif (env.sender, env.round, env.seq) in session.seen:
                reason = DropReason.REPLAY
            elif (reason := self._size_check(session, env)) is not None:
                pass
            else:
                queue = session.queues.setdefault((env.round, env.sender), [])
                total = session.per_sender.get(env.sender, 0)
                if len(queue) >= self._max_queued or total >= self._max_session:
                    reason = DropReason.QUEUE_FULL
                else:
                    session.seen.add((env.sender, env.round, env.seq))
                    session.per_sender[env.sender] = total + 1
                    spent = session.bytes_per_sender.get(env.sender, 0)
                    session.bytes_per_sender[env.sender] = spent + len(env.payload)
                    queue.append(env)
                    self.accepted += 1
                    self._cond.notify_all()
                    return Verdict(True, envelope=env)
        verdict = self.drop(reason, f"sender {env.sender} session {env.session_id.hex()[:16]} round {env.round}")
        if reason is DropReason.SESSION_NOT_OPEN:
            self._unopened(env)
        return verdict

    def _announced(self, env: Envelope) -> Verdict:
        """An announcement: size-checked like any envelope, then handed to the unopened-session hook if
        the session has neither opened nor ended here. It never enters an inbox (so it takes nothing
        from the session's byte budget and no protocol round ever reads it)."""
        limits, _ = limits_for(env.protocol, self._parties)
        largest = limits.max_payload(env.round)
        if largest is None or len(env.payload) > largest:
            reason = DropReason.BAD_ROUND if largest is None else DropReason.OVERSIZE
            return self.drop(reason, f"sender {env.sender} announcement round {env.round}")
        with self._cond:
            self.accepted += 1
            running = env.session_id in self._sessions
            known = running or env.session_id in self._closed
        if not known:
            self._unopened(env)
        elif running and self.on_announcement is not None:
            try:
                self.on_announcement(env)
            except Exception:  # a hook failure must not break the transport
                log.exception("party %d: handling an announcement failed", self.me)
        return Verdict(True, envelope=env)

    def _unopened(self, env: Envelope) -> None:
        if self.on_unopened is None:
            return
        try:
            self.on_unopened(env)
        except Exception:  # a hook failure must not break the transport
            log.exception("party %d: handling an envelope for an unopened session failed", self.me)

    def _size_check(self, session: _Session, env: Envelope) -> DropReason | None:
        """bad_round, oversize or over_budget for `env` in `session` (lock held), or None if it fits."""
        limits, known = limits_for(env.protocol, self._parties)
        if not known and env.protocol not in self._unknown_protocols \
                and len(self._unknown_protocols) < self._UNKNOWN_LOGGED:
            self._unknown_protocols.add(env.protocol)
            log.warning("party %d: protocol %r has no entry in the limits table; using the default limits",
                        self.me, env.protocol)
        largest = limits.max_payload(env.round)
        if largest is None:
            return DropReason.BAD_ROUND
        if len(env.payload) > largest:
            return DropReason.OVERSIZE
        if session.bytes_per_sender.get(env.sender, 0) + len(env.payload) > limits.budget:
            return DropReason.OVER_BUDGET
        return None

    def counters(self) -> dict[str, int]:
        """A consistent snapshot: `accepted` plus one entry per drop reason."""
        with self._cond:
            return {"accepted": self.accepted, **self.dropped}

    # --- inbox ------------------------------------------------------------------------------------

    def wait_for(
        self,
        session_id: bytes,
        round: int,
        senders: Iterable[int],
        timeout: float,
        count: int = 1,
    ) -> Arrival:
        """Wait until every sender has `count` envelopes queued for (session, round), or `timeout`.

        Returns and removes what arrived from the awaited senders, and names who is still missing, so the
        daemon can abort the session naming the silent parties. A closed session returns at once.
        """
        wanted = frozenset(senders)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                session = self._sessions.get(session_id)
                queues = session.queues if session is not None else {}
                missing = frozenset(s for s in wanted if len(queues.get((round, s), ())) < count)
                remaining = deadline - time.monotonic()
                if not missing or session is None or remaining <= 0 or session.woken:
                    break
                self._cond.wait(remaining)
            arrived = {s: queues.pop((round, s)) for s in sorted(wanted) if (round, s) in queues}
            return Arrival(arrived, missing)
