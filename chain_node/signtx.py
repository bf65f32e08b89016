"""treasury sign-transaction and ICA transaction requests, and the chain's own signature requests.

As zrChain v6 (x/treasury/keeper):
- MsgNewSignTransactionRequest (msg_server_new_sign_transaction_request.go, keeper.go
  HandleSignTransactionRequest): the chain derives the data to sign from `unsigned_transaction` by
  wallet type, creates an ordinary signature request (processSignatureRequests: fee escrow, children)
  and a SignTransactionRequest pointing at it. The `new_sign_request` event it emits carries the
  *sign-transaction* request id, not the signature request's: a keyring must not trust tx events.
- MsgNewICATransactionRequest (msg_server_new_ica_transaction_request.go) stores an
  ICATransactionRequest whose `input_msg` is the encoded ICA MsgSendTx and emits
  `new_ica_transaction_request`. MsgFulfilICATransactionRequest (msg_server_fulfil_ica_transaction_
  request.go) answers a *signature request* whose data is one 32-byte hash.
- The validation module's EndBlock calls HandleSignTransactionRequest itself (abci_utils.go,
  submitEthereumTransaction / submitSolanaTransaction): such requests appear in block events, never in
  a tx's.

Differences (dev node), named in docs/chain.md: wallets NATIVE and SOLANA only (no Keccak here, so no
EVM; no Bitcoin or Zcash parsing), a Solana transaction is signed as given (not parsed for a transfer);
the ICA payload is carried as bytes (not JSON-decoded into Cosmos messages); upstream creates no
signature request for an ICA transaction, the dev node creates one (metadata: the ICA request) so a
keyring has something to answer; chain-created requests come from a dev-only admin call.
"""

from __future__ import annotations

import hashlib

from google.protobuf.any_pb2 import Any as AnyMsg
from google.protobuf.message import Message

from chain_client.address import account_address, bech32_encode
from chain_client.proto_gen.zrchain.treasury import tx_pb2, wallet_pb2
from chain_client.proto_gen.zrchain.treasury.key_pb2 import Key
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import (
    ICATransactionRequest,
    SignRequest,
    SignTransactionRequest,
)
from chain_node import treasury
from chain_node.context import Context
from chain_node.errors import INVALID_REQUEST, TxError, treasury_error

ICA_METADATA_TYPE_URL = "/" + ICATransactionRequest.DESCRIPTOR.full_name
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# ---- wallets (treasury types/wallet*.go, the two the dev node derives) ---------------------------------


def _base58(data: bytes) -> str:
    number, out = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _require_type(key: Key, types: tuple[int, ...], what: str) -> None:
    if key.type not in types:
        raise treasury_error(f"key {key.id} is not a {what} key")


def wallet_address(key: Key, wallet_type: int) -> str:
    """NewWallet(key, type).Address(): zen1… for NATIVE (secp256k1), base58 for SOLANA (Ed25519)."""
    if wallet_type == wallet_pb2.WALLET_TYPE_NATIVE:
        _require_type(key, (treasury.ECDSA, treasury.BITCOIN), "secp256k1")
        return account_address(key.public_key)
    if wallet_type == wallet_pb2.WALLET_TYPE_SOLANA:
        _require_type(key, (treasury.EDDSA,), "ed25519")
        return _base58(key.public_key)
    raise _unsupported(wallet_type)


def _unsupported(wallet_type: int) -> TxError:
    if wallet_type not in wallet_pb2.WalletType.values():
        return treasury_error("error in NewWallet: unknown wallet type")
    return treasury_error(f"wallet type {wallet_pb2.WalletType.Name(wallet_type)} is not supported by the dev node")


def data_for_signing(key: Key, wallet_type: int, unsigned_tx: bytes) -> list[bytes]:
    """The wallet's ParseTx: NATIVE signs SHA-256 of the bytes, SOLANA the message bytes themselves."""
    if wallet_type == wallet_pb2.WALLET_TYPE_NATIVE:
        _require_type(key, (treasury.ECDSA, treasury.BITCOIN), "secp256k1")
        return [hashlib.sha256(unsigned_tx).digest()]
    if wallet_type == wallet_pb2.WALLET_TYPE_SOLANA:
        _require_type(key, (treasury.EDDSA,), "ed25519")
        return [unsigned_tx]
    raise _unsupported(wallet_type)


