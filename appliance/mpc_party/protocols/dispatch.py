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
from appliance.mpc_party.protocols.dkls23.keygen import KeygenSession, KeygenState, decode_keygen_message
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.dkls23.sign import Presignature, PresigState, SignSession, decode_sign_message
from appliance.mpc_party.protocols.dkls23.sign import SignState as DklsSignState
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.group import ED25519, Rng
from appliance.mpc_party.protocols.sessions import BROADCAST, DkgSession, FrostSignSession, Outgoing, Session
from appliance.mpc_party.protocols.sharecodec import decode_keyshare, encode_keyshare
from appliance.mpc_party.protocols.wire import LocalProtocolError

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
        self.participants = tuple(range(1, session.n + 1))
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
    """DKLs23 signing in one go: presignature rounds 1-2, then round 3 with the digest, then combine."""

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
        return _outgoing(self.session.round1(), 1)

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        msg = decode_sign_message(payload, sender)
        if self._presig is not None:
            self._presig.receive(msg)
            self._combine_if_complete()
            return []
        self.session.receive(msg)
        missing = self.session.missing()
        if self.session.state is DklsSignState.WAITING_ROUND1 and not missing["round1"]:
            return _outgoing(self.session.round2(), 2)
        if self.session.state is DklsSignState.WAITING_ROUND2 and not missing["round2"]:
            self._presig = self.session.finish()
            out = _outgoing([self._presig.round3(self.digest)], 3)
            self._combine_if_complete()  # round-3 shares may have arrived early
            return out
        return []

    def _combine_if_complete(self) -> None:
        assert self._presig is not None
        if self._presig.state is PresigState.WAITING_ROUND3 and not self._presig.waiting_for():
            self._signature = self._presig.combine().to_compact()

    @property
    def current_round(self) -> int:
        if self._presig is not None:
            return 3
        return 1 if self.session.state in (DklsSignState.ROUND1, DklsSignState.WAITING_ROUND1) else 2

    def waiting_for(self) -> list[int]:
        if self._presig is not None:
            return self._presig.waiting_for() if self._presig.state is PresigState.WAITING_ROUND3 else []
        missing = self.session.missing()
        return missing["round1"] if self.current_round == 1 else missing["round2"]

    @property
    def done(self) -> bool:
        return self._signature is not None

    def result(self) -> bytes:
        assert self._signature is not None, "signing not finished"
        return self._signature


def keygen_session(key_type: str, session_id: bytes, me: int, n: int, t: int, rng: Rng) -> Session:
    _check(key_type)
    if key_type == EDDSA:
        return DkgSession(DkgParty(ED25519, session_id, me, n, t, rng), "dkg-ed25519")
    return DklsKeygenSession(KeygenSession(session_id, me, n, t, rng))


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
