"""ICA transaction requests: signature requests a keyring answers with MsgFulfilICATransactionRequest.

zrChain's FulfilICATransactionRequest (x/treasury/keeper/msg_server_fulfil_ica_transaction_request.go)
answers a signature request whose data is a single 32-byte hash; it fails the tx (rather than
rejecting) when that is not so, never checks the request is still open, and counts a party once per
distinct party signature. The signature request names its ICA transaction in `metadata` (an Any of
type /zrchain.treasury.ICATransactionRequest carrying the stored request, input_msg included).

The controller plans and verifies these like any signature request (same quorum, same MPC job,
same verification of the result) and adds, from chain data alone so every honest party agrees, that
the data is exactly SHA-256 of the ICA request's input_msg for the key the ICA request names.
"""

from __future__ import annotations

import hashlib
from typing import Any

from google.protobuf.message import DecodeError

from chain_client import messages
from chain_client.crypto import Signer
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import ICATransactionRequest

ICA_TYPE_URL = "/" + ICATransactionRequest.DESCRIPTOR.full_name


def is_ica(request: Any) -> bool:
    """A signature request the chain made for an ICA transaction (read from the request's metadata)."""
    return request.HasField("metadata") and request.metadata.type_url == ICA_TYPE_URL


def reject_reason(request: Any) -> str:
    """Why an ICA signature request must be rejected ("" if it may be signed); chain data only."""
    if not is_ica(request):
        return ""
    try:
        record = ICATransactionRequest.FromString(request.metadata.value)
    except DecodeError:
        return "ICA transaction request metadata does not decode"
    if list(request.key_ids) != [record.key_id]:
        return (f"ICA transaction request {record.id} is for key {record.key_id}, "
                f"the request names {list(request.key_ids)}")
    expected = hashlib.sha256(record.input_msg).digest()
    if len(request.data_for_signing) != 1 or bytes(request.data_for_signing[0]) != expected:
        return f"data_for_signing is not SHA-256 of ICA transaction request {record.id}'s input_msg"
    return ""


def answer(signer: Signer, request_id: int, signature: bytes | None, reason: str | None) -> Any:
    """The MsgFulfilICATransactionRequest carrying our signature, or our rejection when `reason` is set."""
    if reason is not None:
        return messages.reject_ica_request(signer, request_id, reason)
    return messages.fulfil_ica_request(signer, request_id, signature or b"")
