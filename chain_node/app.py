"""The state machine: check transactions into the mempool, then execute them block by block.

CheckTx (BroadcastTx) decodes the tx, verifies the secp256k1 signature over SHA-256(SignDoc) with low S
only, the account number (through the signature), the sequence, the chain id (through the signature)
and the fee, against a "check state" that already counts the txs waiting in the mempool. A block
then rejects overdue requests, executes the mempool in order (fee and sequence first, then every
message on an overlay that is kept only if all of them succeed) and commits to SQLite once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from chain_client.address import account_address
from chain_client.crypto import is_low_s, verify_digest
from chain_client.proto_gen.cosmos.base.abci.v1beta1.abci_pb2 import TxMsgData, TxResponse
from chain_client.proto_gen.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from chain_client.proto_gen.cosmos.tx.signing.v1beta1.signing_pb2 import SIGN_MODE_DIRECT
from chain_client.proto_gen.cosmos.tx.v1beta1.service_pb2 import GetTxResponse
from chain_client.proto_gen.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, Fee, Tx, TxBody, TxRaw
from chain_client.proto_gen.tendermint.abci.types_pb2 import Event
from chain_client.proto_gen.zrchain.treasury.tx_pb2 import MsgNewSignTransactionRequest
from chain_client.tx import FEE_DENOM, PUBKEY_TYPE_URL, pack, sign_doc_bytes, tx_hash
from chain_node import bank, errors, identity, signtx, treasury
from chain_node.context import Context
from chain_node.errors import TxError
from chain_node.genesis import Genesis
from chain_node.store import Account, Overlay, Store

log = logging.getLogger("chain_node")
M = TypeVar("M", bound=Message)

Handler = Callable[[Context, Message], Message]
_MODULE_HANDLERS = {**bank.HANDLERS, **identity.HANDLERS, **treasury.HANDLERS, **signtx.HANDLERS}
HANDLERS: dict[str, tuple[type[Message], Handler]] = {
    "/" + cls.DESCRIPTOR.full_name: (cls, fn) for cls, fn in _MODULE_HANDLERS.items()
}
GAS_PER_TX = 30_000
GAS_PER_MSG = 6_000
GAS_PER_BYTE = 10


@dataclass
class DecodedTx:
    raw: bytes
    hash: str
    body: TxBody
    auth_info: AuthInfo
    tx_raw: TxRaw
    messages: list[Message]
    public_key: bytes
    address: str
    sequence: int
    gas_limit: int
    fee: int

    @property
    def gas_needed(self) -> int:
        return gas_for(len(self.raw), len(self.messages))


def gas_for(size: int, message_count: int) -> int:
    """Deterministic gas: CheckTx, Simulate and block execution agree without running twice."""
    return GAS_PER_TX + GAS_PER_BYTE * size + GAS_PER_MSG * message_count


NON_CRITICAL_FIELD = 1024  # TxBody field numbers with bit 11 set may be unknown (Cosmos ADR 020)


def unknown_field(message: Message, allow_non_critical: bool = False) -> str | None:
    """The first field of `message` (or of a message inside it) this node does not know, or None.

    The SDK's tx decoder (RejectUnknownFields) refuses such a tx: a field the chain would drop or
    misread is an error, not something to ignore.
    """
    for field in UnknownFieldSet(message):
        if not (allow_non_critical and field.field_number >= NON_CRITICAL_FIELD):
            return f"{message.DESCRIPTOR.full_name}: field {field.field_number}"
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.message_type.GetOptions().map_entry:
            continue
        for item in value if descriptor.is_repeated else [value]:
            found = unknown_field(item)
            if found is not None:
                return found
    return None


def _parse(cls: type[M], data: bytes, what: str, allow_non_critical: bool = False) -> M:
    """Decode one part of a tx; malformed bytes or unknown fields are code 2 (tx decode)."""
    try:
        message = cls.FromString(data)
    except DecodeError as exc:
        raise TxError(errors.TX_DECODE, f"{what}: {exc}: tx parse error") from None
    found = unknown_field(message, allow_non_critical)
    if found is not None:
        raise TxError(errors.TX_DECODE, f"{what}: unknown field {found}: tx parse error")
    return message


def _signer_key(auth_info: AuthInfo) -> tuple[bytes, str, int]:
    """(public key, address, sequence) of the single SIGN_MODE_DIRECT secp256k1 signer."""
    signer_info = auth_info.signer_infos[0]
    if signer_info.public_key.type_url != PUBKEY_TYPE_URL:
        raise TxError(errors.INVALID_PUBKEY, f"unsupported key type {signer_info.public_key.type_url!r}")
    if signer_info.mode_info.single.mode != SIGN_MODE_DIRECT:
        raise TxError(errors.UNAUTHORIZED, "only SIGN_MODE_DIRECT is supported")
    public_key = _parse(PubKey, signer_info.public_key.value, "signer public key").key
    try:
        address = account_address(public_key)
    except ValueError as exc:
        raise TxError(errors.INVALID_PUBKEY, str(exc)) from None
    return public_key, address, signer_info.sequence


def _messages(body: TxBody, signer: str) -> list[Message]:
    if not body.messages:
        raise TxError(errors.INVALID_REQUEST, "must contain at least one message")
    messages = []
    for any_msg in body.messages:
        entry = HANDLERS.get(any_msg.type_url)
        if entry is None:
            raise TxError(errors.UNKNOWN_REQUEST, f"unrecognized message type: {any_msg.type_url}")
        message = _parse(entry[0], any_msg.value, f"cannot decode {any_msg.type_url}")
        creator = bank.signer_of(message)
        if creator != signer:
            raise TxError(errors.UNAUTHORIZED, f"creator {creator} is not the tx signer {signer}")
        messages.append(message)
    return messages


def _fee_amount(fee: Fee) -> int:
    """The fee in urock: one coin of the fee denom, a non-negative integer (else code 13)."""
    if len(fee.amount) > 1 or (fee.amount and fee.amount[0].denom != FEE_DENOM):
        raise TxError(errors.INSUFFICIENT_FEE, f"fee must be paid in {FEE_DENOM} only")
    if not fee.amount:
        return 0
    text = fee.amount[0].amount
    if not text.isascii() or not text.isdigit():
        raise TxError(errors.INSUFFICIENT_FEE, f"invalid fee provided: {text[:40]!r}{FEE_DENOM}")
    return int(text)


def decode_tx(raw: bytes) -> DecodedTx:
    """Parse TxRaw bytes into messages and signer data; TxError (code 2, 4, 6, 8, 13, 18) when malformed."""
    tx_raw = _parse(TxRaw, raw, "tx")
    body = _parse(TxBody, tx_raw.body_bytes, "tx body", allow_non_critical=True)
    auth_info = _parse(AuthInfo, tx_raw.auth_info_bytes, "auth info")
    if len(auth_info.signer_infos) != 1 or len(tx_raw.signatures) != 1:
        raise TxError(errors.UNAUTHORIZED, "exactly one signer and one signature are supported")
    public_key, address, sequence = _signer_key(auth_info)
    messages = _messages(body, address)
    return DecodedTx(
        raw=raw,
        hash=tx_hash(raw),
        body=body,
        auth_info=auth_info,
        tx_raw=tx_raw,
        messages=messages,
        public_key=public_key,
        address=address,
        sequence=sequence,
        gas_limit=auth_info.fee.gas_limit,
        fee=_fee_amount(auth_info.fee),
    )


def check_timeout(tx: DecodedTx, height: int) -> None:
    """TxBody.timeout_height as Cosmos's TxTimeoutHeightDecorator: 0 means none, else height <= timeout."""
    timeout = tx.body.timeout_height
    if timeout and height > timeout:
        raise TxError(
            errors.TX_TIMEOUT_HEIGHT, f"block height: {height}, timeout height: {timeout}: tx timeout height"
        )


