"""Requests that reach a keyring other than by MsgNewSignatureRequest (issue 13), end to end.

Real processes (chain node, party daemons on SoftHSM, controllers): signature requests made by
MsgNewSignTransactionRequest, by an ICA transaction (answered with MsgFulfilICATransactionRequest) and
by the chain itself at EndBlock (in no tx) are all fulfilled, and every signature is verified with an
independent library; a key request's zenbtc_metadata stays on the key.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from chain_client.client import msg_responses
from chain_client.proto_gen.zrchain.treasury import key_pb2, tx_pb2, wallet_pb2
from chain_node.local import chain_sign_request


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    built = LocalKeyring(tmp_path_factory.mktemp("chain-requests"), LocalSettings(dev_chain_requests=True))
    built.setup().start()
    yield built
    built.close()


@pytest.fixture(scope="module")
def keys(net):
    out = {}
    for key_type in ("ecdsa", "ed25519"):
        request_id = net.request_key(key_type)
        net.wait_request("key", request_id, timeout_s=120)
        out[key_type] = net.key_for_request(request_id)
    return out


def test_zenbtc_metadata_stays_on_the_key(net) -> None:
    metadata = key_pb2.ZenBTCMetadata(recipient_addr="0x" + secrets.token_hex(20), caip2_chain_id="eip155:17000",
                                      chain_type=wallet_pb2.WALLET_TYPE_EVM, asset=1)
    msg = tx_pb2.MsgNewKeyRequest(creator=net.owner.address(), workspace_addr=net.workspace,
                                  keyring_addr=net.keyring, key_type="ecdsa", zenbtc_metadata=metadata)
    response = net.client.send(net.owner, [msg])
    request_id = msg_responses(response, [tx_pb2.MsgNewKeyRequestResponse])[0].key_req_id
    assert net.wait_request("key", request_id, timeout_s=120).zenbtc_metadata == metadata
    assert net.key_for_request(request_id).zenbtc_metadata == metadata


def test_sign_transaction_request_is_fulfilled(net, keys) -> None:
    key, unsigned = keys["ecdsa"], b"unsigned native tx " + secrets.token_bytes(16)
    msg = tx_pb2.MsgNewSignTransactionRequest(creator=net.owner.address(), key_ids=[key.id],
                                              wallet_type=wallet_pb2.WALLET_TYPE_NATIVE,
                                              unsigned_transaction=unsigned)
    response = net.client.send(net.owner, [msg])
    created = msg_responses(response, [tx_pb2.MsgNewSignTransactionRequestResponse])[0]
    req = net.wait_request("sign", created.signature_request_id, timeout_s=120)
    verify_independently("ecdsa", bytes(key.public_key), hashlib.sha256(unsigned).digest(),
                         bytes(req.signed_data[0].signed_data))


def test_ica_transaction_request_is_fulfilled_with_its_message(net, keys) -> None:
    key = keys["ecdsa"]
    msg = tx_pb2.MsgNewICATransactionRequest(creator=net.owner.address(), key_id=key.id,
                                             input_payload='{"@type":"/cosmos.bank.v1beta1.MsgSend"}',
                                             connection_id="connection-0")
    response = net.client.send(net.owner, [msg])
    created = msg_responses(response, [tx_pb2.MsgNewICATransactionRequestResponse])[0]
    req = net.wait_request("sign", created.signature_request_id, timeout_s=120)
    verify_independently("ecdsa", bytes(key.public_key), bytes(req.data_for_signing[0]),
                         bytes(req.signed_data[0].signed_data))
    assert f"ica_transaction_request_fulfilled {{'request_id': '{req.id}'}}" in net.node.log_text()


def test_chain_created_signature_request_is_fulfilled(net, keys) -> None:
    key, message = keys["ed25519"], b"solana message " + secrets.token_bytes(16)
    before = {r.id for r in net.client.sign_requests(net.keyring)}
    chain_sign_request(net.node.endpoint, tx_pb2.MsgNewSignTransactionRequest(
        key_ids=[key.id], wallet_type=wallet_pb2.WALLET_TYPE_SOLANA, unsigned_transaction=message),
        ca_pem=net.node.tls.ca_pem())
    deadline = time.monotonic() + 30
    while True:
        created = [t for t in net.client.sign_transaction_requests(key_id=key.id)
                   if t.sign_request.id not in before and bytes(t.sign_request.data_for_signing[0]) == message]
        if created:
            break
        assert time.monotonic() < deadline, "the chain did not create the signature request"
        time.sleep(0.1)
    req = net.wait_request("sign", created[0].sign_request.id, timeout_s=120)
    verify_independently("ed25519", bytes(key.public_key), message, bytes(req.signed_data[0].signed_data))
