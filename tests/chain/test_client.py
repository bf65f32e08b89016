"""chain_client against a real node: batching, refusals surfaced with the node's words, recovery, failover."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey

from chain_client.client import ChainClient, ClientConfig, event_values
from chain_client.crypto import SECP256K1_ORDER, SoftwareSigner
from chain_client.errors import ChainTxError, ChainUnavailable
from chain_client.messages import fulfil_key_request
from chain_client.proto_gen.cosmos.tx.v1beta1 import service_pb2 as tx_service
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.tx import TxSpec, build_tx, sign_doc_bytes
from chain_node.local import free_port
from tests.chain.conftest import CHAIN_ID, verify_ecdsa


class HighSSigner(SoftwareSigner):
    """Returns the high-S twin of every signature: valid ECDSA, but Cosmos refuses it."""

    def sign_digest(self, digest: bytes) -> bytes:
        signature = super().sign_digest(digest)
        s = int.from_bytes(signature[32:], "big")
        return signature[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big")


def broadcast_raw(client: ChainClient, raw: bytes):
    return client.call(
        "/cosmos.tx.v1beta1.Service/BroadcastTx",
        tx_service.BroadcastTxRequest(tx_bytes=raw, mode=tx_service.BROADCAST_MODE_SYNC),
        tx_service.BroadcastTxResponse,
    ).tx_response


def workspace_msg(signer) -> identity_tx.MsgNewWorkspace:
    return identity_tx.MsgNewWorkspace(creator=signer.address())


def test_batched_fulfilments_land_in_one_tx(world):
    keyring = world.keyring(parties=1)
    ids = world.key_requests(keyring, count=6)
    party = world.parties[0]
    publics = [PrivateKey().public_key.format() for _ in ids]
    response = world.client.send(
        party, [fulfil_key_request(party, i, p) for i, p in zip(ids, publics, strict=True)]
    )
    assert sorted(int(v) for v in event_values(response, "key_request_fulfilled", "request_id")) == ids
    assert all(world.client.key_request(i).status == "KEY_REQUEST_STATUS_FULFILLED" for i in ids)
    found = world.client.get_tx(response.txhash)
    assert len(found.tx.body.messages) == 6
    # the tx signature, checked with pyca/cryptography over SHA-256(SignDoc)
    account = world.client.account(party.address())
    body = found.tx.body.SerializeToString()
    auth = found.tx.auth_info.SerializeToString()
    doc = sign_doc_bytes(body, auth, CHAIN_ID, account.account_number)
    verify_ecdsa(party.public_key(), hashlib.sha256(doc).digest(), found.tx.signatures[0])


def test_high_s_signature_is_refused(world):
    signer = HighSSigner(bytes.fromhex(world.parties[2].secret_hex()))
    with pytest.raises(ChainTxError) as caught:
        world.client.send(signer, [workspace_msg(signer)])
    assert caught.value.code == 4 and "signature is not in lower-S form" in caught.value.raw_log
    assert "lower-S" in str(caught.value)
    world.client.send(world.parties[2], [workspace_msg(world.parties[2])])  # the account still works


def test_wrong_sequence_is_refused_with_cosmos_message(world):
    signer = world.parties[3]
    account = world.client.account(signer.address())
    spec = TxSpec(CHAIN_ID, account.account_number, account.sequence + 5, 300_000, 750_000)
    response = broadcast_raw(world.client, build_tx(signer, [workspace_msg(signer)], spec))
    assert response.code == 32 and response.codespace == "sdk"
    assert (
        f"account sequence mismatch, expected {account.sequence}, got {account.sequence + 5}"
        in response.raw_log
    )


def test_wrong_chain_id_is_refused(world):
    with world.new_client(chain_id="another-chain") as client:
        with pytest.raises(ChainTxError) as caught:
            client.send(world.parties[3], [workspace_msg(world.parties[3])])
    assert caught.value.code == 4
    assert "signature verification failed" in caught.value.raw_log and "chain-id" in caught.value.raw_log


def test_unfunded_account_is_refused(world):
    stranger = SoftwareSigner()
    with pytest.raises(ChainTxError) as caught:
        world.client.send(stranger, [workspace_msg(stranger)])
    assert caught.value.code == 9 and "not found" in caught.value.raw_log
    response = broadcast_raw(
        world.client, build_tx(stranger, [workspace_msg(stranger)], TxSpec(CHAIN_ID, 0, 0, 300_000, 750_000))
    )
    assert response.code == 9 and f"account {stranger.address()} not found" in response.raw_log


def test_insufficient_funds_and_fee(world):
    with pytest.raises(ChainTxError) as caught:
        world.client.send(world.poor, [workspace_msg(world.poor)])
    assert caught.value.code == 5 and "insufficient funds" in caught.value.raw_log
    with world.new_client(fee_amount=1) as client:
        with pytest.raises(ChainTxError) as caught:
            client.send(world.parties[3], [workspace_msg(world.parties[3])])
    assert caught.value.code == 13 and "insufficient fee" in caught.value.raw_log


def test_sequence_mismatch_recovery(world):
    signer = world.parties[4]
    with world.new_client() as first, world.new_client() as second:
        first.send(signer, [workspace_msg(signer)])
        second.send(signer, [workspace_msg(signer)])  # first's cached sequence is now stale
        response = first.send(signer, [workspace_msg(signer)])
        assert response.code == 0
        # a stale cache ahead of the chain is recovered too
        first._accounts[signer.address()].sequence += 3
        assert first.send(signer, [workspace_msg(signer)]).code == 0


def test_failover_to_second_endpoint(world):
    dead = f"127.0.0.1:{free_port()}"
    with world.new_client(endpoints=[dead, world.node.endpoint], rpc_timeout_s=1.0) as client:
        assert client.workspace(world.workspace).owners[0] == world.owner.address()
        response = client.send(world.parties[1], [workspace_msg(world.parties[1])])
        assert response.code == 0


def test_all_endpoints_down_raises_unavailable():
    config = ClientConfig(
        endpoints=[f"127.0.0.1:{free_port()}"], attempts=2, backoff_s=0.01, rpc_timeout_s=0.5
    )
    with ChainClient(config) as client, pytest.raises(ChainUnavailable):
        client.keyring("keyring1x")


def test_simulate_sets_gas_and_fee(world):
    with world.new_client(simulate=True, gas_price=0.5) as client:
        response = client.send(world.parties[1], [workspace_msg(world.parties[1])] * 3)
        # simulated gas (a slightly shorter tx, fee fields empty) times the 1.3 adjustment
        assert response.gas_used < response.gas_wanted <= -(-response.gas_used * 13 // 10)
        found = client.get_tx(response.txhash)
        assert int(found.tx.auth_info.fee.amount[0].amount) == -(-response.gas_wanted // 2)
        bad = identity_tx.MsgAddKeyringParty(
            creator=world.parties[1].address(), keyring_addr="keyring1nope", party=world.parties[1].address()
        )
        with pytest.raises(ChainTxError) as caught:
            client.send(world.parties[1], [bad])
        assert (
            "keyring keyring1nope not found" in caught.value.raw_log and caught.value.codespace == "identity"
        )


def test_failed_message_changes_nothing_but_consumes_sequence(world):
    signer = world.parties[1]
    before = world.client.account(signer.address()).sequence
    bad = identity_tx.MsgAddKeyringParty(
        creator=signer.address(), keyring_addr="keyring1nope", party=signer.address()
    )
    with pytest.raises(ChainTxError) as caught:
        world.client.send(signer, [workspace_msg(signer), bad])
    assert caught.value.height > 0 and caught.value.codespace == "identity"
    assert world.client.account(signer.address()).sequence == before + 1
    assert world.client.send(signer, [workspace_msg(signer)]).code == 0
