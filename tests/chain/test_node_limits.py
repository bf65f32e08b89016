"""The node survives whatever a funded account sends: each field of each message at its type's limits.

A message that cannot be executed fails its own transaction (a code in GetTx); the block loop, the
other transactions of the block and the node process carry on. Malformed transaction parts are
refused at CheckTx with the SDK's code, and the mempool is bounded by bytes as well as by count.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from coincurve import PrivateKey
from google.protobuf.any_pb2 import Any as AnyMsg
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from chain_client.client import event_values
from chain_client.errors import ChainTxError
from chain_client.messages import bank_send, fulfil_key_request
from chain_client.proto_gen.cosmos.base.v1beta1.coin_pb2 import Coin
from chain_client.proto_gen.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, TxRaw
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from chain_client.tx import TxSpec, build_tx
from chain_node.app import HANDLERS
from chain_node.errors import PANIC
from chain_node.genesis import Genesis, GenesisAccount, Params
from chain_node.local import LocalNode
from tests.chain.conftest import CHAIN_ID, digest

UINT64_MAX, UINT32_MAX, INT32_MAX = 2**64 - 1, 2**32 - 1, 2**31 - 1
BIG_GAS = 40_000_000

# Each protobuf scalar type at its edges (and a few values a handler might not expect).
LIMITS: dict[int, list] = {
    FieldDescriptor.TYPE_UINT64: [0, 1, 2**63, UINT64_MAX],
    FieldDescriptor.TYPE_UINT32: [0, 1, 2**31, UINT32_MAX],
    FieldDescriptor.TYPE_INT64: [-(2**63), -1, 2**63 - 1],
    FieldDescriptor.TYPE_INT32: [-(2**31), -1, INT32_MAX],
    FieldDescriptor.TYPE_BOOL: [True, False],
    FieldDescriptor.TYPE_STRING: ["", ",", "zen1" + "q" * 38, "\u00e9\u4e2d\U0001f600" * 300, "ab" * 40_000],
    FieldDescriptor.TYPE_BYTES: [b"", b"\x00" * 64, b"\xff" * 65, bytes(range(256)) * 300],
    FieldDescriptor.TYPE_ENUM: [-1, 0, 4, INT32_MAX],
}


def field_values(field: FieldDescriptor) -> list:
    """Values to put in one field: its type's limits, or for a message field, a message of limits."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Any":
            return [AnyMsg(type_url="/nope.Nothing", value=b"\xff" * 40), AnyMsg()]
        sub = []
        for inner in field.message_type.fields:
            for value in field_values(inner):
                message = _message_class(field)()
                _assign(message, inner, value)
                sub.append(message)
        return sub or [_message_class(field)()]
    return LIMITS[field.type]


