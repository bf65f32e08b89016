"""FROST signing as a sans-IO state machine: one `FrostSigner` per party per signing session.

Every signer broadcasts its commitments, then its signature share, to every other signer; every
signer then checks all shares and aggregates (each party posts its own fulfilment, so each needs
the signature). Sequence::

    s = FrostSigner(suite, key_share, session_id, signers=[1, 3], message=b"...", rng=rng)
    c = s.commit()          # -> SigningCommitment (broadcast)
    s.receive(peer_msg)     # SigningCommitment / SignatureShareMsg from the other signers, any order
    z = s.sign()            # -> SignatureShareMsg (broadcast); needs every commitment; nonces consumed
    sig = s.aggregate()     # -> signature bytes; needs every share; names a cheating signer

The session id is agreed outside (from the chain request) and bound into every message; the message
and the signer set are bound through the binding factors. A second `sign` or a replayed round raises
`LocalProtocolError`; a duplicate, foreign or malformed peer message raises `ProtocolAbort` naming it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from appliance.mpc_party.protocols.dkg import KeyShare, PeerSet, WireMessage, decode_message
from appliance.mpc_party.protocols.frost import core
from appliance.mpc_party.protocols.frost.ciphersuite import Ciphersuite
from appliance.mpc_party.protocols.group import Group, Point, Rng, default_rng
from appliance.mpc_party.protocols.wire import (
    SESSION_ID_LEN,
    LocalProtocolError,
    ProtocolAbort,
    Reader,
    Writer,
    ct_equal,
    transcript_hash,
)

KIND_FROST_COMMITMENT = 0x21
KIND_FROST_SHARE = 0x22
_VIEW_DOMAIN = b"zrkeyring/frost/view/v1"


@dataclass(frozen=True)
class SigningCommitment(WireMessage):
    """Round 1, broadcast: header | D_i | E_i."""

    KIND: ClassVar[int] = KIND_FROST_COMMITMENT
    BROADCAST: ClassVar[bool] = True
    hiding: Point
    binding: Point

    def _write_body(self, w: Writer) -> None:
        w.point(self.group, self.hiding).point(self.group, self.binding)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {"hiding": r.point(group), "binding": r.point(group)}


@dataclass(frozen=True)
class SignatureShareMsg(WireMessage):
    """Round 2, broadcast: header | z_i | view (32 bytes).

    `view` hashes what the signer signed over (key, message, every signer's commitments), so a
    signer that was shown different commitments, or a different message, is told apart from one
    that sent a bad share."""

    KIND: ClassVar[int] = KIND_FROST_SHARE
    BROADCAST: ClassVar[bool] = True
    share: int
    view: bytes

    def _write_body(self, w: Writer) -> None:
        w.scalar(self.group, self.share).fixed(self.view, 32)

    @classmethod
    def _read_body(cls, r: Reader, group: Group) -> dict:
        return {"share": r.scalar(group), "view": r.fixed(32)}


FrostMessage = SigningCommitment | SignatureShareMsg
_KINDS: dict[int, type[WireMessage]] = {c.KIND: c for c in (SigningCommitment, SignatureShareMsg)}


def decode_frost_message(group: Group, data: bytes, sender: int | None = None) -> FrostMessage:
    """Parse any FROST signing message; malformed input raises ProtocolAbort naming `sender`."""
    return decode_message(_KINDS, group, data, sender)  # type: ignore[return-value]


class SignState(enum.Enum):
    COMMIT = "ready for round 1 (commit)"
    WAITING_COMMITMENTS = "waiting for round-1 commitments"
    WAITING_SHARES = "waiting for round-2 signature shares"
    DONE = "done"
    FAILED = "failed"


class FrostSigner:
    """One signer's session. See the module docstring."""

    def __init__(self, suite: Ciphersuite, key_share: KeyShare, session_id: bytes, signers: Sequence[int],
                 message: bytes, rng: Rng = default_rng, *, taproot_merkle_root: bytes | None = None) -> None:
        if key_share.group is not suite.group:
            raise LocalProtocolError(f"{suite.name} needs a {suite.group.name} key share")
        ids = sorted(set(signers))
        if len(ids) != len(signers) or len(ids) < key_share.t or key_share.party_id not in ids:
            raise LocalProtocolError(f"signer set {list(signers)} must be distinct, at least t={key_share.t} "
                                     f"parties and include party {key_share.party_id}")
        if not set(ids) <= set(key_share.verification_shares):
            raise LocalProtocolError(f"signer ids must be holders of the key: {sorted(key_share.verification_shares)}")
        if len(session_id) != SESSION_ID_LEN:
            raise LocalProtocolError(f"session id must be {SESSION_ID_LEN} bytes")
        self.suite, self.share = suite, key_share
        self.session_id, self.signers, self.message = bytes(session_id), tuple(ids), bytes(message)
        try:
            self.key = suite.signing_key(key_share.group_public_key, taproot_merkle_root)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self._rng = rng
        self._peers = PeerSet(self.session_id, key_share.party_id, set(ids) - {key_share.party_id})
        self.state = SignState.COMMIT
        self._nonces: core.SigningNonces | None = None
        self._commitments: dict[int, core.Commitment] = {}
        self._commit_msgs: dict[int, SigningCommitment] = {}
        self._shares: dict[int, int] = {}
        self._share_msgs: dict[int, SignatureShareMsg] = {}
        self._package: core.SigningPackage | None = None
        self._view = b""

    @classmethod
    def from_precommitted(cls, suite: Ciphersuite, key_share: KeyShare, session_id: bytes, signers: Sequence[int],
                          message: bytes, nonces: core.SigningNonces,
                          commitments: dict[int, core.Commitment]) -> FrostSigner:
        """A signer whose round 1 ran ahead (a presignature pool entry, `protocols/pool.py`): its own
        single-use nonces and every signer's commitments, all bound to `session_id` (the entry id),
        now meet the message. Round 2 (`sign`) is all that is left; the nonces are consumed there."""
        signer = cls(suite, key_share, session_id, signers, message)
        if set(commitments) != set(signer.signers) or nonces.commitment is None or \
                commitments[key_share.party_id] != nonces.commitment:
            raise LocalProtocolError("precommitted nonces do not match the signer set's commitments")
        signer._nonces, signer._commitments = nonces, dict(commitments)
        signer._commit_msgs = {j: SigningCommitment(suite.group, signer.session_id, j, c.hiding, c.binding)
                               for j, c in commitments.items() if j != key_share.party_id}
        signer.state = SignState.WAITING_COMMITMENTS
        return signer

    def precommitted(self) -> tuple[core.SigningNonces, dict[int, core.Commitment]]:
        """Round 1 done and every commitment in: hand out the nonces and commitments (once) for a later
        `from_precommitted`; this signer is finished with them."""
        self._require(SignState.WAITING_COMMITMENTS, "precommitted")
        if missing := self.missing()["commitments"]:
            raise LocalProtocolError(f"precommitted needs commitments from parties {missing}")
        assert self._nonces is not None
        nonces, self._nonces = self._nonces, None
        self.state = SignState.DONE
        return nonces, dict(self._commitments)

    def _require(self, state: SignState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"{what} called in state '{self.state.value}'")

    def missing(self) -> dict[str, list[int]]:
        peers = sorted(self._peers.peers)
        return {"commitments": [p for p in peers if p not in self._commitments],
                "shares": [p for p in peers if p not in self._shares]}

    def commit(self) -> SigningCommitment:
        self._require(SignState.COMMIT, "commit")
        me = self.share.party_id
        self._nonces = core.commit(self.suite, me, self.share.secret, self._rng)
        own = self._nonces.commitment
        assert own is not None
        self._commitments[me] = own
        self.state = SignState.WAITING_COMMITMENTS
        return SigningCommitment(self.suite.group, self.session_id, me, own.hiding, own.binding)

    def receive(self, msg: FrostMessage) -> None:
        """Take one peer message. Validates before storing: a rejected message changes nothing."""
        if self.state in (SignState.DONE, SignState.FAILED):
            raise LocalProtocolError(f"receive called in state '{self.state.value}'")
        g = self.suite.group
        if isinstance(msg, SigningCommitment):
            self._peers.check(msg, self._commit_msgs)
            for p in (msg.hiding, msg.binding):
                try:
                    g.decode_point(p)
                except ValueError as exc:
                    raise ProtocolAbort(f"invalid nonce commitment: {exc}", msg.sender) from None
            self._commit_msgs[msg.sender] = msg
            self._commitments[msg.sender] = core.Commitment(msg.sender, msg.hiding, msg.binding)
        elif isinstance(msg, SignatureShareMsg):
            self._peers.check(msg, self._share_msgs)
            if not 0 <= msg.share < g.order:
                raise ProtocolAbort("signature share not reduced", msg.sender)
            self._share_msgs[msg.sender] = msg
            self._shares[msg.sender] = msg.share
        else:
            raise LocalProtocolError(f"not a FROST message: {type(msg).__name__}")

    def sign(self) -> SignatureShareMsg:
        """Round 2: once every commitment is in, produce this signer's share (consumes the nonces)."""
        self._require(SignState.WAITING_COMMITMENTS, "sign")
        if missing := self.missing()["commitments"]:
            raise LocalProtocolError(f"sign needs commitments from parties {missing}")
        assert self._nonces is not None
        try:
            self._package = core.signing_package(self.suite, self.key, list(self._commitments.values()),
                                                 self.message)
        except ValueError as exc:
            self.state = SignState.FAILED
            raise ProtocolAbort(str(exc)) from None
        me = self.share.party_id
        commitment_list = core.encode_group_commitment_list(self.suite, list(self._commitments.values()))
        self._view = transcript_hash(_VIEW_DOMAIN, self.suite.context, self.session_id, self.key.public,
                                     self.message, commitment_list)
        z = core.sign_share(self.suite, me, self.share.secret, self._nonces.take(), self._package)
        self._nonces = None
        self._shares[me] = z
        self.state = SignState.WAITING_SHARES
        return SignatureShareMsg(self.suite.group, self.session_id, me, z, self._view)

    def aggregate(self) -> bytes:
        """Return the signature; if it does not verify, find and name the signer whose share is bad."""
        self._require(SignState.WAITING_SHARES, "aggregate")
        if missing := self.missing()["shares"]:
            raise LocalProtocolError(f"aggregate needs shares from parties {missing}")
        pkg = self._package
        assert pkg is not None
        for i, msg in sorted(self._share_msgs.items()):
            if not ct_equal(msg.view, self._view):
                self.state = SignState.FAILED
                raise ProtocolAbort("signer signed a different message or commitment set "
                                    "(it, or another signer, equivocated)", i)
        # Fast path: a signature that verifies is all we need; per-share checks (3 scalar
        # multiplications per signer) only run to name the culprit when it does not.
        signature = core.aggregate(self.suite, self._shares, pkg)
        if not self.suite.verify(self.key, self.message, signature):
            self.state = SignState.FAILED
            for i in self.signers:
                vshare = self.share.verification_shares[i]
                if not core.verify_share(self.suite, self._commitments[i], vshare, self._shares[i], pkg):
                    raise ProtocolAbort("invalid signature share", i)
            raise ProtocolAbort("aggregated signature does not verify")  # every share valid: cannot happen
        self.state = SignState.DONE
        return signature
