"""zrChain v6 messages and queries the dev node serves beyond the basics (issue 13, docs/chain.md table).

Each test names the upstream handler (x/identity/keeper, x/treasury/keeper) whose rules it pins.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from coincurve import PrivateKey
from nacl.signing import VerifyKey

from chain_client import messages
from chain_client.address import account_address
from chain_client.client import event_values, msg_responses
from chain_client.errors import ChainTxError
from chain_client.messages import fulfil_ica_request, fulfil_sign_request, reject_ica_request
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import key_pb2, tx_pb2, wallet_pb2
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import ICATransactionRequest
from chain_node.local import chain_sign_request
from chain_node.signtx import CHAIN_CREATOR, ICA_METADATA_TYPE_URL, ica_send_tx
from tests.chain.conftest import make_world, verify_ecdsa
from tests.chain.test_keeper_rules import _balance, new_key, sign_digest


@pytest.fixture(scope="module", name="world")
def _world(tmp_path_factory):
    built = make_world(tmp_path_factory.mktemp("chain-v6"), dev_chain_requests=True)
    yield built
    built.client.close()
    built.node.stop()


def _refused(world, signer, msgs) -> ChainTxError:
    with pytest.raises(ChainTxError) as caught:
        world.client.send(signer, msgs)
    return caught.value


# ---- identity ------------------------------------------------------------------------------------------


def test_remove_keyring_party_checks_and_threshold_as_upstream(world):
    """identity RemoveKeyringParty: party before admin check; decrease_threshold decrements; a threshold
    above the remaining parties drops to their count (to 0 with the last party)."""
    owner, (p1, p2, p3) = world.owner.address(), world.parties[:3]
    keyring = world.keyring(parties=3, threshold=3)
    error = _refused(world, p1, [messages.remove_keyring_party(p1.address(), keyring, world.poor.address())])
    assert "is not a party of the keyring" in error.raw_log and error.code == 1505
    error = _refused(world, p1, [messages.remove_keyring_party(p1.address(), keyring, p2.address())])
    assert f"tx creator {p1.address()} is not keyring admin" in error.raw_log
    world.client.send(world.owner, [messages.remove_keyring_party(owner, keyring, p3.address())])
    stored = world.client.keyring(keyring)
    assert list(stored.parties) == [p1.address(), p2.address()] and stored.party_threshold == 2
    world.client.send(world.owner, [messages.remove_keyring_party(owner, keyring, p2.address(), True)])
    assert world.client.keyring(keyring).party_threshold == 1
    world.client.send(world.owner, [messages.remove_keyring_party(owner, keyring, p1.address(), True)])
    stored = world.client.keyring(keyring)
    assert list(stored.parties) == [] and stored.party_threshold == 0


def test_add_party_and_update_keyring_as_upstream(world):
    """identity AddKeyringParty: active keyring (ErrInactive), a new party (checked before the admin),
    admins only. UpdateKeyring: admins only, also on an inactive keyring, which it can reactivate."""
    owner, party = world.owner.address(), world.parties[0].address()
    keyring = world.keyring(parties=1)
    error = _refused(world, world.parties[1], [messages.add_keyring_party(world.parties[1].address(), keyring,
                                                                          party)])
    assert error.code == 1505 and f"party {party} is already a party of the keyring {keyring}" in error.raw_log
    error = _refused(world, world.parties[1], [messages.add_keyring_party(world.parties[1].address(), keyring,
                                                                          world.poor.address())])
    assert "is not keyring admin" in error.raw_log
    stored = world.client.keyring(keyring)
    stranger = messages.update_keyring(party, stored, party_threshold=1)
    assert "keyring updates must be performed by an admin" in _refused(world, world.parties[0], [stranger]).raw_log
    world.client.send(world.owner, [messages.deactivate_keyring(owner, keyring)])
    error = _refused(world, world.owner, [messages.add_keyring_party(owner, keyring, world.poor.address())])
    assert error.code == 1507 and f"keyring {keyring} is not active" in error.raw_log
    world.client.send(world.owner, [messages.update_keyring(owner, world.client.keyring(keyring), is_active=True,
                                                            description="back")])
    stored = world.client.keyring(keyring)
    assert stored.is_active and stored.description == "back" and list(stored.parties) == [party]


def test_keyring_admins_and_the_last_admin(world):
    """identity AddKeyringAdmin / RemoveKeyringAdmin: admins only, no duplicate, never the last one."""
    owner, other = world.owner.address(), world.parties[0].address()
    keyring = world.keyring(parties=0)
    world.client.send(world.owner, [messages.add_keyring_admin(owner, keyring, other)])
    assert list(world.client.keyring(keyring).admins) == [owner, other]
    error = _refused(world, world.owner, [messages.add_keyring_admin(owner, keyring, other)])
    assert f"admin {owner} is already an admin" in error.raw_log  # upstream names the creator
    world.client.send(world.owner, [messages.remove_keyring_admin(owner, keyring, owner)])
    error = _refused(world, world.parties[0], [messages.remove_keyring_admin(other, keyring, other)])
    assert "is the last admin in keyring" in error.raw_log
    error = _refused(world, world.owner, [messages.add_keyring_admin(owner, keyring, owner)])
    assert f"tx creator {owner} is not keyring admin" in error.raw_log


def test_deactivate_keyring_is_for_admins_and_stops_admin_changes(world):
    """identity DeactivateKeyring: admins only; then party and admin changes answer "is not active"
    (ErrInactive) and new key requests are refused."""
    owner = world.owner.address()
    keyring = world.keyring(parties=1)
    error = _refused(world, world.parties[0], [messages.deactivate_keyring(world.parties[0].address(), keyring)])
    assert "keyring deactivations should be requested by admins" in error.raw_log
    world.client.send(world.owner, [messages.deactivate_keyring(owner, keyring)])
    assert world.client.keyring(keyring).is_active is False
    error = _refused(world, world.owner, [messages.add_keyring_admin(owner, keyring, world.poor.address())])
    assert error.code == 1507 and "is not active" in error.raw_log
    with pytest.raises(ChainTxError, match="not active"):
        world.key_requests(keyring)


def test_workspace_owners_and_update_workspace(world):
    """identity AddWorkspaceOwner / RemoveWorkspaceOwner / UpdateWorkspace (no policy module here)."""
    owner, other = world.owner.address(), world.parties[0].address()
    response = world.client.send(world.owner, [identity_tx.MsgNewWorkspace(creator=owner)])
    (created,) = msg_responses(response, [identity_tx.MsgNewWorkspaceResponse])
    workspace = created.addr
    add = identity_tx.MsgAddWorkspaceOwner(creator=owner, workspace_addr=workspace, new_owner=other)
    world.client.send(world.owner, [add])
    assert list(world.client.workspace(workspace).owners) == [owner, other]
    assert "is already an owner" in _refused(world, world.owner, [add]).raw_log
    remove = identity_tx.MsgRemoveWorkspaceOwner(creator=other, workspace_addr=workspace, owner=owner)
    world.client.send(world.parties[0], [remove])
    last = identity_tx.MsgRemoveWorkspaceOwner(creator=other, workspace_addr=workspace, owner=other)
    assert f"cannot remove last owner {other}" in _refused(world, world.parties[0], [last]).raw_log
    same = identity_tx.MsgUpdateWorkspace(creator=other, workspace_addr=workspace)
    assert "no updates to the policies" in _refused(world, world.parties[0], [same]).raw_log
    unknown = identity_tx.MsgUpdateWorkspace(creator=other, workspace_addr=workspace, admin_policy_id=5)
    assert "admin policy 5 not found" in _refused(world, world.parties[0], [unknown]).raw_log
    stranger = identity_tx.MsgUpdateWorkspace(creator=owner, workspace_addr=workspace, sign_policy_id=1)
    assert "is not an owner of the workspace" in _refused(world, world.owner, [stranger]).raw_log


def test_identity_queries_keyrings_workspaces_params(world):
    """identity Keyrings (all, paginated), Workspaces (owner / creator filters), Params."""
    keyring = world.keyring(parties=0)
    assert keyring in {k.address for k in world.client.keyrings(page_limit=2)}
    mine = world.client.workspaces(owner=world.owner.address())
    assert world.workspace in {w.address for w in mine}
    assert world.client.workspaces(creator=world.poor.address()) == []
    assert world.client.identity_params().keyring_creation_fee == 0


# ---- treasury: keys --------------------------------------------------------------------------------------


def test_zenbtc_metadata_is_kept_from_request_to_key(world):
    """treasury NewKeyRequest copies zenbtc_metadata onto the KeyRequest, FulfilKeyRequest onto the Key."""
    keyring = world.keyring(parties=1)
    metadata = key_pb2.ZenBTCMetadata(recipient_addr="0xabc", chain_type=wallet_pb2.WALLET_TYPE_EVM,
                                      caip2_chain_id="eip155:17000", asset=1)
    msg = tx_pb2.MsgNewKeyRequest(creator=world.owner.address(), workspace_addr=world.workspace,
                                  keyring_addr=keyring, key_type="ecdsa", zenbtc_metadata=metadata)
    (request_id,) = event_values(world.client.send(world.owner, [msg]), "new_key_request", "request_id")
    assert world.client.key_request(int(request_id)).zenbtc_metadata == metadata
    public = PrivateKey().public_key.format()
    world.client.send(world.parties[0], [messages.fulfil_key_request(world.parties[0], int(request_id), public)])
    key = next(k for k in world.client.keys(world.workspace) if k.public_key == public)
    assert key.zenbtc_metadata == metadata and world.client.key(key.id).zenbtc_metadata == metadata


def test_key_by_address_native_and_solana_wallets(world):
    """treasury KeyByAddress: the key whose wallet has the address; an empty answer when none."""
    keyring = world.keyring(parties=1)
    ecdsa_id, private = new_key(world, keyring)
    eddsa_id, signing = new_key(world, keyring, key_type="ed25519")
    native = account_address(private.public_key.format())
    found = world.client.key_by_address(native, wallet_pb2.WALLET_TYPE_NATIVE, keyring_addr=keyring,
                                        key_type=key_pb2.KEY_TYPE_ECDSA_SECP256K1)
    assert found.id == ecdsa_id
    assert world.client.key_by_address("zen1nobody", wallet_pb2.WALLET_TYPE_NATIVE, keyring_addr=keyring,
                                       key_type=key_pb2.KEY_TYPE_ECDSA_SECP256K1) is None
    solana = _base58(bytes(signing.verify_key))
    found = world.client.key_by_address(solana, wallet_pb2.WALLET_TYPE_SOLANA, keyring_addr=keyring,
                                        key_type=key_pb2.KEY_TYPE_EDDSA_ED25519)
    assert found.id == eddsa_id


def _base58(data: bytes) -> str:
    """Reference base58 (Bitcoin alphabet) written independently of the node's."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(alphabet[rest])
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + "".join(reversed(digits))