# ---- sign-transaction requests -------------------------------------------------------------------------


def new_sign_transaction_request(ctx: Context, msg: tx_pb2.MsgNewSignTransactionRequest) -> Message:
    """NewSignTransactionRequest, in upstream's order of checks; the creator must own the workspace."""
    if not msg.key_ids:
        raise TxError(INVALID_REQUEST, "key ids cannot be empty: invalid request")
    if not msg.unsigned_transaction:
        raise TxError(INVALID_REQUEST, "unsigned transaction cannot be empty: invalid request")
    keys = treasury.request_keys(ctx, msg.key_ids)
    if ctx.store.get("workspace", keys[0].workspace_addr) is None:
        raise treasury_error(f"workspace {keys[0].workspace_addr} not found")
    keyring = ctx.store.get("keyring", keys[0].keyring_addr)
    if keyring is None or not keyring.is_active:
        raise treasury_error(f"problem with keyring found: keyring {keys[0].keyring_addr}, IsActive: false")
    treasury.owned_workspace(ctx, msg.creator, keys[0].workspace_addr)
    return handle_sign_transaction_request(ctx, msg, escrow=True)


def handle_sign_transaction_request(ctx: Context, msg: tx_pb2.MsgNewSignTransactionRequest,
                                    escrow: bool) -> tx_pb2.MsgNewSignTransactionRequestResponse:
    """HandleSignTransactionRequest: one hash for several keys is repeated for each key."""
    keys = treasury.request_keys(ctx, msg.key_ids)
    data = data_for_signing(keys[0], msg.wallet_type, msg.unsigned_transaction)
    if len(keys) > 1 and len(data) == 1:
        data = data * len(keys)
    if len(data) != len(keys):
        raise treasury_error(f"sign request payload mismatch: {len(data)} data blobs for {len(keys)} keys")
    parent = SignRequest(creator=msg.creator, cache_id=msg.cache_id)
    if msg.HasField("metadata"):
        parent.metadata.CopyFrom(msg.metadata)
    parent = treasury.create_sign_requests(ctx, parent, keys, data, msg.mpc_btl, escrow=escrow)
    record = SignTransactionRequest(
        id=ctx.store.next_id("signtxreq"),
        creator=msg.creator,
        wallet_type=msg.wallet_type,
        unsigned_transaction=msg.unsigned_transaction,
        sign_request_id=parent.id,
        no_broadcast=msg.no_broadcast,
        key_ids=list(msg.key_ids),
    )
    ctx.store.set("signtxreq", record.id, record)
    ctx.emit("new_sign_request", request_id=record.id)  # upstream: the sign-transaction id (sic)
    return tx_pb2.MsgNewSignTransactionRequestResponse(id=record.id, signature_request_id=parent.id)


# ---- ICA transaction requests --------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value) if value else b""
    return _varint(number << 3 | 2) + _varint(len(value)) + value if value else b""


def ica_send_tx(owner: str, connection_id: str, payload: bytes, relative_timeout: int) -> bytes:
    """ibc-go MsgSendTx {owner 1, connection_id 2, packet_data 3 {type 1 = EXECUTE_TX, data 2, memo 3},
    relative_timeout 4} in deterministic protobuf encoding; `data` carries the payload as given."""
    packet = _field(1, 1) + _field(2, payload)
    return _field(1, owner.encode()) + _field(2, connection_id.encode()) + _field(3, packet) + _field(
        4, relative_timeout)


def new_ica_transaction_request(ctx: Context, msg: tx_pb2.MsgNewICATransactionRequest) -> Message:
    key = ctx.store.get("key", msg.key_id)
    if key is None:
        raise treasury_error(f"key {msg.key_id} not found")
    if not msg.input_payload:
        raise treasury_error("no payload provided")
    if ctx.store.get("workspace", key.workspace_addr) is None:
        raise treasury_error(f"workspace {key.workspace_addr} not found")
    keyring = ctx.store.get("keyring", key.keyring_addr)
    if keyring is None or not keyring.is_active:
        raise treasury_error(f"keyring {key.keyring_addr} is nil or is inactive")
    treasury.owned_workspace(ctx, msg.creator, key.workspace_addr)
    record = ICATransactionRequest(
        id=ctx.store.next_id("icareq"),
        creator=msg.creator,
        key_id=msg.key_id,
        input_msg=ica_send_tx(msg.creator, msg.connection_id, msg.input_payload.encode(),
                              msg.relative_timeout_timestamp),
    )
    ctx.store.set("icareq", record.id, record)
    ctx.emit("new_ica_transaction_request", request_id=record.id)
    # Dev node only: the signature request a keyring answers with MsgFulfilICATransactionRequest.
    parent = SignRequest(creator=msg.creator, metadata=AnyMsg(type_url=ICA_METADATA_TYPE_URL,
                                                              value=record.SerializeToString()))
    data = [hashlib.sha256(record.input_msg).digest()]
    parent = treasury.create_sign_requests(ctx, parent, [key], data, 0, escrow=False)  # btl is the policy's
    return tx_pb2.MsgNewICATransactionRequestResponse(id=record.id, signature_request_id=parent.id)


