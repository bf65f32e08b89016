"""Where zrChain v6 is less friendly than a tidy node would be, the dev node is too (docs/chain.md table).

Each test names the upstream module and handler whose behaviour it pins.
"""

from __future__ import annotations

import grpc
import pytest
from coincurve import PrivateKey

from chain_client.errors import ChainTxError
from chain_client.messages import fulfil_key_request, fulfil_sign_request, reject_sign_request
from chain_client.proto_gen.zrchain.identity import query_pb2 as identity_query
from chain_client.proto_gen.zrchain.treasury import query_pb2 as treasury_query
from tests.chain.conftest import digest
from tests.chain.test_keeper_rules import _balance, new_key, sign_digest


def test_list_queries_leave_mpc_btl_and_fee_empty(world):
    """treasury KeyRequests fills neither mpc_btl nor fee, KeyRequestByID fills mpc_btl only;
    SignatureRequests and SignatureRequestByID fill mpc_btl, never fee."""
    keyring = world.keyring(parties=1, key_req_fee=7, sig_req_fee=9)
    key_id, _ = new_key(world, keyring)
    (request_id,) = world.key_requests(keyring)
    (listed,) = [r for r in world.client.key_requests(keyring) if r.id == request_id]
    by_id = world.client.key_request(request_id)
    assert (listed.mpc_btl, listed.fee) == (0, 0)
    assert by_id.mpc_btl > 0 and by_id.fee == 0
    sign_id = world.sign_request(key_id, [digest("fields")])
    (listed_sign,) = [r for r in world.client.sign_requests(keyring) if r.id == sign_id]
    by_id_sign = world.client.sign_request(sign_id)
    assert listed_sign.mpc_btl == by_id_sign.mpc_btl > 0
    assert listed_sign.fee == by_id_sign.fee == 0


@pytest.mark.parametrize(("path", "query", "response", "text"), [
    ("/zrchain.treasury.Query/KeyRequestByID", treasury_query.QueryKeyRequestByIDRequest(id=424242),
     treasury_query.QueryKeyRequestByIDResponse, "key request 424242 not found"),
    ("/zrchain.treasury.Query/SignatureRequestByID", treasury_query.QuerySignatureRequestByIDRequest(id=424242),
     treasury_query.QuerySignatureRequestByIDResponse, "signature request 424242 not found: not found"),
    ("/zrchain.treasury.Query/KeyByID", treasury_query.QueryKeyByIDRequest(id=424242),
     treasury_query.QueryKeyByIDResponse, "key 424242 not found: not found"),
    ("/zrchain.identity.Query/KeyringByAddress", identity_query.QueryKeyringByAddressRequest(keyring_addr="k1"),
     identity_query.QueryKeyringByAddressResponse, "keyring k1 not found: not found"),
])
def test_by_id_not_found_is_a_plain_error(world, path, query, response, text):
    """Upstream's by-id queries return fmt.Errorf / unregistered-code module errors: gRPC UNKNOWN with
    the text, not NOT_FOUND. The client still reads either form as absent."""
    with pytest.raises(grpc.RpcError) as caught:
        world.client.call(path, query, response)
    assert caught.value.code() == grpc.StatusCode.UNKNOWN and caught.value.details() == text
    assert world.client.key_request(424242) is None and world.client.sign_request(424242) is None
    assert world.client.key(424242) is None and world.client.keyring("k1") is None


def test_account_not_found_stays_not_found(world):
    """x/auth's Account query answers codes.NotFound (an SDK service, not zrChain's keepers)."""
    from chain_client.crypto import SoftwareSigner

    assert world.client.account(SoftwareSigner().address()) is None


def test_short_party_signature_rejects_a_sign_request_and_the_tx_succeeds(world):
    """treasury FulfilSignatureRequest: "invalid length of mpc party signature" rejects the request."""
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring)
    data = digest("short party signature")
    sign_id = world.sign_request(key_id, [data])
    party = world.parties[0]
    msg = fulfil_sign_request(party, sign_id, sign_digest(private, data))
    msg.keyring_party_signature = b"\x01" * 65
    assert world.client.send(party, [msg]).code == 0
    request = world.client.sign_request(sign_id)
    assert request.status == "SIGN_REQUEST_STATUS_REJECTED" and "mpc party signature" in request.reject_reason


