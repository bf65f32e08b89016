"""bank module: MsgSend, so an account (a keyring party) can be funded after genesis, as on zrChain.

Only the urock denomination exists on this node. A send opens the recipient's account if it has none
(as the Cosmos SDK's bank keeper does), which is how a party host's fresh chain address becomes usable.
"""

from __future__ import annotations

from google.protobuf.message import Message

from chain_client.proto_gen.cosmos.bank.v1beta1 import tx_pb2
from chain_client.tx import FEE_DENOM
from chain_node import errors
from chain_node.context import Context, check_account_address

MAX_AMOUNT_DIGITS = 78  # the SDK's Int is 256 bits; longer strings are invalid coins, not a crash


def signer_of(message: Message) -> str:
    """The address that must sign a message: `from_address` for bank sends, `creator` for zrChain's own."""
    if isinstance(message, tx_pb2.MsgSend):
        return message.from_address
    return message.creator  # type: ignore[attr-defined]


def send(ctx: Context, msg: tx_pb2.MsgSend) -> Message:
    check_account_address(msg.from_address, "from")
    check_account_address(msg.to_address, "to")
    if not msg.amount:
        raise errors.TxError(errors.INVALID_COINS, "invalid coins: empty amount")
    total = 0
    for coin in msg.amount:
        if coin.denom != FEE_DENOM:
            raise errors.TxError(errors.INVALID_COINS, f"invalid coins: unknown denom {coin.denom!r}")
        if len(coin.amount) > MAX_AMOUNT_DIGITS or not coin.amount.isdigit() or int(coin.amount) <= 0:
            raise errors.TxError(errors.INVALID_COINS, f"invalid coins: {coin.amount}{coin.denom}")
        total += int(coin.amount)
    ctx.debit(msg.from_address, total)
    ctx.credit(msg.to_address, total)
    ctx.emit("transfer", recipient=msg.to_address, sender=msg.from_address, amount=f"{total}{FEE_DENOM}")
    return tx_pb2.MsgSendResponse()


HANDLERS = {tx_pb2.MsgSend: send}
