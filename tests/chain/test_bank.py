"""Cosmos bank on the dev node: Balance (an unknown address is 0, not an error) and MsgSend (funds a
fresh address after genesis and opens its account, as the SDK's bank keeper does)."""

from __future__ import annotations

import pytest

from chain_client.crypto import SoftwareSigner
from chain_client.errors import ChainTxError
from chain_client.messages import bank_send
from chain_client.proto_gen.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from chain_client.proto_gen.cosmos.base.v1beta1.coin_pb2 import Coin
from tests.chain.test_keeper_rules import _balance


def test_balance_of_an_unknown_address_is_zero(world):
    """x/bank Balance answers a zero coin for an address without an account (no NOT_FOUND)."""
    assert world.client.balance(SoftwareSigner().address()) == 0
    owner = world.owner.address()
    assert world.client.balance(owner) == _balance(world, owner) > 0


def test_send_funds_a_fresh_address_which_can_then_transact(world):
    """MsgSend credits the recipient (opening its account) and debits the sender; the new account then
    pays its own tx fee."""
    fresh = SoftwareSigner()
    assert world.client.account(fresh.address()) is None
    before = world.client.balance(world.owner.address())
    response = world.client.send(world.owner, [bank_send(world.owner, fresh.address(), 2_000_000)])
    assert response.code == 0
    assert world.client.balance(fresh.address()) == 2_000_000
    assert world.client.balance(world.owner.address()) == before - 2_000_000 - 750_000  # amount + tx fee
    assert world.client.account(fresh.address()) is not None
    back = world.client.send(fresh, [bank_send(fresh, world.owner.address(), 1)])
    assert back.code == 0 and world.client.balance(fresh.address()) == 2_000_000 - 750_000 - 1


@pytest.mark.parametrize(("coins", "text"), [
    ([], "empty amount"),
    ([Coin(denom="uatom", amount="5")], "unknown denom"),
    ([Coin(denom="urock", amount="0")], "invalid coins"),
    ([Coin(denom="urock", amount="9" * 5000)], "invalid coins"),
])
def test_send_with_bad_coins_fails_its_tx(world, coins, text):
    """Bank ValidateBasic: invalid coins (code 10); nothing moves but the tx fee."""
    msg = MsgSend(from_address=world.owner.address(), to_address=SoftwareSigner().address(), amount=coins)
    with pytest.raises(ChainTxError) as failed:
        world.client.send(world.owner, [msg])
    assert failed.value.code == 10 and text in failed.value.raw_log


def test_send_beyond_the_balance_is_insufficient_funds(world):
    poor = world.poor
    with pytest.raises(ChainTxError) as failed:
        world.client.send(world.owner, [bank_send(world.owner, poor.address(), 10**30)])
    assert failed.value.code == 5 and "insufficient funds" in failed.value.raw_log


def test_send_from_another_account_is_unauthorized(world):
    """The signer must be `from_address` (the SDK's GetSigners for MsgSend)."""
    msg = MsgSend(from_address=world.poor.address(), to_address=world.owner.address(),
                  amount=[Coin(denom="urock", amount="1")])
    with pytest.raises(ChainTxError) as failed:
        world.client.send(world.owner, [msg])
    assert failed.value.code == 4 and "is not the tx signer" in failed.value.raw_log
