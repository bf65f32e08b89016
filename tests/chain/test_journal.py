"""Latest block, treasury Params, timeout_height and the prepare / broadcast_raw / resync split."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest

from chain_client.crypto import SoftwareSigner
from chain_client.errors import TX_IN_CACHE, ChainTxError
from chain_client.proto_gen.cosmos.base.tendermint.v1beta1 import query_pb2 as cmt_query
from chain_client.proto_gen.cosmos.base.tendermint.v1beta1 import types_pb2 as sdk_types
from chain_client.proto_gen.cosmos.tx.v1beta1.tx_pb2 import TxBody, TxRaw
from chain_client.proto_gen.tendermint.types import types_pb2 as cmt_types
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury.params_pb2 import Params as TreasuryParams
from chain_client.tx import TxSpec, build_tx, sign_doc_bytes, tx_hash
from chain_node.app import App
from chain_node.genesis import Genesis, GenesisAccount, Params
from chain_node.store import Store
from tests.chain.conftest import BALANCE, CHAIN_ID, verify_ecdsa


def numbers(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def new_workspace(signer) -> list:
    return [identity_tx.MsgNewWorkspace(creator=signer.address())]


def verify_tx_signature(tx_bytes: bytes, public_key: bytes, account_number: int) -> None:
    raw = TxRaw.FromString(tx_bytes)
    doc = sign_doc_bytes(raw.body_bytes, raw.auth_info_bytes, CHAIN_ID, account_number)
    verify_ecdsa(public_key, hashlib.sha256(doc).digest(), raw.signatures[0])


def test_block_protos_use_the_cosmos_field_numbers():
    assert numbers(cmt_query.GetLatestBlockResponse) == {"block_id": 1, "block": 2, "sdk_block": 3}
    for header in (cmt_types.Header, sdk_types.Header):
        assert {k: numbers(header)[k] for k in ("chain_id", "height", "time")} == {
            "chain_id": 2,
            "height": 3,
            "time": 4,
        }
    assert numbers(cmt_types.Block)["header"] == 1 and numbers(sdk_types.Block)["header"] == 1
    assert numbers(TreasuryParams)["default_btl"] == 6


def test_latest_block_reports_chain_id_height_and_time(world):
    chain_id, first, when = world.client.latest_block()
    assert chain_id == CHAIN_ID
    assert first >= 1
    assert when is not None and abs(datetime.now(UTC) - when) < timedelta(seconds=30)
    deadline = time.monotonic() + 5
    while world.client.latest_height() <= first:
        assert time.monotonic() < deadline, "height did not advance"
        time.sleep(0.05)


def test_params_carry_default_btl(world):
    assert world.client.params().default_btl == 20


def test_prepared_tx_broadcast_twice_lands_once(world):
    signer = world.parties[0]
    client = world.new_client()
    before = client.account(signer.address()).sequence
    prepared = client.prepare(signer, new_workspace(signer))
    assert prepared.sequence == before
    verify_tx_signature(prepared.tx_bytes, signer.public_key(), prepared.account_number)
    first = client.broadcast_raw(prepared.tx_bytes)
    assert first.code == 0 and first.txhash == prepared.tx_hash
    again = client.broadcast_raw(prepared.tx_bytes)  # a retry after a lost answer: a no-op
    assert again.code == TX_IN_CACHE and again.txhash == prepared.tx_hash
    included = client.wait_for_tx(prepared.tx_hash)
    assert client.broadcast_raw(prepared.tx_bytes).code == TX_IN_CACHE  # also once it is in a block
    assert client.account(signer.address()).sequence == before + 1
    assert included.code == 0
    # the cached sequence moved on: the next tx from this client lands without a resync
    assert client.send(signer, new_workspace(signer)).code == 0
    client.close()


def test_timed_out_prepared_tx_is_refused_and_the_sequence_resyncs(world):
    signer = world.parties[1]
    client = world.new_client()
    height = client.latest_height()
    stale = client.prepare(signer, new_workspace(signer), timeout_height=height)
    verify_tx_signature(stale.tx_bytes, signer.public_key(), stale.account_number)
    with pytest.raises(ChainTxError) as refused:
        client.broadcast_raw(stale.tx_bytes)
    assert (refused.value.code, refused.value.codespace) == (30, "sdk")
    assert "tx timeout height" in refused.value.raw_log
    assert client.get_tx(stale.tx_hash) is None
    assert client.resync(signer.address()) == stale.sequence
    fresh = client.prepare(signer, new_workspace(signer), timeout_height=client.latest_height() + 50)
    assert fresh.sequence == stale.sequence
    client.broadcast_raw(fresh.tx_bytes)
    assert client.wait_for_tx(fresh.tx_hash).code == 0
    client.close()


def test_send_refused_for_timeout_gives_the_sequence_back(world):
    signer = world.parties[2]
    client = world.new_client()
    with pytest.raises(ChainTxError) as refused:
        client.send(signer, new_workspace(signer), timeout_height=1)
    assert refused.value.code == 30
    assert client.send(signer, new_workspace(signer)).code == 0  # no resync needed
    client.close()


def test_tx_past_its_timeout_at_delivery_is_never_included(tmp_path):
    """Admitted while in time, left in the mempool by a full block, then dropped unrecorded."""
    early, late = SoftwareSigner(), SoftwareSigner()
    accounts = [GenesisAccount(s.address(), BALANCE) for s in (early, late)]
    genesis = Genesis(chain_id=CHAIN_ID, params=Params(max_block_txs=1), accounts=accounts)
    store = Store(tmp_path / "state.sqlite")
    app = App(store, genesis)
    txs = [
        build_tx(signer, new_workspace(signer), TxSpec(CHAIN_ID, number, 0, 300_000, 750_000, "", timeout))
        for number, signer, timeout in ((0, early, 0), (1, late, 1))
    ]
    for raw in txs:
        assert app.check_tx(raw).code == 0  # next block is 1: timeout_height 1 is still in time
    assert TxBody.FromString(TxRaw.FromString(txs[1]).body_bytes).timeout_height == 1
    assert app.produce_block() == 1  # room for one tx only: `late` waits
    assert app.produce_block() == 2  # block 2 > timeout 1: dropped, not executed
    assert not app.mempool
    hashes = [tx_hash(raw) for raw in txs]
    assert store.get("tx", hashes[0]) is not None
    assert store.get("tx", hashes[1]) is None
    assert store.get("account", late.address()).sequence == 0
    assert store.get("account", late.address()).balance == BALANCE
    store.close()