def fulfil_ica_transaction_request(ctx: Context, msg: tx_pb2.MsgFulfilICATransactionRequest) -> Message:
    """FulfilICATransactionRequest as upstream: no open-status check, no fee, a party's answer counted
    once per distinct keyring_party_signature; invalid data fails the tx rather than rejecting."""
    request = ctx.store.get("signreq", msg.request_id)
    if request is None:
        raise treasury_error("request not found")
    key = ctx.store.get("key", request.key_ids[0]) if request.key_ids else None
    if key is None:
        raise treasury_error("key not found")
    keyring = ctx.store.get("keyring", key.keyring_addr)
    if keyring is not None:
        treasury.check_party(keyring, msg.creator)  # dev node: parties only (upstream does not check)
    if msg.status == treasury.REJECTED:
        treasury.reject_sign_request(ctx, request, msg.reject_reason)
        return tx_pb2.MsgFulfilICATransactionRequestResponse()
    if msg.status not in (treasury.FULFILLED, treasury.PARTIAL):
        raise treasury_error(f"invalid status field {msg.status}, should be either fulfilled/partial/rejected")
    _validate_ica_answer(request, key, msg)
    if all(sig.signature != msg.keyring_party_signature for sig in request.keyring_party_sigs):
        request.keyring_party_sigs.add(creator=msg.creator, signature=msg.keyring_party_signature)
    if keyring is None or not keyring.is_active:
        raise treasury_error(f"keyring {key.keyring_addr} is nil or is inactive")
    if len(request.keyring_party_sigs) >= keyring.party_threshold:
        request.signed_data.add(sign_request_id=request.id, signed_data=msg.signed_data)
        request.status = treasury.FULFILLED
        ctx.emit("ica_transaction_request_fulfilled", request_id=request.id)
    else:
        request.status = treasury.PARTIAL
    ctx.store.set("signreq", request.id, request)
    return tx_pb2.MsgFulfilICATransactionRequestResponse()


def _validate_ica_answer(request: SignRequest, key: Key, msg: tx_pb2.MsgFulfilICATransactionRequest) -> None:
    if not msg.signed_data:
        raise treasury_error("missing signature data")
    if len(msg.keyring_party_signature) != 64:
        raise treasury_error("invalid mpc party signature")
    if len(request.data_for_signing) != 1 or len(request.data_for_signing[0]) != 32:
        raise treasury_error("data for signing should be a single 32-byte hash for ICA transaction requests")
    treasury.check_signature(key.type, key.public_key, request.data_for_signing[0], msg.signed_data)


# ---- the chain's own requests (dev only) ---------------------------------------------------------------

CHAIN_CREATOR = bech32_encode("zen", hashlib.sha256(b"validation").digest()[:20])  # a module account


def chain_sign_transaction_request(ctx: Context, msg: tx_pb2.MsgNewSignTransactionRequest) -> int:
    """What the validation module's EndBlock does: HandleSignTransactionRequest with its own account as
    creator and no fee (its keys are reserved). Returns the signature request id."""
    request = tx_pb2.MsgNewSignTransactionRequest()
    request.CopyFrom(msg)
    request.creator = CHAIN_CREATOR
    return handle_sign_transaction_request(ctx, request, escrow=False).signature_request_id


HANDLERS = {
    tx_pb2.MsgNewSignTransactionRequest: new_sign_transaction_request,
    tx_pb2.MsgNewICATransactionRequest: new_ica_transaction_request,
    tx_pb2.MsgFulfilICATransactionRequest: fulfil_ica_transaction_request,
}
