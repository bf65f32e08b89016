"""Presignature pools, protocol side: make the message-independent part of a signature ahead, sign
in one round later (docs/protocols/presign-pool.md). Sans-IO like every protocol here.

An *entry* is one party's half of a presignature made by one signer set for one key version:

- DKLs23: rounds 0-2 of `dkls23/sign.py` (`Presignature`: R, phi_i, u_i, v_i);
- FROST: round 1 (`FrostSigner.precommitted`: this signer's nonces (d_i, e_i) and every signer's
  commitments (D_j, E_j)).

Its *entry id* is the session id of the fill session that made it: SHA-256 over (keyring, key type,
public key, share version, signer set, leader, leader's fresh nonce), so an entry is bound to exactly
one (key, version, signer set), and every member of the set computes the same id. The leader (lowest
index of the set) starts a fill; its first message carries a `FillHeader`, from which the other
members recompute the id before they join (`fill_session_id`).

Signing from a pool (`PoolSignSession`) is one broadcast round: each signer sends an *offer*
naming the entry it uses (its oldest for the set; `NO_ENTRY` if it has none) with its share for the
message already computed from that entry, plus the first message of the full protocol. When every
signer named the same entry, every signer combines the shares and verifies the signature: done.
Otherwise nobody combines; every entry named by anyone is burned by everyone (it may have been
opened for this message by its holder), and the session carries on as the full protocol from the
first messages already exchanged. So:

- an entry is consumed (taken out of the pool) before its share leaves, and never opened twice;
- a mismatch costs no extra round beyond the full protocol, and needs no agreement protocol: each
  signer decides from the same set of offers;
- a peer that names a wrong entry, or aborts after seeing offers, has burned entries on every side
  and learned one share of a signature for a message the chain asked for; it can make that signature
  itself only with every other share, which is what any signer of the full protocol sees too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.mpc_party.protocols.dispatch import EDDSA, DklsSignSession
from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.dkls23.sign import Presignature, PresigState, decode_sign_message
from appliance.mpc_party.protocols.frost import FROST_ED25519, FrostSigner, decode_frost_message
from appliance.mpc_party.protocols.frost.core import Commitment, SigningNonces
from appliance.mpc_party.protocols.group import Rng
from appliance.mpc_party.protocols.sessions import BROADCAST, FrostSignSession, Outgoing, Session
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
    transcript_hash,
)

FILL_DOMAIN = b"zrkeyring/presign-pool/fill/v1"
ENTRY_ID_LEN = SESSION_ID_LEN
NO_ENTRY = bytes(ENTRY_ID_LEN)
NONCE_LEN = 32
MAX_SHARE_LEN = 512  # a DKLs23 round-3 or FROST round-2 message is well under this
MAX_FIRST_LEN = 1 << 16  # the full protocol's first message (a nonce or two commitments)
FILL_PROTOCOLS = ("dkls23-presign", "frost-ed25519-precommit")


def leader(signers: Sequence[int]) -> int:
    """The member of a signer set that starts its fill sessions."""
    return min(signers)


def fill_session_id(keyring: str, key_type: str, public_key: bytes, version: int, signers: Sequence[int],
                    nonce: bytes) -> bytes:
    """The entry id: binds the entry to (keyring, key type, key, share version, signer set) and to the
    leader's fresh nonce (so no two fills share an id). Fixed-width, length-prefixed fields."""
    ordered = sorted(set(signers))
    if len(nonce) != NONCE_LEN:
        raise LocalProtocolError(f"fill nonce must be {NONCE_LEN} bytes")
    w = Writer().var(keyring.encode()).var(key_type.encode()).var(public_key).u32(version)
    w.u16(len(ordered))
    for j in ordered:
        w.u16(j)
    w.u16(leader(ordered)).fixed(nonce, NONCE_LEN)
    return transcript_hash(FILL_DOMAIN, w.getvalue())


