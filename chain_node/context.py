"""What a message handler sees: the state overlay, the block height, params, events, and the bank."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from chain_client.address import AddressError, address_bytes, bech32_encode
from chain_client.proto_gen.tendermint.abci.types_pb2 import Event, EventAttribute
from chain_node import errors
from chain_node.genesis import Params
from chain_node.store import Account, Overlay


@dataclass
class Context:
    store: Overlay
    height: int
    params: Params
    events: list[Event] = field(default_factory=list)

    def emit(self, event_type: str, **attributes: object) -> None:
        self.events.append(
            Event(
                type=event_type,
                attributes=[EventAttribute(key=k, value=str(v), index=True) for k, v in attributes.items()],
            )
        )

    def debit(self, address: str, amount: int) -> None:
        """Take `amount` urock from an account (fees, request escrow); code 5 when it falls short."""
        if amount <= 0:
            return
        account = self.store.get("account", address)
        balance = account.balance if account else 0
        if balance < amount:
            raise errors.TxError(
                errors.INSUFFICIENT_FUNDS,
                f"spendable balance {balance}urock is smaller than {amount}urock: insufficient funds",
            )
        account.balance -= amount
        self.store.set("account", address, account)

    def credit(self, address: str, amount: int) -> None:
        """Give `amount` urock to an address, opening an account entry for it if needed."""
        if amount <= 0:
            return
        account = self.store.get("account", address)
        if account is None:
            account = Account(address=address, account_number=self.store.next_id("account_number"))
        account.balance += amount
        self.store.set("account", address, account)


def derived_address(prefix: str, counter: int) -> str:
    """Addresses for workspaces and keyrings: bech32 of a hash of their kind and sequence number."""
    return bech32_encode(prefix, hashlib.sha256(f"{prefix}/{counter}".encode()).digest()[:20])


def check_account_address(address: str, what: str) -> None:
    try:
        address_bytes(address)
    except AddressError as exc:
        raise errors.TxError(errors.INVALID_ADDRESS, f"invalid {what} address: {exc}") from None
