"""The keyring end to end: real processes, real SoftHSM tokens, real gRPC, the real chain node."""

from __future__ import annotations

import secrets

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.mpc_party.local_api import JobFailed, PartyClient, SignJob
from chain_client.client import msg_responses


def sign_data(key_type: str) -> bytes:
    return secrets.token_bytes(32) if key_type != "ed25519" else b"e2e message " + secrets.token_bytes(8)


def test_keys_and_signatures_of_every_type(keyring, keys) -> None:
    for key_type, key in keys.items():
        assert len(key.public_key) == (32 if key_type == "ed25519" else 33)
        data = sign_data(key_type)
        request_id = keyring.request_signature(key.id, data)
        req = keyring.wait_request("sign", request_id)
        verify_independently(key_type, bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))
        creators = [s.creator for s in req.keyring_party_sigs]
        assert len(creators) == len(set(creators)) >= 2


def test_every_party_refuses_data_no_request_holds(keyring, keys) -> None:
    key = keys["ecdsa"]
    # A real, open request, but a job claiming different data: every honest party refuses it.
    request_id = keyring.request_signature(key.id, secrets.token_bytes(32))
    forged = SignJob(request_id, "KEY_TYPE_ECDSA_SECP256K1", key.id, bytes(key.public_key),
                     secrets.token_bytes(32), (1, 2, 3))
    unknown = SignJob(10**9, "KEY_TYPE_ECDSA_SECP256K1", key.id, bytes(key.public_key), bytes(32), (1, 2))
    for host in keyring.hosts:
        client = PartyClient(host.socket)
        try:
            for job in (forged, unknown):
                with pytest.raises(JobFailed, match="refused"):
                    client.run(job, timeout=10)
        finally:
            client.close()
    keyring.wait_request("sign", request_id)  # the genuine request is still answered


def test_signing_continues_with_one_party_stopped(keyring, keys) -> None:
    keyring.stop_role(3, "controller")
    keyring.stop_role(3, "party")
    try:
        for key_type in ("ecdsa", "ed25519"):
            key = keys[key_type]
            for _ in range(3):  # some of these start with party 3 in the quorum and must rotate past it
                data = sign_data(key_type)
                request_id = keyring.request_signature(key.id, data)
                req = keyring.wait_request("sign", request_id, timeout_s=90)
                verify_independently(key_type, bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))
    finally:
        keyring.start_role(3, "party")
        keyring.wait_party_ready(3)
        keyring.start_role(3, "controller")


def test_mixed_key_types_are_rejected_at_once(keyring, keys) -> None:
    """zrChain accepts key_ids of mixed types (each child takes the first key's type): no signature
    could ever verify, so the controllers reject the odd child at once, from chain data alone, rather
    than failing attempt after attempt until the request times out."""
    from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx

    ecdsa, eddsa = keys["ecdsa"], keys["ed25519"]
    msg = treasury_tx.MsgNewSignatureRequest(
        creator=keyring.owner.address(), key_ids=[ecdsa.id, eddsa.id],
        data_for_signing=",".join(secrets.token_bytes(32).hex() for _ in range(2)))
    response = keyring.client.send(keyring.owner, [msg])
    parent_id = msg_responses(response, [treasury_tx.MsgNewSignatureRequestResponse])[0].sig_req_id
    with pytest.raises(RuntimeError, match="rejected"):
        keyring.wait_request("sign", parent_id, timeout_s=30)
    odd = keyring.client.sign_request(keyring.client.sign_request(parent_id).child_req_ids[1])
    assert odd.status == "SIGN_REQUEST_STATUS_REJECTED"
    assert odd.reject_reason == (f"key {eddsa.id} is KEY_TYPE_EDDSA_ED25519 but the request is for "
                                 "KEY_TYPE_ECDSA_SECP256K1")
