"""ICA transaction requests: signature requests a keyring answers with MsgFulfilICATransactionRequest.

zrChain's FulfilICATransactionRequest (x/treasury/keeper/msg_server_fulfil_ica_transaction_request.go)
answers a signature request whose data is a single 32-byte hash; it fails the tx (rather than
rejecting) when that is not so, never checks the request is still open, and counts a party once per
distinct party signature. The signature request names its ICA transaction in `metadata` (an Any of
type /zrchain.treasury.ICATransactionRequest carrying the stored request, input_msg included).

The controller plans and verifies these like any signature request (same quorum, same MPC job,
same verification of the result); the rule that the data is exactly SHA-256 of the ICA request's
input_msg for the key the ICA request names is in rules/requests.py (the party daemon applies it too,
before it joins a peer's signing session). What is left here is the answer's message.
"""

from __future__ import annotations

from typing import Any

from appliance.rules.requests import is_ica
from chain_client import messages
from chain_client.crypto import Signer

__all__ = ["answer", "is_ica"]


def answer(signer: Signer, request_id: int, signature: bytes | None, reason: str | None) -> Any:
    """The MsgFulfilICATransactionRequest carrying our signature, or our rejection when `reason` is set."""
    if reason is not None:
        return messages.reject_ica_request(signer, request_id, reason)
    return messages.fulfil_ica_request(signer, request_id, signature or b"")