# ---- treasury: sign-transaction requests -------------------------------------------------------------------


def test_sign_transaction_request_makes_an_ordinary_signature_request(world):
    """treasury NewSignTransactionRequest / HandleSignTransactionRequest: NATIVE signs SHA-256 of the
    unsigned tx; the signature request is answered with MsgFulfilSignatureRequest; its tx event
    `new_sign_request` carries the sign-transaction id, not the signature request's."""
    keyring = world.keyring(parties=1, sig_req_fee=5)
    key_id, private = new_key(world, keyring)
    world.sign_request(key_id, [hashlib.sha256(b"warm-up").digest()])  # the two counters now differ
    unsigned = b"an unsigned zrchain tx"
    response = world.client.send(world.owner, [tx_pb2.MsgNewSignTransactionRequest(
        creator=world.owner.address(), key_ids=[key_id], wallet_type=wallet_pb2.WALLET_TYPE_NATIVE,
        unsigned_transaction=unsigned)])
    (created,) = msg_responses(response, [tx_pb2.MsgNewSignTransactionRequestResponse])
    assert event_values(response, "new_sign_request", "request_id")[-1] == str(created.id)
    assert created.id != created.signature_request_id
    request = world.client.sign_request(created.signature_request_id)
    assert list(request.data_for_signing) == [hashlib.sha256(unsigned).digest()]
    record = world.client.sign_transaction_request(created.id)
    assert record.sign_request_id == created.signature_request_id and record.unsigned_transaction == unsigned
    listed = world.client.sign_transaction_requests(key_id=key_id, wallet_type=wallet_pb2.WALLET_TYPE_NATIVE)
    assert created.id in {entry.sign_transaction_requests.id for entry in listed}
    entry = next(e for e in listed if e.sign_transaction_requests.id == created.id)
    assert entry.sign_request.mpc_btl == 0 and entry.sign_transaction_requests.mpc_btl == 0
    signature = sign_digest(private, request.data_for_signing[0])
    world.client.send(world.parties[0], [fulfil_sign_request(world.parties[0], request.id, signature)])
    done = world.client.sign_request(request.id)
    assert done.status == "SIGN_REQUEST_STATUS_FULFILLED"
    verify_ecdsa(private.public_key.format(), request.data_for_signing[0], done.signed_data[0].signed_data)


