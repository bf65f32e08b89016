"""Run DKG and FROST signing for all parties in one process (tests, benchmarks, demo).

Messages go through their byte encodings exactly as a transport would carry them."""

from __future__ import annotations

from collections.abc import Sequence

from appliance.mpc_party.protocols.dkg import KeyShare, run_local_dkg, run_local_refresh
from appliance.mpc_party.protocols.frost.ciphersuite import Ciphersuite
from appliance.mpc_party.protocols.frost.session import FrostMessage, FrostSigner, decode_frost_message
from appliance.mpc_party.protocols.group import Rng, default_rng
from appliance.mpc_party.protocols.wire import SESSION_ID_LEN


def run_dkg(n: int, t: int, suite: Ciphersuite, rng: Rng = default_rng) -> list[KeyShare]:
    """t-of-n DKG over the suite's group; key shares ordered by party id."""
    return run_local_dkg(suite.group, n, t, rng)


def refresh(shares: list[KeyShare], rng: Rng = default_rng) -> list[KeyShare]:
    return run_local_refresh(shares, rng)


def sign(suite: Ciphersuite, shares: Sequence[KeyShare], message: bytes, rng: Rng = default_rng, *,
         taproot_merkle_root: bytes | None = None, session_id: bytes | None = None) -> bytes:
    """Sign `message` with exactly the given shares as the signer set; every signer aggregates and
    all must agree on the signature."""
    sid = session_id if session_id is not None else rng(SESSION_ID_LEN)
    ids = [s.party_id for s in shares]
    signers = {s.party_id: FrostSigner(suite, s, sid, ids, message, rng,
                                       taproot_merkle_root=taproot_merkle_root) for s in shares}

    def broadcast(msg: FrostMessage) -> None:
        data = msg.to_bytes()
        for j, signer in signers.items():
            if j != msg.sender:
                signer.receive(decode_frost_message(suite.group, data, msg.sender))

    for msg in [s.commit() for s in signers.values()]:
        broadcast(msg)
    for msg in [s.sign() for s in signers.values()]:
        broadcast(msg)
    signatures = {s.aggregate() for s in signers.values()}
    if len(signatures) != 1:
        raise AssertionError("signers disagree on the signature")
    return signatures.pop()
