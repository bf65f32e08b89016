"""Cosmos SDK transaction encoding for SIGN_MODE_DIRECT: messages in, signed TxRaw bytes out.

Pure functions with no I/O, shared by the client (to build) and the node (to decode and check).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.any_pb2 import Any
from google.protobuf.message import Message

from chain_client.crypto import Signer
from chain_client.proto_gen.cosmos.base.v1beta1.coin_pb2 import Coin
from chain_client.proto_gen.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from chain_client.proto_gen.cosmos.tx.signing.v1beta1.signing_pb2 import SIGN_MODE_DIRECT
from chain_client.proto_gen.cosmos.tx.v1beta1.tx_pb2 import (
    AuthInfo,
    Fee,
    ModeInfo,
    SignDoc,
    SignerInfo,
    TxBody,
    TxRaw,
)

FEE_DENOM = "urock"
PUBKEY_TYPE_URL = "/cosmos.crypto.secp256k1.PubKey"


def type_url(message: Message) -> str:
    return "/" + message.DESCRIPTOR.full_name


def pack(message: Message) -> Any:
    """Wrap a message as Any with Cosmos's type URL form `/package.Name` (no type.googleapis.com)."""
    return Any(type_url=type_url(message), value=message.SerializeToString())


@dataclass(frozen=True)
class TxSpec:
    """Everything a signature commits to besides the messages."""

    chain_id: str
    account_number: int
    sequence: int
    gas_limit: int
    fee_amount: int
    memo: str = ""
    timeout_height: int = 0


def tx_hash(tx_bytes: bytes) -> str:
    """The hash GetTx looks a transaction up by: upper-case hex SHA-256 of the TxRaw bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def sign_doc_bytes(body_bytes: bytes, auth_info_bytes: bytes, chain_id: str, account_number: int) -> bytes:
    doc = SignDoc(body_bytes=body_bytes, auth_info_bytes=auth_info_bytes)
    doc.chain_id, doc.account_number = chain_id, account_number
    return doc.SerializeToString()


def build_tx(signer: Signer, messages: Sequence[Message], spec: TxSpec) -> bytes:
    """Encode and sign a one-signer transaction; returns the TxRaw bytes to broadcast."""
    if not messages:
        raise ValueError("a transaction needs at least one message")
    body = TxBody(messages=[pack(m) for m in messages], memo=spec.memo, timeout_height=spec.timeout_height)
    public_key = Any(type_url=PUBKEY_TYPE_URL, value=PubKey(key=signer.public_key()).SerializeToString())
    auth_info = AuthInfo(
        signer_infos=[
            SignerInfo(
                public_key=public_key,
                mode_info=ModeInfo(single=ModeInfo.Single(mode=SIGN_MODE_DIRECT)),
                sequence=spec.sequence,
            )
        ],
        fee=Fee(amount=[Coin(denom=FEE_DENOM, amount=str(spec.fee_amount))], gas_limit=spec.gas_limit),
    )
    body_bytes = body.SerializeToString()
    auth_bytes = auth_info.SerializeToString()
    doc = sign_doc_bytes(body_bytes, auth_bytes, spec.chain_id, spec.account_number)
    digest = hashlib.sha256(doc).digest()
    signature = signer.sign_digest(digest)
    if len(signature) != 64:
        raise ValueError(f"signer returned {len(signature)} bytes, expected 64 (r||s)")
    raw = TxRaw(body_bytes=body_bytes, auth_info_bytes=auth_bytes, signatures=[signature])
    return raw.SerializeToString()