def test_sign_transaction_request_refusals(world):
    """Upstream's checks in order: key ids, unsigned transaction, keys, wallet type fits the key."""
    keyring = world.keyring(parties=1)
    key_id, _ = new_key(world, keyring)
    base = {"creator": world.owner.address(), "wallet_type": wallet_pb2.WALLET_TYPE_NATIVE}
    cases = [
        ({"unsigned_transaction": b"x"}, "key ids cannot be empty"),
        ({"key_ids": [key_id]}, "unsigned transaction cannot be empty"),
        ({"key_ids": [987654], "unsigned_transaction": b"x"}, "key 987654 not found"),
        ({"key_ids": [key_id], "unsigned_transaction": b"x", "wallet_type": wallet_pb2.WALLET_TYPE_SOLANA},
         "is not a ed25519 key"),
        ({"key_ids": [key_id], "unsigned_transaction": b"x", "wallet_type": 99}, "unknown wallet type"),
    ]
    for fields, text in cases:
        msg = tx_pb2.MsgNewSignTransactionRequest(**{**base, **fields})
        assert text in _refused(world, world.owner, [msg]).raw_log


# ---- treasury: ICA transaction requests ---------------------------------------------------------------------


def _ica_request(world, key_id: int, payload: str = '{"@type":"/cosmos.bank.v1beta1.MsgSend"}'):
    msg = tx_pb2.MsgNewICATransactionRequest(creator=world.owner.address(), key_id=key_id,
                                             input_payload=payload, connection_id="connection-0")
    response = world.client.send(world.owner, [msg])
    (created,) = msg_responses(response, [tx_pb2.MsgNewICATransactionRequestResponse])
    assert event_values(response, "new_ica_transaction_request", "request_id") == [str(created.id)]
    return created


