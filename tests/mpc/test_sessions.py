"""The uniform Session face over the DKG and FROST state machines."""

from __future__ import annotations

import secrets

import nacl.signing

from appliance.mpc_party.dkg import DkgParty
from appliance.mpc_party.frost import FROST_ED25519
from appliance.mpc_party.group import ED25519
from appliance.mpc_party.sessions import DkgSession, FrostSignSession, run_in_process


def test_dkg_then_frost_sign_through_sessions() -> None:
    sid = secrets.token_bytes(32)
    shares = run_in_process([DkgSession(DkgParty(ED25519, sid, i, 3, 2), "dkg") for i in (1, 2, 3)])
    key = shares[0].group_public_key
    assert all(s.group_public_key == key for s in shares)
    message = b"zrkeyring session test"
    signers = [1, 3]
    sign_sid = secrets.token_bytes(32)
    sigs = run_in_process([FrostSignSession(FROST_ED25519, shares[i - 1], sign_sid, signers, message)
                           for i in signers])
    assert sigs[0] == sigs[1]
    nacl.signing.VerifyKey(key).verify(message, sigs[0])
