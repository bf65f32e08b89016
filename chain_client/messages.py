"""Builders for the messages a keyring party sends, with the party signature made by its Signer."""

from __future__ import annotations

from chain_client.crypto import Signer, party_signature, signer_address
from chain_client.proto_gen.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from chain_client.proto_gen.cosmos.base.v1beta1.coin_pb2 import Coin
from chain_client.proto_gen.zrchain.treasury import key_pb2, mpcsign_pb2
from chain_client.proto_gen.zrchain.treasury.tx_pb2 import (
    MsgFulfilKeyRequest,
    MsgFulfilSignatureRequest,
    MsgNewKey,
)

MAX_REJECT_REASON = 512


def _key_answer(signer: Signer, request_id: int, status: int, **result) -> MsgFulfilKeyRequest:
    return MsgFulfilKeyRequest(
        creator=signer_address(signer),
        request_id=request_id,
        status=status,
        keyring_party_signature=party_signature(signer, request_id),
        **result,
    )


def _sign_answer(signer: Signer, request_id: int, status: int, **result) -> MsgFulfilSignatureRequest:
    return MsgFulfilSignatureRequest(
        creator=signer_address(signer),
        request_id=request_id,
        status=status,
        keyring_party_signature=party_signature(signer, request_id),
        **result,
    )


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


def bank_send(signer: Signer, to_address: str, amount: int, denom: str = "urock") -> MsgSend:
    """A Cosmos bank MsgSend from the signer's account: how a keyring party's account is funded."""
    return MsgSend(from_address=signer_address(signer), to_address=to_address,
                   amount=[Coin(denom=denom, amount=str(amount))])