def test_ica_transaction_request_is_fulfilled_with_its_own_message(world):
    """treasury NewICATransactionRequest stores input_msg (the ICA MsgSendTx); the dev node's signature
    request carries it as metadata and signs SHA-256(input_msg); FulfilICATransactionRequest counts a
    party signature once per distinct bytes, charges no fee and emits ica_transaction_request_fulfilled."""
    keyring = world.keyring(parties=2, threshold=2, sig_req_fee=10**9)
    key_id, private = new_key(world, keyring, parties=world.parties[:2])
    balance = _balance(world, world.owner.address())
    created = _ica_request(world, key_id)
    request = world.client.sign_request(created.signature_request_id)
    assert request.metadata.type_url == ICA_METADATA_TYPE_URL
    record = ICATransactionRequest.FromString(request.metadata.value)
    assert record.id == created.id and record.key_id == key_id
    assert record.input_msg == ica_send_tx(world.owner.address(), "connection-0",
                                           b'{"@type":"/cosmos.bank.v1beta1.MsgSend"}', 0)
    assert list(request.data_for_signing) == [hashlib.sha256(record.input_msg).digest()]
    signature = sign_digest(private, request.data_for_signing[0])
    first = fulfil_ica_request(world.parties[0], request.id, signature)
    world.client.send(world.parties[0], [first])
    world.client.send(world.parties[0], [first])  # the same bytes again: still one party
    assert world.client.sign_request(request.id).status == "SIGN_REQUEST_STATUS_PARTIAL"
    response = world.client.send(world.parties[1], [fulfil_ica_request(world.parties[1], request.id, signature)])
    assert event_values(response, "ica_transaction_request_fulfilled", "request_id") == [str(request.id)]
    done = world.client.sign_request(request.id)
    assert done.status == "SIGN_REQUEST_STATUS_FULFILLED"
    verify_ecdsa(private.public_key.format(), request.data_for_signing[0], done.signed_data[0].signed_data)
    assert balance - _balance(world, world.owner.address()) <= world.client.config.fee_amount  # no escrow


