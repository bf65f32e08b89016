"""The uniform Session face over the DKG and FROST state machines."""

from __future__ import annotations

import secrets

import nacl.signing

from appliance.mpc_party.protocols.dkg import DkgParty
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.group import ED25519
from appliance.mpc_party.protocols.sessions import DkgSession, FrostSignSession, run_in_process


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


def test_keyshare_codec_round_trip_and_rejects() -> None:
    import pytest

    from appliance.mpc_party.protocols.dkg import run_local_dkg
    from appliance.mpc_party.protocols.group import SECP256K1
    from appliance.mpc_party.protocols.sharecodec import ShareCodecError, decode_keyshare, encode_keyshare

    for group in (ED25519, SECP256K1):
        share = run_local_dkg(group, 3, 2)[1]
        data = encode_keyshare(share)
        assert decode_keyshare(data) == share
        for bad in (data[:-1], data + b"\0", b"\x02" + data[1:]):
            with pytest.raises(ShareCodecError):
                decode_keyshare(bad)


def test_protocol_dispatch_for_every_key_type() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    from appliance.mpc_party.protocols import dispatch as protocols
    from appliance.mpc_party.protocols.group import default_rng

    for key_type in protocols.SUPPORTED:
        sid = secrets.token_bytes(32)
        shares = run_in_process([protocols.keygen_session(key_type, sid, i, 3, 2, default_rng)
                                 for i in (1, 2, 3)])
        exported = [protocols.export_share(key_type, s) for s in shares]
        public_key = exported[0][0]
        assert all(e[0] == public_key for e in exported)
        restored = [protocols.import_share(key_type, e[1]) for e in exported]
        data = secrets.token_bytes(32)
        sign_sid = secrets.token_bytes(32)
        sigs = run_in_process([protocols.sign_session(key_type, restored[i - 1], sign_sid, [2, 3], data,
                                                      default_rng) for i in (2, 3)])
        assert sigs[0] == sigs[1] and len(sigs[0]) == 64
        if key_type == protocols.EDDSA:
            nacl.signing.VerifyKey(public_key).verify(data, sigs[0])
        else:
            r, s = int.from_bytes(sigs[0][:32], "big"), int.from_bytes(sigs[0][32:], "big")
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(Prehashed(hashes.SHA256())))
