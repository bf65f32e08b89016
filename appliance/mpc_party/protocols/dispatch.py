"""Which protocol answers which zrChain key type, behind one face for the party daemon.

    KEY_TYPE_EDDSA_ED25519                           -> generic DKG over Ed25519 + FROST(Ed25519, SHA-512)
    KEY_TYPE_ECDSA_SECP256K1, KEY_TYPE_BITCOIN_SECP256K1 -> DKLs23 keygen + DKLs23 signing

Also the DKLs23 `Session` adapters (the FROST and DKG ones live in `sessions`), and the share export/
import used around HSM sealing. Public keys and signatures come out in the chain's formats: 33-byte
compressed / 32-byte Ed25519 keys; 64-byte r||s (low-S) / 64-byte Ed25519 signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.mpc_party.protocols.dkg import DkgParty, KeyShare
from appliance.mpc_party.protocols.dkls23 import resetup
from appliance.mpc_party.protocols.dkls23.keygen import KeygenSession, KeygenState, decode_keygen_message
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.dkls23.resetup import PairResetupSession
from appliance.mpc_party.protocols.dkls23.sign import Presignature, PresigState, SignSession, decode_sign_message
from appliance.mpc_party.protocols.dkls23.sign import SignState as DklsSignState
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.group import ED25519, Rng
from appliance.mpc_party.protocols.sessions import BROADCAST, DkgSession, FrostSignSession, Outgoing, Session
from appliance.mpc_party.protocols.sharecodec import decode_keyshare, encode_keyshare
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort, ct_equal

EDDSA = "KEY_TYPE_EDDSA_ED25519"
ECDSA_TYPES = ("KEY_TYPE_ECDSA_SECP256K1", "KEY_TYPE_BITCOIN_SECP256K1")
SUPPORTED = (EDDSA, *ECDSA_TYPES)


def _check(key_type: str) -> None:
    if key_type not in SUPPORTED:
        raise LocalProtocolError(f"unsupported key type {key_type!r}")


def _outgoing(msgs: Sequence[Any], round_: int) -> list[Outgoing]:
    return [Outgoing(BROADCAST if m.BROADCAST else m.recipient, round_, m.to_bytes()) for m in msgs]


class DklsKeygenSession(Session):
    """DKLs23 keygen: five message rounds (DKG + pairwise OT set-up), then the key."""

    protocol = "dkls23-keygen"
    _WAITING = {KeygenState.ROUND2: 1, KeygenState.ROUND3: 2, KeygenState.ROUND4: 3,
                KeygenState.ROUND5: 4, KeygenState.FINISH: 5}

    def __init__(self, session: KeygenSession) -> None:
        self.session, self.me = session, session.me
        self.participants = session.participants
        self._key: Dkls23Key | None = None

    def start(self) -> list[Outgoing]:
        return _outgoing(self.session.round1(), 1)

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        self.session.receive(decode_keygen_message(payload, sender))
        if self.waiting_for():
            return []
        round_ = self.current_round
        if round_ == 5:
            self._key = self.session.finish()
            return []
        return _outgoing(getattr(self.session, f"round{round_ + 1}")(), round_ + 1)

    @property
    def current_round(self) -> int:
        return self._WAITING.get(self.session.state, 5)

    def waiting_for(self) -> list[int]:
        if self._key is not None:
            return []
        round_ = self.current_round
        box = self.session._inbox[round_]  # noqa: SLF001 - the OT step inbox is the round's state
        missing = {j for j in self.session.peers if j not in box}
        dkg_missing = self.session._dkg.missing()  # noqa: SLF001
        if round_ == 1:
            missing |= set(dkg_missing["commitments"])
        elif round_ == 2:
            missing |= set(dkg_missing["echoes"]) | set(dkg_missing["shares"])
        return sorted(missing)

    @property
    def done(self) -> bool:
        return self._key is not None

    def result(self) -> Dkls23Key:
        assert self._key is not None, "keygen not finished"
        return self._key


class DklsSignSession(Session):
    """DKLs23 signing in one go: nonces (round 1), presignature rounds (2-3), shares (4), combine."""

    protocol = "dkls23-sign"

    def __init__(self, key: Dkls23Key, session_id: bytes, signers: Sequence[int], digest: bytes,
                 rng: Rng) -> None:
        if len(digest) != 32:
            raise LocalProtocolError("ECDSA signing needs a 32-byte digest")
        self.session = SignSession(key, session_id, list(signers), rng)
        self.me, self.participants, self.digest = key.party_id, tuple(sorted(signers)), bytes(digest)
        self._presig: Presignature | None = None
        self._signature: bytes | None = None

    def start(self) -> list[Outgoing]:
        return _outgoing([self.session.round0()], 1)

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        msg = decode_sign_message(payload, sender)
        if self._presig is not None:
            self._presig.receive(msg)
            self._combine_if_complete()
            return []
        self.session.receive(msg)
        missing = self.session.missing()
        if self.session.state is DklsSignState.WAITING_ROUND0 and not missing["round0"]:
            out = _outgoing(self.session.round1(), 2)
            if not missing["round1"]:  # every peer's round-1 message came early
                out += self._after_round1()
            return out
        if self.session.state is DklsSignState.WAITING_ROUND1 and not missing["round1"]:
            return self._after_round1()
        if self.session.state is DklsSignState.WAITING_ROUND2 and not missing["round2"]:
            return self._after_round2()
        return []

    def _after_round1(self) -> list[Outgoing]:
        out = _outgoing(self.session.round2(), 3)
        if not self.session.missing()["round2"]:
            out += self._after_round2()
        return out

    def _after_round2(self) -> list[Outgoing]:
        self._presig = self.session.finish()
        out = _outgoing([self._presig.round3(self.digest)], 4)
        self._combine_if_complete()  # round-3 shares may have arrived early
        return out

    def _combine_if_complete(self) -> None:
        assert self._presig is not None
        if self._presig.state is PresigState.WAITING_ROUND3 and not self._presig.waiting_for():
            self._signature = self._presig.combine().to_compact()

    @property
    def current_round(self) -> int:
        if self._presig is not None:
            return 4
        return {DklsSignState.ROUND0: 1, DklsSignState.WAITING_ROUND0: 1,
                DklsSignState.WAITING_ROUND1: 2}.get(self.session.state, 3)

    def waiting_for(self) -> list[int]:
        if self._presig is not None:
            return self._presig.waiting_for() if self._presig.state is PresigState.WAITING_ROUND3 else []
        missing = self.session.missing()
        return missing[f"round{self.current_round - 1}"]

    @property
    def done(self) -> bool:
        return self._signature is not None

    def result(self) -> bytes:
        assert self._signature is not None, "signing not finished"
        return self._signature


class DklsResetupSession(Session):
    """Pairwise OT re-setup of one DKLs23 key with one peer (`dkls23/resetup.py`): rounds 1-5, each
    one VSOT step per side; round 1 carries the header (public key, initiator's nonce) so the
    responder can recompute the session id. Result: the key with a fresh pair toward the peer."""

    protocol = "dkls23-ot-resetup"

    def __init__(self, key: Dkls23Key, session_id: bytes, peer: int, nonce: bytes, rng: Rng) -> None:
        self.session = PairResetupSession(key, session_id, peer, rng)
        self.me, self.peer = key.party_id, peer
        self.participants = tuple(sorted((key.party_id, peer)))
        self._header = resetup.header(key.public_key, nonce)
        self._step = 0  # the last step we sent
        self._key: Dkls23Key | None = None

    def start(self) -> list[Outgoing]:
        self._step = 1
        return [Outgoing(self.peer, 1, self._header + self.session.round1().to_bytes())]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        if self._step == 1 and not self.session.has(1):
            try:
                public_key, nonce, payload = resetup.split_header(payload)
            except ValueError as exc:
                raise ProtocolAbort(f"OT re-setup: {exc}", sender) from None
            if not ct_equal(public_key + nonce, self._header):
                raise ProtocolAbort("OT re-setup header names another key or nonce", sender)
        msg = resetup.decode_resetup_message(payload, sender)
        self.session.receive(msg)
        if msg.step != self._step:
            raise ProtocolAbort(f"OT re-setup step {msg.step} while in step {self._step}", sender)
        if self._step == 5:
            self._key = self.session.finish()
            return []
        self._step += 1
        produced = getattr(self.session, f"round{self._step}")()
        return [Outgoing(self.peer, self._step, produced.to_bytes())]

    @property
    def current_round(self) -> int:
        return self._step

    def waiting_for(self) -> list[int]:
        return [] if self._key is not None else [self.peer]

    @property
    def done(self) -> bool:
        return self._key is not None

    def result(self) -> Dkls23Key:
        assert self._key is not None, "re-setup not finished"
        return self._key


def resetup_session(share: Any, session_id: bytes, peer: int, nonce: bytes, rng: Rng) -> Session:
    if not isinstance(share, Dkls23Key):
        raise LocalProtocolError("OT re-setup applies to DKLs23 keys only")
    return DklsResetupSession(share, session_id, peer, nonce, rng)


def keygen_session(key_type: str, session_id: bytes, me: int, n: int, t: int, rng: Rng,
                   participants: Sequence[int] | None = None) -> Session:
    """A keygen among `participants` (default every party 1..n; at least t of them)."""
    _check(key_type)
    if key_type == EDDSA:
        return DkgSession(DkgParty(ED25519, session_id, me, n, t, rng, participants=participants), "dkg-ed25519")
    return DklsKeygenSession(KeygenSession(session_id, me, n, t, rng, participants=participants))


def keygen_dkg(session: Session) -> DkgParty:
    """The DKG of a finished keygen session: its transcript digest and summed commitments are what
    the confirmation round signs."""
    if isinstance(session, DkgSession):
        return session.party
    if isinstance(session, DklsKeygenSession):
        return session.session.dkg
    raise LocalProtocolError(f"not a keygen session: {type(session).__name__}")


def sign_session(key_type: str, share: Any, session_id: bytes, signers: Sequence[int], data: bytes,
                 rng: Rng) -> Session:
    _check(key_type)
    if key_type == EDDSA:
        return FrostSignSession(FROST_ED25519, share, session_id, signers, data, rng)
    return DklsSignSession(share, session_id, signers, data, rng)


def export_share(key_type: str, share: KeyShare | Dkls23Key) -> tuple[bytes, bytes]:
    """(chain-format public key, bytes to seal) for a new share."""
    _check(key_type)
    if key_type == EDDSA:
        assert isinstance(share, KeyShare)
        return share.group_public_key, encode_keyshare(share)
    assert isinstance(share, Dkls23Key)
    return share.public_key, share.to_bytes()


def import_share(key_type: str, plaintext: bytes) -> KeyShare | Dkls23Key:
    _check(key_type)
    if key_type == EDDSA:
        return decode_keyshare(plaintext)
    return Dkls23Key.from_bytes(plaintext)