@dataclass(frozen=True)
class FillHeader:
    """What a follower needs to recompute a fill's entry id and check it may join: carried in front of
    every member's first fill message."""

    public_key: bytes
    version: int
    signers: tuple[int, ...]
    nonce: bytes

    def encode(self) -> bytes:
        w = Writer().var(self.public_key).u32(self.version).u16(len(self.signers))
        for j in self.signers:
            w.u16(j)
        return w.fixed(self.nonce, NONCE_LEN).getvalue()

    @classmethod
    def split(cls, payload: bytes, sender: int | None = None) -> tuple[FillHeader, bytes]:
        """(header, the rest of the payload); ProtocolAbort naming `sender` when malformed."""
        r = Reader(payload, sender)
        public_key, version = r.var(64), r.u32()
        count = r.u16()
        if not 1 <= count <= 64:
            raise ProtocolAbort(f"fill header names {count} signers", sender)
        signers = tuple(r.u16() for _ in range(count))
        if list(signers) != sorted(set(signers)):
            raise ProtocolAbort("fill header's signers are not sorted and distinct", sender)
        nonce = r.fixed(NONCE_LEN)
        header = cls(public_key, version, signers, nonce)
        return header, payload[len(header.encode()):]


# --- entries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrostPrecommit:
    """A FROST signer's round 1 made ahead: its own nonces (secret, single use) and every signer's
    commitments. No encoder: it never leaves the process."""

    nonces: SigningNonces = field(repr=False)
    commitments: dict[int, Commitment]


@dataclass
class PoolEntry:
    """One party's half of one presignature; used for one message at most, then gone."""

    entry_id: bytes
    key_type: str
    public_key: bytes
    version: int
    signers: tuple[int, ...]
    material: Presignature | FrostPrecommit = field(repr=False)


class _HeaderedFill(Session):
    """A fill session: the inner session's first message from every member carries the FillHeader
    and the id of the sender's newest entry of the set (NO_ENTRY: none). A member whose header differs
    from ours is aborted on (it would be another entry); a member whose newest entry differs from ours
    is out of step with us (one of us kept a fill the other lost): `out_of_step` tells the caller to
    empty the set's pool before keeping this entry, as that member does too."""

    def __init__(self, inner: Session, header: FillHeader, newest: bytes = NO_ENTRY) -> None:
        if len(newest) != ENTRY_ID_LEN:
            raise LocalProtocolError(f"newest entry id must be {ENTRY_ID_LEN} bytes")
        self.inner, self.header, self.newest = inner, header, bytes(newest)
        self.me, self.participants = inner.me, inner.participants
        self._headed: set[int] = set()
        self._header_bytes = header.encode()
        self.out_of_step = False

    def start(self) -> list[Outgoing]:
        out = self.inner.start()
        if len(out) != 1 or out[0].recipient != BROADCAST:
            raise LocalProtocolError("a fill's first step must be one broadcast")
        return [Outgoing(BROADCAST, out[0].round, self._header_bytes + self.newest + out[0].payload)]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        if sender not in self._headed:
            header, payload = FillHeader.split(payload, sender)
            if not ct_equal(header.encode(), self._header_bytes):
                raise ProtocolAbort("fill header names another key, version, signer set or nonce", sender)
            if len(payload) < ENTRY_ID_LEN:
                raise ProtocolAbort("fill message too short for the newest entry id", sender)
            if not ct_equal(payload[:ENTRY_ID_LEN], self.newest):
                self.out_of_step = True
            payload = payload[ENTRY_ID_LEN:]
            self._headed.add(sender)
        return self.inner.receive(sender, payload)

    @property
    def done(self) -> bool:
        return self.inner.done

    @property
    def current_round(self) -> int:
        return self.inner.current_round

    def waiting_for(self) -> list[int]:
        return self.inner.waiting_for()


class _DklsPresign(DklsSignSession):
    """DKLs23 rounds 0-2 only: the session ends with the presignature, no digest is known."""

    protocol = "dkls23-presign"

    def __init__(self, key: Dkls23Key, entry_id: bytes, signers: Sequence[int], rng: Rng) -> None:
        super().__init__(key, entry_id, signers, bytes(32), rng)

    def _after_round2(self) -> list[Outgoing]:
        self._presig = self.session.finish()
        return []

    @property
    def done(self) -> bool:
        return self._presig is not None

    def result(self) -> Presignature:
        assert self._presig is not None, "presign not finished"
        return self._presig


