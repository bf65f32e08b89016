"""Builders for the messages a keyring party sends, with the party signature made by its Signer."""

from __future__ import annotations

from typing import TypeVar

from chain_client.crypto import Signer, party_signature, signer_address
from chain_client.proto_gen.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from chain_client.proto_gen.cosmos.base.v1beta1.coin_pb2 import Coin
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import key_pb2, mpcsign_pb2
from chain_client.proto_gen.zrchain.treasury.tx_pb2 import (
    MsgFulfilICATransactionRequest,
    MsgFulfilKeyRequest,
    MsgFulfilSignatureRequest,
    MsgNewKey,
)

MAX_REJECT_REASON = 512
A = TypeVar("A", MsgFulfilKeyRequest, MsgFulfilSignatureRequest, MsgFulfilICATransactionRequest)


def _answer(cls: type[A], signer: Signer, request_id: int, status: int, **result: object) -> A:
    """A fulfilment or rejection of any kind, with the 64-byte party signature over the request id."""
    return cls(
        creator=signer_address(signer),
        request_id=request_id,
        status=status,
        keyring_party_signature=party_signature(signer, request_id),
        **result,
    )


def _key_answer(signer: Signer, request_id: int, status: int, **result) -> MsgFulfilKeyRequest:
    return _answer(MsgFulfilKeyRequest, signer, request_id, status, **result)


def _sign_answer(signer: Signer, request_id: int, status: int, **result) -> MsgFulfilSignatureRequest:
    return _answer(MsgFulfilSignatureRequest, signer, request_id, status, **result)


def fulfil_key_request(signer: Signer, request_id: int, public_key: bytes) -> MsgFulfilKeyRequest:
    return _key_answer(
        signer, request_id, key_pb2.KEY_REQUEST_STATUS_FULFILLED, key=MsgNewKey(public_key=public_key)
    )


def reject_key_request(signer: Signer, request_id: int, reason: str) -> MsgFulfilKeyRequest:
    """A rejection still carries a 64-byte party signature: the chain checks its length first."""
    return _key_answer(
        signer, request_id, key_pb2.KEY_REQUEST_STATUS_REJECTED, reject_reason=reason[:MAX_REJECT_REASON]
    )


def fulfil_sign_request(signer: Signer, request_id: int, signed_data: bytes) -> MsgFulfilSignatureRequest:
    return _sign_answer(
        signer, request_id, mpcsign_pb2.SIGN_REQUEST_STATUS_FULFILLED, signed_data=signed_data
    )


def reject_sign_request(signer: Signer, request_id: int, reason: str) -> MsgFulfilSignatureRequest:
    return _sign_answer(
        signer, request_id, mpcsign_pb2.SIGN_REQUEST_STATUS_REJECTED, reject_reason=reason[:MAX_REJECT_REASON]
    )


def _ica_answer(signer: Signer, request_id: int, status: int, **result) -> MsgFulfilICATransactionRequest:
    return _answer(MsgFulfilICATransactionRequest, signer, request_id, status, **result)


def fulfil_ica_request(signer: Signer, request_id: int, signed_data: bytes) -> MsgFulfilICATransactionRequest:
    """The answer to the signature request of an ICA transaction (request_id is the signature request's)."""
    return _ica_answer(signer, request_id, mpcsign_pb2.SIGN_REQUEST_STATUS_FULFILLED, signed_data=signed_data)


def reject_ica_request(signer: Signer, request_id: int, reason: str) -> MsgFulfilICATransactionRequest:
    return _ica_answer(
        signer, request_id, mpcsign_pb2.SIGN_REQUEST_STATUS_REJECTED, reject_reason=reason[:MAX_REJECT_REASON]
    )


# ---- keyring administration (identity; the creator must be a keyring admin) ---------------------------


def add_keyring_party(admin: str, keyring_addr: str, party: str,
                      increase_threshold: bool = False) -> identity_tx.MsgAddKeyringParty:
    return identity_tx.MsgAddKeyringParty(creator=admin, keyring_addr=keyring_addr, party=party,
                                          increase_threshold=increase_threshold)


def remove_keyring_party(admin: str, keyring_addr: str, party: str,
                         decrease_threshold: bool = False) -> identity_tx.MsgRemoveKeyringParty:
    """Upstream lowers a threshold above the remaining party count to that count (even to 0)."""
    return identity_tx.MsgRemoveKeyringParty(creator=admin, keyring_addr=keyring_addr, party=party,
                                             decrease_threshold=decrease_threshold)


def update_keyring(admin: str, keyring: object, **changes: object) -> identity_tx.MsgUpdateKeyring:
    """UpdateKeyring sets description, fees and is_active from the message, empty or not: start from the
    keyring as stored (`keyring`, a zrchain.identity.Keyring) and change only the given fields.
    A party_threshold of 0 or above the party count is ignored by the chain."""
    fields = {name: getattr(keyring, name) for name in
              ("party_threshold", "key_req_fee", "sig_req_fee", "description", "is_active")}
    fields.update(changes)
    return identity_tx.MsgUpdateKeyring(creator=admin, keyring_addr=keyring.address, **fields)


def add_keyring_admin(admin: str, keyring_addr: str, new_admin: str) -> identity_tx.MsgAddKeyringAdmin:
    return identity_tx.MsgAddKeyringAdmin(creator=admin, keyring_addr=keyring_addr, admin=new_admin)


def remove_keyring_admin(admin: str, keyring_addr: str, old_admin: str) -> identity_tx.MsgRemoveKeyringAdmin:
    return identity_tx.MsgRemoveKeyringAdmin(creator=admin, keyring_addr=keyring_addr, admin=old_admin)


def deactivate_keyring(admin: str, keyring_addr: str) -> identity_tx.MsgDeactivateKeyring:
    return identity_tx.MsgDeactivateKeyring(creator=admin, keyring_addr=keyring_addr)


def bank_send(signer: Signer, to_address: str, amount: int, denom: str = "urock") -> MsgSend:
    """A Cosmos bank MsgSend from the signer's account: how a keyring party's account is funded."""
    return MsgSend(from_address=signer_address(signer), to_address=to_address,
                   amount=[Coin(denom=denom, amount=str(amount))])