def test_every_sign_post_is_charged_to_its_poster_even_a_reject(world):
    """FulfilSignatureRequest runs SplitKeyringFee(msg.Creator, …) after any accepted post, a
    rejection included, and a party's rejection does not refund the creator's escrow."""
    fee = 4_321
    keyring = world.keyring(parties=2, threshold=2, sig_req_fee=fee)
    key_id, private = new_key(world, keyring, parties=world.parties[:2])
    data = digest("charged")
    first, second = (world.sign_request(key_id, [data]) for _ in range(2))
    p0, p1 = world.parties[:2]
    tx_fee = world.client.config.fee_amount
    balances = {p.address(): _balance(world, p.address()) for p in (p0, p1)}
    owner, kr = _balance(world, world.owner.address()), _balance(world, keyring)
    world.client.send(p0, [fulfil_sign_request(p0, first, sign_digest(private, data)),
                           reject_sign_request(p0, second, "no")])
    world.client.send(p1, [fulfil_sign_request(p1, first, sign_digest(private, data))])
    assert world.client.sign_request(first).status == "SIGN_REQUEST_STATUS_FULFILLED"
    assert world.client.sign_request(second).status == "SIGN_REQUEST_STATUS_REJECTED"
    assert _balance(world, p0.address()) == balances[p0.address()] - 2 * fee - tx_fee
    assert _balance(world, p1.address()) == balances[p1.address()] - fee - tx_fee
    assert _balance(world, keyring) == kr + 3 * fee
    assert _balance(world, world.owner.address()) == owner  # no refund for a party's rejection


def test_a_party_that_cannot_pay_fails_its_tx_and_the_request_stays_open(world):
    """SplitKeyringFee from a party without the funds errors: the whole tx fails in its block (code 5),
    nothing of it is kept, and the request stays open for the next post."""
    from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx

    keyring = world.keyring(parties=0, key_req_fee=1_000)
    poor = world.poor  # 1000 urock: enough for a minimal tx fee (750), not for the request's fee too
    world.client.send(world.owner, [identity_tx.MsgAddKeyringParty(creator=world.owner.address(),
                                                                   keyring_addr=keyring, party=poor.address())])
    (request_id,) = world.key_requests(keyring)
    with world.new_client(fee_amount=750) as cheap:
        with pytest.raises(ChainTxError) as failed:
            cheap.send(poor, [fulfil_key_request(poor, request_id, PrivateKey().public_key.format())])
    assert failed.value.code == 5 and failed.value.height > 0 and "insufficient funds" in failed.value.raw_log
    assert world.client.key_request(request_id).status == "KEY_REQUEST_STATUS_PENDING"
    assert _balance(world, poor.address()) == 250


def test_partial_status_is_accepted_as_a_fulfilment(world):
    """FulfilSignatureRequest treats status PARTIAL like FULFILLED."""
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring)
    data = digest("partial status")
    sign_id = world.sign_request(key_id, [data])
    party = world.parties[0]
    msg = fulfil_sign_request(party, sign_id, sign_digest(private, data))
    msg.status = 2
    world.client.send(party, [msg])
    assert world.client.sign_request(sign_id).status == "SIGN_REQUEST_STATUS_FULFILLED"


def test_a_post_to_an_inactive_keyring_rejects_the_request(world):
    """FulfilKeyRequest: "keyring … is nil or is inactive" rejects the request; the tx succeeds."""
    from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx

    keyring = world.keyring(parties=1)
    (request_id,) = world.key_requests(keyring)
    world.client.send(world.owner, [identity_tx.MsgUpdateKeyring(creator=world.owner.address(),
                                                                 keyring_addr=keyring, is_active=False)])
    party = world.parties[0]
    response = world.client.send(party, [fulfil_key_request(party, request_id, PrivateKey().public_key.format())])
    assert response.code == 0
    request = world.client.key_request(request_id)
    assert request.status == "KEY_REQUEST_STATUS_REJECTED"
    assert request.reject_reason == f"keyring {keyring} is nil or is inactive"