def test_ica_fulfilment_errors_fail_the_tx_and_a_reject_rejects(world):
    """validateICATransactionRequest: missing data, a short party signature or a bad signature fail the
    tx (unlike FulfilSignatureRequest, which rejects the request); REJECTED is taken unvalidated."""
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring)
    request_id = _ica_request(world, key_id).signature_request_id
    party = world.parties[0]
    assert "missing signature data" in _refused(world, party, [fulfil_ica_request(party, request_id, b"")]).raw_log
    short = fulfil_ica_request(party, request_id, b"\1" * 64)
    short.keyring_party_signature = b"\0" * 10
    assert "invalid mpc party signature" in _refused(world, party, [short]).raw_log
    wrong = sign_digest(PrivateKey(), hashlib.sha256(b"other").digest())
    assert "does not verify" in _refused(world, party, [fulfil_ica_request(party, request_id, wrong)]).raw_log
    assert world.client.sign_request(request_id).status == "SIGN_REQUEST_STATUS_PENDING"
    world.client.send(party, [reject_ica_request(party, request_id, "policy says no")])
    rejected = world.client.sign_request(request_id)
    assert (rejected.status, rejected.reject_reason) == ("SIGN_REQUEST_STATUS_REJECTED", "policy says no")
    assert private  # the key exists; only its answer was refused


def test_ica_request_refusals(world):
    """NewICATransactionRequest: unknown key, empty payload."""
    keyring = world.keyring(parties=1)
    key_id, _ = new_key(world, keyring)
    unknown = tx_pb2.MsgNewICATransactionRequest(creator=world.owner.address(), key_id=424242, input_payload="x")
    assert "key 424242 not found" in _refused(world, world.owner, [unknown]).raw_log
    empty = tx_pb2.MsgNewICATransactionRequest(creator=world.owner.address(), key_id=key_id)
    assert "no payload provided" in _refused(world, world.owner, [empty]).raw_log


# ---- the chain's own signature requests ---------------------------------------------------------------------


def test_chain_created_signature_request_is_in_no_tx(world):
    """validation EndBlock → HandleSignTransactionRequest: a Solana transaction for an Ed25519 key,
    created by a module account with no fee and announced in block events, never in a tx."""
    keyring = world.keyring(parties=1, sig_req_fee=13)
    key_id, signing = new_key(world, keyring, key_type="ed25519")
    before = {r.id for r in world.client.sign_requests(keyring)}
    message = b"solana message bytes"
    chain_sign_request(world.node.endpoint, tx_pb2.MsgNewSignTransactionRequest(
        key_ids=[key_id], wallet_type=wallet_pb2.WALLET_TYPE_SOLANA, unsigned_transaction=message))
    deadline = time.monotonic() + 10
    while not (new := [r for r in world.client.sign_requests(keyring) if r.id not in before]):
        assert time.monotonic() < deadline, "the chain did not create the request"
        time.sleep(0.05)
    (request,) = new
    assert request.creator == CHAIN_CREATOR and list(request.data_for_signing) == [message]
    assert "end_block new_sign_request" in world.node.log_text()
    signature = signing.sign(message).signature
    world.client.send(world.parties[0], [fulfil_sign_request(world.parties[0], request.id, signature)])
    done = world.client.sign_request(request.id)
    assert done.status == "SIGN_REQUEST_STATUS_FULFILLED"
    VerifyKey(bytes(signing.verify_key)).verify(message, done.signed_data[0].signed_data)