class _FrostPrecommit(FrostSignSession):
    """FROST round 1 only: every signer's commitments in, our nonces kept for one later message."""

    protocol = "frost-ed25519-precommit"

    def __init__(self, share: KeyShare, entry_id: bytes, signers: Sequence[int], rng: Rng) -> None:
        super().__init__(FROST_ED25519, share, entry_id, signers, b"", rng)
        self.protocol = _FrostPrecommit.protocol
        self._pre: FrostPrecommit | None = None

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        self.signer.receive(decode_frost_message(self.suite.group, payload, sender))
        if not self.signer.missing()["commitments"]:
            self._pre = FrostPrecommit(*self.signer.precommitted())
        return []

    @property
    def done(self) -> bool:
        return self._pre is not None

    def result(self) -> FrostPrecommit:
        assert self._pre is not None, "precommit not finished"
        return self._pre

    @property
    def current_round(self) -> int:
        return 1

    def waiting_for(self) -> list[int]:
        return [] if self._pre is not None else self.signer.missing()["commitments"]


class FillSession(_HeaderedFill):
    """One member's run of one fill; `result()` is its PoolEntry."""

    def __init__(self, keyring: str, key_type: str, share: Any, version: int, signers: Sequence[int],
                 nonce: bytes, rng: Rng, newest: bytes = NO_ENTRY) -> None:
        ordered = tuple(sorted(set(signers)))
        public_key = self.public_key_of(key_type, share)
        self.key_type, self.entry_id = key_type, fill_session_id(keyring, key_type, public_key, version,
                                                                 ordered, nonce)
        if key_type == EDDSA:
            inner: Session = _FrostPrecommit(share, self.entry_id, ordered, rng)
        else:
            inner = _DklsPresign(share, self.entry_id, ordered, rng)
        super().__init__(inner, FillHeader(public_key, version, ordered, nonce), newest)
        self.protocol = inner.protocol

    @staticmethod
    def public_key_of(key_type: str, share: Any) -> bytes:
        return share.group_public_key if key_type == EDDSA else share.public_key

    def result(self) -> PoolEntry:
        h = self.header
        return PoolEntry(self.entry_id, self.key_type, h.public_key, h.version, h.signers, self.inner.result())


# --- signing from the pool -------------------------------------------------------------------------


class _Opened:
    """An entry opened for one message: our share, peers' shares in, the signature out."""

    def __init__(self, entry: PoolEntry, share: Any, message: bytes) -> None:
        self.entry = entry
        m = entry.material
        if isinstance(m, Presignature):
            if m.state is not PresigState.READY:
                raise LocalProtocolError("presignature already used")
            self._presig: Presignature | None = m
            self.own = m.round3(message).to_bytes()  # burns the presignature
        else:
            self._presig = None
            self._frost = FrostSigner.from_precommitted(FROST_ED25519, share, entry.entry_id, entry.signers,
                                                        message, m.nonces, m.commitments)
            self.own = self._frost.sign().to_bytes()  # consumes the nonces

    def receive(self, sender: int, data: bytes) -> None:
        if self._presig is not None:
            self._presig.receive(decode_sign_message(data, sender))
        else:
            self._frost.receive(decode_frost_message(FROST_ED25519.group, data, sender))

    def combine(self) -> bytes:
        """The signature, verified inside (DKLs23 `finalize_signature`, FROST `aggregate`)."""
        if self._presig is not None:
            return self._presig.combine().to_compact()
        return self._frost.aggregate()