def _message_class(field: FieldDescriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(field.message_type)


def _assign(message: Message, field: FieldDescriptor, value) -> None:
    if field.is_repeated:
        target = getattr(message, field.name)
        del target[:]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            target.add().CopyFrom(value)
            target.add().CopyFrom(value)
        else:
            target.extend([value] * 3)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def variants(base: Message):
    """`base` with one field at a time set to each of its limit values (the signer field stays the signer)."""
    for field in base.DESCRIPTOR.fields:
        if field.name in ("creator", "from_address"):  # the signer's own field stays the signer
            continue
        for value in field_values(field):
            message = type(base)()
            message.CopyFrom(base)
            _assign(message, field, value)
            yield f"{type(base).__name__}.{field.name}={str(value)[:30]!r}", message


def keyring_with_key(world) -> tuple[str, int]:
    """A fresh keyring with party 0 (threshold 1) and one fulfilled ECDSA key of it."""
    keyring = world.keyring(parties=1, threshold=1)
    (request_id,) = world.key_requests(keyring)
    party = world.parties[0]
    world.client.send(party, [fulfil_key_request(party, request_id, PrivateKey().public_key.format())])
    return keyring, world.client.keys(world.workspace)[-1].id


@pytest.fixture(scope="module")
def rich(world):
    """A keyring with a key, and a client that pays for big transactions."""
    client = world.new_client(gas_limit=BIG_GAS, fee_amount=BIG_GAS)
    yield (*keyring_with_key(world), client)
    client.close()


def base_messages(world, keyring: str, key_id: int, open_key_request: int, open_sign_request: int):
    """One sensible message of every type the node executes, with its signer."""
    owner, party = world.owner, world.parties[0]
    return [
        (owner, bank_send(owner, world.parties[1].address(), 1)),
        (owner, identity_tx.MsgNewWorkspace(creator=owner.address())),
        (owner, identity_tx.MsgNewKeyring(creator=owner.address(), description="limits", party_threshold=1)),
        (owner, identity_tx.MsgAddKeyringParty(creator=owner.address(), keyring_addr=keyring,
                                               party=world.parties[1].address())),
        (owner, identity_tx.MsgUpdateKeyring(creator=owner.address(), keyring_addr=keyring, party_threshold=1,
                                             is_active=True)),
        (owner, treasury_tx.MsgNewKeyRequest(creator=owner.address(), workspace_addr=world.workspace,
                                             keyring_addr=keyring, key_type="ecdsa")),
        (owner, treasury_tx.MsgNewSignatureRequest(creator=owner.address(), key_ids=[key_id],
                                                   data_for_signing=digest("limits").hex())),
        (party, treasury_tx.MsgFulfilKeyRequest(creator=party.address(), request_id=open_key_request,
                                                status=3, keyring_party_signature=bytes(64),
                                                key=treasury_tx.MsgNewKey(public_key=b"\x02" + bytes(32)))),
        (party, treasury_tx.MsgFulfilSignatureRequest(creator=party.address(), request_id=open_sign_request,
                                                      status=3, keyring_party_signature=bytes(64),
                                                      signed_data=bytes(64))),
        *v6_messages(world, keyring, key_id, open_sign_request),
    ]


def v6_messages(world, keyring: str, key_id: int, open_sign_request: int):
    """The identity and treasury messages added for issue 13 (only their variants are ever sent)."""
    owner, party, other = world.owner, world.parties[0], world.parties[1].address()
    me = owner.address()
    return [
        (owner, identity_tx.MsgRemoveKeyringParty(creator=me, keyring_addr=keyring, party=other)),
        (owner, identity_tx.MsgAddKeyringAdmin(creator=me, keyring_addr=keyring, admin=other)),
        (owner, identity_tx.MsgRemoveKeyringAdmin(creator=me, keyring_addr=keyring, admin=other)),
        (owner, identity_tx.MsgDeactivateKeyring(creator=me, keyring_addr=keyring)),
        (owner, identity_tx.MsgAddWorkspaceOwner(creator=me, workspace_addr=world.workspace, new_owner=other)),
        (owner, identity_tx.MsgRemoveWorkspaceOwner(creator=me, workspace_addr=world.workspace, owner=other)),
        (owner, identity_tx.MsgUpdateWorkspace(creator=me, workspace_addr=world.workspace)),
        (owner, treasury_tx.MsgNewSignTransactionRequest(creator=me, key_ids=[key_id], wallet_type=1,
                                                         unsigned_transaction=b"limits")),
        (owner, treasury_tx.MsgNewICATransactionRequest(creator=me, key_id=key_id, input_payload="limits")),
        (party, treasury_tx.MsgFulfilICATransactionRequest(creator=party.address(), request_id=open_sign_request,
                                                           status=3, keyring_party_signature=bytes(64),
                                                           signed_data=bytes(64))),
    ]


def _included(client, txhash: str, timeout_s: float = 60.0):
    """The TxResponse of a tx once it is in a block, whatever its code."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = client.get_tx(txhash)
        if found is not None:
            return found.tx_response
        time.sleep(0.05)
    raise AssertionError(f"tx {txhash} not included within {timeout_s} s")


def test_every_message_type_is_covered(world, rich):
    keyring, key_id, _ = rich
    covered = {"/" + type(m).DESCRIPTOR.full_name for _, m in base_messages(world, keyring, key_id, 1, 1)}
    assert covered == set(HANDLERS)


def test_fields_at_their_limits_fail_only_their_own_tx(world, rich):
    """Every field of every message at every limit value: each tx is admitted or refused with a code,
    each admitted tx gets a result in its block, no message panics, and the node keeps making blocks."""
    _, _, client = rich
    keyring, key_id = keyring_with_key(world)  # the variants change this keyring (fees, activity, ...)
    open_keys = [i for _ in range(3) for i in world.key_requests(keyring, count=10)]
    open_signs = [world.sign_request(key_id, [digest(f"open {i}")]) for i in range(3)]
    admitted: dict[str, str] = {}
    refused: dict[str, int] = {}
    for signer, base in base_messages(world, keyring, key_id, open_keys[0], open_signs[0]):
        for label, message in variants(base):
            if hasattr(message, "request_id") and message.request_id == open_keys[0] and open_keys[1:]:
                message.request_id = open_keys.pop()  # each fulfil variant answers a request of its own
            try:
                admitted[label] = client.broadcast(signer, [message])
            except ChainTxError as exc:
                refused[label] = exc.code
    assert len(admitted) > 150, refused
    results = {label: _included(client, txhash) for label, txhash in admitted.items()}
    panics = {label: r.raw_log for label, r in results.items() if r.code == PANIC}
    assert not panics, panics
    codes = {r.code for r in results.values()} - {0}
    assert codes <= {2, 5, 7, 10, 18, 1503, 1505, 1507}, codes  # 15xx: identity's registered errors
    height = world.client.latest_height()
    response = world.client.send(world.owner, [identity_tx.MsgNewWorkspace(creator=world.owner.address())])
    assert response.code == 0 and response.height > height
    assert world.node.proc.poll() is None


def test_deadline_past_uint64_fails_the_tx_and_the_block_goes_on(world, rich):
    """The issue's first crash: a key request whose deadline height overflows a uint64."""
    keyring, _, client = rich
    msg = treasury_tx.MsgNewKeyRequest(creator=world.owner.address(), workspace_addr=world.workspace,
                                       keyring_addr=keyring, key_type="ecdsa", mpc_btl=UINT64_MAX)
    with pytest.raises(ChainTxError) as caught:
        client.send(world.owner, [msg])
    assert caught.value.height > 0 and "does not fit a uint64" in caught.value.raw_log
    assert world.key_requests(keyring)  # the next tx of the same signer still lands


def test_threshold_overflow_wraps_as_upstream(world):
    """identity AddKeyringParty: PartyThreshold++ on a uint32 wraps to 0, then 0 becomes 1;
    UpdateKeyring keeps the threshold when asked for more than the party count."""
    keyring = world.keyring(parties=1, threshold=1)
    owner = world.owner.address()
    world.client.send(world.owner, [identity_tx.MsgUpdateKeyring(creator=owner, keyring_addr=keyring,
                                                                 party_threshold=UINT32_MAX, is_active=True)])
    assert world.client.keyring(keyring).party_threshold == 1
    big = world.client.send(world.owner, [identity_tx.MsgNewKeyring(creator=owner, party_threshold=UINT32_MAX)])
    (address,) = event_values(big, "new_keyring", "keyring_addr")
    world.client.send(world.owner, [identity_tx.MsgAddKeyringParty(
        creator=owner, keyring_addr=address, party=world.parties[0].address(), increase_threshold=True)])
    assert world.client.keyring(address).party_threshold == 1


def _raw_tx(world, client, mutate) -> bytes:
    """A correctly signed tx of the owner whose TxRaw/AuthInfo `mutate` then spoils."""
    account = world.client.account(world.owner.address())
    spec = TxSpec(CHAIN_ID, account.account_number, account.sequence, 300_000, 750_000)
    raw = TxRaw.FromString(build_tx(world.owner, [identity_tx.MsgNewWorkspace(creator=world.owner.address())],
                                    spec))
    mutate(raw)
    return raw.SerializeToString()


def _spoil_public_key(raw: TxRaw) -> None:
    auth = AuthInfo.FromString(raw.auth_info_bytes)
    auth.signer_infos[0].public_key.value = b"\x0a\xff\xff"  # a length prefix running past the end
    raw.auth_info_bytes = auth.SerializeToString()


def _negative_fee(raw: TxRaw) -> None:
    auth = AuthInfo.FromString(raw.auth_info_bytes)
    del auth.fee.amount[:]
    auth.fee.amount.append(Coin(denom="urock", amount="-1000000000"))
    raw.auth_info_bytes = auth.SerializeToString()


def _unknown_message_field(raw: TxRaw) -> None:
    from chain_client.proto_gen.cosmos.tx.v1beta1.tx_pb2 import TxBody

    body = TxBody.FromString(raw.body_bytes)
    body.messages[0].value += bytes([0x98, 0x06, 0x01])  # field 99, varint: not in MsgNewWorkspace
    raw.body_bytes = body.SerializeToString()


@pytest.mark.parametrize(("mutate", "code", "fragment"), [
    (_spoil_public_key, 2, "signer public key"),
    (_negative_fee, 13, "invalid fee"),
    (_unknown_message_field, 2, "unknown field zrchain.identity.MsgNewWorkspace: field 99"),
])
def test_malformed_tx_parts_are_refused_with_sdk_codes(world, rich, mutate, code, fragment):
    """CheckTx and Simulate answer a malformed part with the SDK's code, never an uncaught error."""
    _, _, client = rich
    tx_bytes = _raw_tx(world, client, mutate)
    with pytest.raises(ChainTxError) as caught:
        world.client.broadcast_raw(tx_bytes)
    assert caught.value.code == code and fragment in caught.value.raw_log, caught.value
    import grpc

    from chain_client.proto_gen.cosmos.tx.v1beta1 import service_pb2

    with pytest.raises(grpc.RpcError) as simulated:
        world.client.call("/cosmos.tx.v1beta1.Service/Simulate", service_pb2.SimulateRequest(tx_bytes=tx_bytes),
                          service_pb2.SimulateResponse)
    assert simulated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"code {code})" in simulated.value.details()


def test_big_memo_is_refused_and_the_mempool_is_bounded_by_bytes(tmp_path):
    """x/auth's max_memo_characters (256) refuses a 1 MiB memo (code 12); CometBFT's max_tx_bytes
    refuses an oversized tx (code 21) and max_txs_bytes a mempool over its byte budget (code 20)."""
    from chain_client.client import ChainClient, ClientConfig
    from chain_client.crypto import SoftwareSigner

    owner = SoftwareSigner()
    params = Params(max_mempool_bytes=60_000, max_tx_bytes=50_000)
    node = LocalNode(tmp_path, Genesis(CHAIN_ID, params, [GenesisAccount(owner.address(), 10**15)]),
                     block_time=3600)  # no block while the test fills the mempool
    node.start()
    try:
        with ChainClient(ClientConfig(endpoints=[node.endpoint], chain_id=CHAIN_ID, gas_limit=BIG_GAS,
                                      fee_amount=BIG_GAS)) as client:
            workspace = identity_tx.MsgNewWorkspace(creator=owner.address())
            with pytest.raises(ChainTxError) as memo:
                client.broadcast(owner, [workspace], memo="m" * 1_048_576)
            assert memo.value.code == 21  # over max_tx_bytes before anything else
            with pytest.raises(ChainTxError) as memo:
                client.broadcast(owner, [workspace], memo="m" * 257)
            assert memo.value.code == 12 and "memo too large" in memo.value.raw_log
            keyring = identity_tx.MsgNewKeyring(creator=owner.address(), description="d" * 20_000)
            client.broadcast(owner, [keyring])
            client.broadcast(owner, [keyring])
            with pytest.raises(ChainTxError) as full:
                client.broadcast(owner, [keyring])
            assert full.value.code == 20 and "total txs bytes" in full.value.raw_log
    finally:
        node.stop()


def test_a_fatal_block_error_exits_non_zero(tmp_path):
    """When a block cannot be committed (here: another process holds the state database's write lock),
    the node stops producing blocks and the process exits 1, so systemd or the test harness sees it."""
    from chain_client.crypto import SoftwareSigner

    genesis = Genesis(CHAIN_ID, Params(), [GenesisAccount(SoftwareSigner().address(), 10**15)])
    node = LocalNode(tmp_path, genesis, block_time=0.1)
    node.start()
    holder = sqlite3.connect(node.data_dir / "state.sqlite", timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        code = node.proc.wait(timeout=30)
    finally:
        holder.close()
        node.stop()
    assert code == 1, node.log_text()[-2000:]
    assert "block production failed; stopping the node" in node.log_text()


def test_node_process_exit_code_of_a_clean_stop(tmp_path):
    """SIGTERM is a clean stop: exit 0 (the fatal path above is the only non-zero one)."""
    genesis = Genesis(CHAIN_ID, Params(), [])
    node = LocalNode(tmp_path, genesis, block_time=0.1)
    node.start()
    node.proc.terminate()
    assert node.proc.wait(timeout=10) == 0