def _run_messages(ctx: Context, tx: DecodedTx) -> list[Message]:
    return [HANDLERS[m.type_url][1](ctx, msg) for m, msg in zip(tx.body.messages, tx.messages, strict=True)]


class App:
    """Mempool, check state and block execution over one Store; every entry point holds `lock`."""

    def __init__(self, store: Store, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        self.params = genesis.params
        self.lock = threading.RLock()
        self.mempool: list[DecodedTx] = []
        self._mempool_hashes: set[str] = set()
        self._mempool_bytes = 0
        self._check_accounts: dict[str, Account] = {}
        self.chain_requests: list[MsgNewSignTransactionRequest] = []  # dev only; lost on a crash
        if store.height == 0 and not store.data["account"]:
            self._init_genesis()

    def _init_genesis(self) -> None:
        overlay = Overlay(self.store)
        for account in self.genesis.accounts:
            number = overlay.next_id("account_number") - 1  # Cosmos numbers accounts from 0
            overlay.set("account", account.address, Account(account.address, number, 0, account.balance))
        overlay.set("meta", "chain_id", self.genesis.chain_id)
        overlay.commit()
        self.store.commit()
        log.info("genesis: chain %s, %d funded accounts", self.genesis.chain_id, len(self.genesis.accounts))

    # ---- ante checks ---------------------------------------------------------------------------------

    def _ante(self, tx: DecodedTx, account: Account | None, verify_signature: bool, height: int) -> None:
        """Cosmos's ante handler: timeout height, account, sequence, signature, gas and fee. Raises TxError.

        `height` is the block the tx would execute in (the next one, for CheckTx and Simulate).
        """
        check_timeout(tx, height)
        memo = len(tx.body.memo)
        if memo > self.params.max_memo_characters:
            raise TxError(
                errors.MEMO_TOO_LARGE,
                f"maximum number of characters is {self.params.max_memo_characters} but received {memo} "
                "characters: memo too large",
            )
        if account is None:
            raise TxError(errors.UNKNOWN_ADDRESS, f"account {tx.address} not found (no funds on chain)")
        if account.pub_key and account.pub_key != tx.public_key.hex():
            raise TxError(errors.INVALID_PUBKEY, "public key does not match the account's")
        if tx.sequence != account.sequence:
            raise TxError(
                errors.WRONG_SEQUENCE,
                f"account sequence mismatch, expected {account.sequence}, got {tx.sequence}: "
                "incorrect account sequence",
            )
        if verify_signature:
            self._verify_signature(tx, account)
        if tx.gas_limit < tx.gas_needed:
            wanted, used = tx.gas_limit, tx.gas_needed
            raise TxError(errors.OUT_OF_GAS, f"out of gas; gasWanted: {wanted}, gasUsed: {used}")
        required = math.ceil(tx.gas_limit * self.params.min_gas_price)
        if tx.fee < required:
            got, want = f"{tx.fee}{FEE_DENOM}", f"{required}{FEE_DENOM}"
            raise TxError(errors.INSUFFICIENT_FEE, f"insufficient fee; got: {got} required: {want}")
        if account.balance < tx.fee:
            raise TxError(
                errors.INSUFFICIENT_FUNDS,
                f"spendable balance {account.balance}{FEE_DENOM} is smaller than {tx.fee}{FEE_DENOM}: "
                "insufficient funds",
            )

    def _verify_signature(self, tx: DecodedTx, account: Account) -> None:
        signature = tx.tx_raw.signatures[0]
        if len(signature) == 64 and not is_low_s(signature):
            raise TxError(errors.UNAUTHORIZED, "signature is not in lower-S form: unauthorized")
        doc = sign_doc_bytes(
            tx.tx_raw.body_bytes, tx.tx_raw.auth_info_bytes, self.genesis.chain_id, account.account_number
        )
        if not verify_digest(tx.public_key, hashlib.sha256(doc).digest(), signature):
            raise TxError(
                errors.UNAUTHORIZED,
                f"signature verification failed; please verify account number ({account.account_number}), "
                f"sequence ({account.sequence}) and chain-id ({self.genesis.chain_id}): unauthorized",
            )

    @staticmethod
    def _charge(tx: DecodedTx, account: Account) -> None:
        account.balance -= tx.fee
        account.sequence += 1
        account.pub_key = tx.public_key.hex()

    # ---- entry points --------------------------------------------------------------------------------

    def check_tx(self, raw: bytes) -> TxResponse:
        """BroadcastTx (SYNC): admit the tx to the mempool or say why not."""
        txhash = tx_hash(raw)
        try:
            if len(raw) > self.params.max_tx_bytes:
                raise TxError(
                    errors.TX_TOO_LARGE, f"tx too large. Max size is {self.params.max_tx_bytes}, but got {len(raw)}"
                )
            tx = decode_tx(raw)
            with self.lock:
                if txhash in self._mempool_hashes or self.store.get("tx", txhash) is not None:
                    raise TxError(errors.TX_IN_MEMPOOL, "tx already exists in cache")
                self._check_room(len(raw))
                account = self._check_account(tx.address)
                self._ante(tx, account, verify_signature=True, height=self.store.height + 1)
                self._charge(tx, account)
                self.mempool.append(tx)
                self._mempool_hashes.add(txhash)
                self._mempool_bytes += len(raw)
        except TxError as exc:
            log.info("tx %s refused: %s", txhash[:12], exc.log)
            return TxResponse(txhash=txhash, code=exc.code, codespace=exc.codespace, raw_log=exc.log)
        log.debug(
            "tx %s from %s admitted to the mempool (%d messages)", txhash[:12], tx.address, len(tx.messages)
        )
        return TxResponse(txhash=txhash, gas_wanted=tx.gas_limit)

    def _check_room(self, size: int) -> None:
        """The mempool is bounded by count and by bytes (CometBFT's size and max_txs_bytes): code 20."""
        if len(self.mempool) >= 10 * self.params.max_block_txs:
            raise TxError(errors.MEMPOOL_FULL, f"mempool is full: number of txs {len(self.mempool)}")
        if self._mempool_bytes + size > self.params.max_mempool_bytes:
            raise TxError(
                errors.MEMPOOL_FULL,
                f"mempool is full: total txs bytes {self._mempool_bytes} + {size} "
                f"over the limit {self.params.max_mempool_bytes}",
            )

    def _check_account(self, address: str) -> Account | None:
        account = self._check_accounts.get(address)
        if account is None:
            stored = self.store.get("account", address)
            if stored is None:
                return None
            account = self._check_accounts[address] = dataclasses.replace(stored)
        return account

    def simulate(self, raw: bytes) -> tuple[int, list[Event], list[Message]]:
        """Run a tx against the current state without keeping anything; an empty signature is allowed."""
        tx = decode_tx(raw)
        with self.lock:
            account = self._check_account(tx.address)
            signed = bool(tx.tx_raw.signatures[0])
            overlay = Overlay(self.store)
            if account is not None:
                overlay.set("account", tx.address, dataclasses.replace(account))
            gas_limit, tx.gas_limit = tx.gas_limit, max(tx.gas_limit, tx.gas_needed)
            fee, tx.fee = tx.fee, max(tx.fee, math.ceil(tx.gas_limit * self.params.min_gas_price))
            try:
                self._ante(tx, account, verify_signature=signed, height=self.store.height + 1)
            finally:
                tx.gas_limit, tx.fee = gas_limit, fee
            ctx = Context(store=Overlay(overlay), height=self.store.height + 1, params=self.params)
            try:
                responses = _run_messages(ctx, tx)
            except TxError:
                raise
            except Exception as exc:  # as in a block: the message's failure, not the node's
                raise errors.panic_error(exc) from exc
            return tx.gas_needed, ctx.events, responses

    def produce_block(self) -> int:
        """Execute one block: expire overdue requests, run the mempool, commit. Returns the height."""
        with self.lock:
            started = time.perf_counter()
            height = self.store.height + 1
            timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            txs = self._drop_timed_out(self.mempool[: self.params.max_block_txs], height)
            self.mempool = self.mempool[self.params.max_block_txs :]
            begin = Context(store=Overlay(self.store), height=height, params=self.params)
            expired = treasury.expire_requests(begin, self.store)
            begin.store.commit()
            for event in begin.events:
                log.info("block %d: %s %s", height, event.type, {a.key: a.value for a in event.attributes})
            failed = sum(self._deliver(tx, height, timestamp) for tx in txs)
            created = self._end_block(height)
            self.store.set("meta", "height", height)
            self.store.set("meta", "time", timestamp)
            self.store.commit()
            self._check_accounts.clear()
            self._mempool_hashes = {tx.hash for tx in self.mempool}
            self._mempool_bytes = sum(len(tx.raw) for tx in self.mempool)
            for tx in self.mempool:  # txs left for the next block stay counted in the check state
                account = self._check_account(tx.address)
                if account is not None:
                    self._charge(tx, account)
            if txs or expired or created:
                log.info(
                    "block %d: %d txs (%d failed), %d requests timed out, %.1f ms",
                    height,
                    len(txs),
                    failed,
                    expired,
                    (time.perf_counter() - started) * 1000,
                )
            return height

    def queue_chain_request(self, msg: MsgNewSignTransactionRequest) -> None:
        """Dev only: have the chain itself request a signature at the end of the next block."""
        with self.lock:
            self.chain_requests.append(msg)

    def _end_block(self, height: int) -> int:
        """EndBlock: the chain's own signature requests (validation module). Their events are block
        events, in no tx; a request that cannot be made is logged and dropped, the block goes on."""
        queued, self.chain_requests = self.chain_requests, []
        for msg in queued:
            ctx = Context(store=Overlay(self.store), height=height, params=self.params)
            try:
                request_id = signtx.chain_sign_transaction_request(ctx, msg)
            except TxError as exc:
                log.warning("block %d: end_block: chain signature request refused: %s", height, exc.log)
                continue
            ctx.store.commit()
            for event in ctx.events:
                log.info("block %d: end_block %s %s", height, event.type, {a.key: a.value for a in event.attributes})
            log.info("block %d: end_block created signature request %d", height, request_id)
        return len(queued)

    @staticmethod
    def _drop_timed_out(txs: list[DecodedTx], height: int) -> list[DecodedTx]:
        """Txs past their timeout_height leave the mempool unrecorded: never in a block, GetTx NOT_FOUND.

        (A Cosmos node's mempool recheck evicts them the same way.) A later tx of the same signer then
        fails in the block with a sequence mismatch.
        """
        kept = []
        for tx in txs:
            try:
                check_timeout(tx, height)
            except TxError as exc:
                log.info("block %d: tx %s from %s dropped: %s", height, tx.hash[:12], tx.address, exc.log)
                continue
            kept.append(tx)
        return kept

    def _deliver(self, tx: DecodedTx, height: int, timestamp: str) -> bool:
        """Execute one tx into the store and record its result; returns True when it failed."""
        response = TxResponse(height=height, txhash=tx.hash, gas_wanted=tx.gas_limit, timestamp=timestamp)
        ante = Overlay(self.store)
        try:
            account = ante.get("account", tx.address)
            # the signature was checked at CheckTx
            self._ante(tx, account, verify_signature=False, height=height)
            self._charge(tx, account)
            ante.set("account", tx.address, account)
            ante.commit()
        except TxError as exc:
            return self._record(tx, response, exc)
        response.gas_used = tx.gas_needed
        ctx = Context(store=Overlay(self.store), height=height, params=self.params)
        try:
            responses = _run_messages(ctx, tx)
        except TxError as exc:
            return self._record(tx, response, exc)
        except Exception as exc:  # baseapp recovers a panicking message: the tx fails, the block goes on
            log.exception("block %d: tx %s: message handler raised", height, tx.hash[:12])
            return self._record(tx, response, errors.panic_error(exc))
        ctx.store.commit()
        response.events.extend(ctx.events)
        msg_data = TxMsgData(msg_responses=[pack(r) for r in responses])
        response.data = msg_data.SerializeToString().hex().upper()
        self.store.set("tx", tx.hash, GetTxResponse(tx=self._tx_message(tx), tx_response=response))
        for event in ctx.events:
            log.info("block %d: %s %s", height, event.type, {a.key: a.value for a in event.attributes})
        return False

    def _record(self, tx: DecodedTx, response: TxResponse, exc: TxError) -> bool:
        response.code, response.codespace, response.raw_log = exc.code, exc.codespace, exc.log
        self.store.set("tx", tx.hash, GetTxResponse(tx=self._tx_message(tx), tx_response=response))
        log.info("block %d: tx %s from %s failed: %s", response.height, tx.hash[:12], tx.address, exc.log)
        return True

    @staticmethod
    def _tx_message(tx: DecodedTx) -> Tx:
        return Tx(body=tx.body, auth_info=tx.auth_info, signatures=list(tx.tx_raw.signatures))