@dataclass(frozen=True)
class Offer:
    """A signer's one message of a pool signing: the entry it opened (NO_ENTRY: none), its share for
    the message from that entry (empty: none), and the full protocol's first message."""

    entry_id: bytes
    share: bytes
    first: bytes

    def encode(self) -> bytes:
        return Writer().fixed(self.entry_id, ENTRY_ID_LEN).var(self.share).var(self.first).getvalue()

    @classmethod
    def decode(cls, data: bytes, sender: int) -> Offer:
        r = Reader(data, sender)
        offer = cls(r.fixed(ENTRY_ID_LEN), r.var(MAX_SHARE_LEN), r.var(MAX_FIRST_LEN))
        r.finish()
        if ct_equal(offer.entry_id, NO_ENTRY) != (not offer.share):
            raise ProtocolAbort("offer names an entry without a share, or a share without an entry", sender)
        return offer


HIT, MISS, MISMATCH = "hit", "miss", "mismatch"


class PoolSignSession(Session):
    """Sign from a pool entry in one round, or carry on as the full protocol (`fallback`) when the
    signers did not all open the same entry. See the module docstring.

    `entry` must already be out of the pool (the caller took it): it is opened in `start`, before the
    offer leaves. After the session, `named` holds every entry id a peer offered: the caller burns
    those it still holds (a peer's view of the pool is never trusted to match ours)."""

    def __init__(self, fallback: Session, entry: PoolEntry | None, share: Any, message: bytes) -> None:
        if entry is not None and tuple(sorted(entry.signers)) != tuple(fallback.participants):
            raise LocalProtocolError("the entry was made by another signer set")
        self.fallback, self.entry, self._share, self._message = fallback, entry, share, bytes(message)
        self.protocol = fallback.protocol + "-pool"
        self.me, self.participants = fallback.me, fallback.participants
        self._offers: dict[int, Offer] = {}
        self._opened: _Opened | None = None
        self._signature: bytes | None = None
        self.outcome = ""  # HIT, MISS (someone had no entry) or MISMATCH, once decided
        self.named: set[bytes] = set()

    def start(self) -> list[Outgoing]:
        first = self.fallback.start()
        if len(first) != 1 or first[0].recipient != BROADCAST or first[0].round != 1:
            raise LocalProtocolError("the full protocol's first step must be one round-1 broadcast")
        entry_id, share = NO_ENTRY, b""
        if self.entry is not None:
            self._opened = _Opened(self.entry, self._share, self._message)
            entry_id, share = self.entry.entry_id, self._opened.own
        return [Outgoing(BROADCAST, 1, Offer(entry_id, share, first[0].payload).encode())]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        if self.outcome and self.outcome != HIT:
            return self.fallback.receive(sender, payload)
        if self.outcome == HIT or sender in self._offers:
            raise ProtocolAbort("second message in a pool signing's one round", sender)
        if sender not in self.peers:
            raise ProtocolAbort(f"party {sender} is not a signer of this session", sender)
        offer = Offer.decode(payload, sender)
        self._offers[sender] = offer
        if not ct_equal(offer.entry_id, NO_ENTRY):
            self.named.add(offer.entry_id)
        return self._decide() if len(self._offers) == len(self.peers) else []

    def _decide(self) -> list[Outgoing]:
        own = self.entry.entry_id if self.entry is not None else NO_ENTRY
        if self._opened is not None and all(ct_equal(o.entry_id, own) for o in self._offers.values()):
            self.outcome = HIT
            for sender, offer in sorted(self._offers.items()):
                self._opened.receive(sender, offer.share)
            self._signature = self._opened.combine()
            return []
        anyone_offered = self._opened is not None or bool(self.named)
        self.outcome = MISMATCH if anyone_offered else MISS
        self._opened = None  # our entry is burned: its share for this message has left
        out: list[Outgoing] = []
        for sender, offer in sorted(self._offers.items()):
            out += self.fallback.receive(sender, offer.first)
        return out

    @property
    def done(self) -> bool:
        return self._signature is not None or (self.outcome not in ("", HIT) and self.fallback.done)

    def result(self) -> bytes:
        if self._signature is not None:
            return self._signature
        return self.fallback.result()

    @property
    def current_round(self) -> int:
        return self.fallback.current_round if self.outcome not in ("", HIT) else 1

    def waiting_for(self) -> list[int]:
        if self.outcome == HIT:
            return []
        if self.outcome:
            return self.fallback.waiting_for()
        return [p for p in self.peers if p not in self._offers]
