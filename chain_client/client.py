"""ChainClient: zrChain queries and transactions over gRPC, with retries and endpoint failover.

- Transient gRPC errors (UNAVAILABLE, DEADLINE_EXCEEDED) are retried with exponential backoff,
  moving to the next configured endpoint each time, so one node going down does not stop a keyring.
- Each signer's account number and sequence are cached; a "sequence mismatch" answer makes the client
  re-query the account, re-sign and resend once.
- `send` = BroadcastTx (SYNC) then GetTx until the tx is in a block; failures raise ChainTxError with
  the node's code, codespace and raw_log.
- For a durable journal the two halves are public: `prepare` signs (and takes a sequence) without any
  network write, `broadcast_raw` sends exactly those bytes, as often as needed; `resync` re-reads the
  sequence from the chain.
- Channels are TLS when `tls_ca_pem` is set: the node's certificate must chain to that pinned CA (or be
  that certificate), so a machine on the path cannot answer as the chain. Without it the channel is
  plaintext, and a warning says so once per endpoint (the daemons' `[chain]` table only allows that to
  a loopback address; see appliance/runtime/chain.py and docs/chain-trust.md).
- `*_at` queries also return the block height the node says it answered at (the `x-cosmos-block-height`
  response header a Cosmos node sends), which the k-of-m reader (chain_client/agreement.py) compares.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from chain_client.channels import RECONNECT_OPTIONS
from chain_client.crypto import Signer, signer_address
from chain_client.errors import (
    ANTE_CODES,
    TX_IN_CACHE,
    WRONG_SEQUENCE,
    ChainTxError,
    ChainUnavailable,
)
from chain_client.proto_gen.cosmos.auth.v1beta1 import query_pb2 as auth_query
from chain_client.proto_gen.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from chain_client.proto_gen.cosmos.bank.v1beta1 import query_pb2 as bank_query
from chain_client.proto_gen.cosmos.base.abci.v1beta1.abci_pb2 import TxMsgData, TxResponse
from chain_client.proto_gen.cosmos.base.query.v1beta1.pagination_pb2 import PageRequest
from chain_client.proto_gen.cosmos.base.tendermint.v1beta1 import query_pb2 as cmt_query
from chain_client.proto_gen.cosmos.tx.v1beta1 import service_pb2 as tx_service
from chain_client.proto_gen.zrchain.identity import query_pb2 as identity_query
from chain_client.proto_gen.zrchain.identity.identity_pb2 import Keyring, Workspace
from chain_client.proto_gen.zrchain.treasury import key_pb2, mpcsign_pb2
from chain_client.proto_gen.zrchain.treasury import query_pb2 as treasury_query
from chain_client.proto_gen.zrchain.treasury.params_pb2 import Params as TreasuryParams
from chain_client.tx import FEE_DENOM, TxSpec, build_tx, tx_hash

log = logging.getLogger("chain_client")
M = TypeVar("M", bound=Message)
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_EXPECTED_SEQUENCE = re.compile(r"expected (\d+), got (\d+)")
HEIGHT_HEADER = "x-cosmos-block-height"


def endpoint_host(endpoint: str) -> str:
    """The host part of a gRPC target "host:port" ("[v6]:port" too); ValueError if it has no port."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{endpoint!r} is not host:port")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(endpoint: str) -> bool:
    """True only for 127.0.0.0/8, ::1 and "localhost": traffic that never leaves this host."""
    host = endpoint_host(endpoint)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name other than localhost may resolve anywhere


_PLAIN_NOT_FOUND = re.compile(r"\bnot found\b")


def is_not_found(exc: grpc.RpcError) -> bool:
    """Whether a query error means "no such object".

    The SDK's services say NOT_FOUND; zrChain's treasury and identity by-id queries return plain
    errors, which arrive as UNKNOWN with a text such as "key request 7 not found" or "keyring … not
    found: not found". Both mean absent; any other error is a failure to answer.
    """
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return True
    return code == grpc.StatusCode.UNKNOWN and bool(_PLAIN_NOT_FOUND.search(exc.details() or ""))


def answer_height(call: Any) -> int | None:
    """The height a node reported for one answer (initial or trailing metadata), None if it sent none."""
    for getter in ("initial_metadata", "trailing_metadata"):
        read = getattr(call, getter, None)
        metadata = (read() if read is not None else None) or ()
        for key, value in metadata:
            if key == HEIGHT_HEADER and str(value).isdigit():
                return int(value)
    return None


@dataclass
class ClientConfig:
    """How to reach the chain and pay for transactions (zrChain's public client: 300000 gas, 750000urock)."""

    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:9090"])
    chain_id: str = "diamond-1"
    gas_limit: int = 300_000
    fee_amount: int = 750_000
    simulate: bool = False  # ask the node for the gas (Simulate), then pay gas * gas_price
    gas_adjustment: float = 1.3
    gas_price: float = 2.5  # urock per gas when simulating
    rpc_timeout_s: float = 5.0
    tls_ca_pem: bytes = b""  # PEM CA (or the node's own certificate) to pin; empty: plaintext
    tls_server_name: str = ""  # name the node's certificate must carry ("": the endpoint's host)
    attempts: int = 4  # rounds over all endpoints before giving up
    backoff_s: float = 0.1
    backoff_max_s: float = 2.0
    inclusion_timeout_s: float = 30.0
    poll_interval_s: float = 0.1


@dataclass
class _AccountState:
    number: int
    sequence: int


@dataclass(frozen=True)
class PreparedTx:
    """A signed transaction not yet sent: what a journal stores before broadcasting.

    Re-broadcasting `tx_bytes` is always safe: the chain runs one tx at most once (same hash, same
    sequence), so a retry after a crash or timeout either lands it or is answered "already in cache".
    """

    tx_bytes: bytes
    tx_hash: str  # upper-case hex SHA-256 of tx_bytes, what GetTx looks up
    sequence: int
    account_number: int


def _status_value(enum: Any, status: int | str) -> int:
    if isinstance(status, str):
        return enum.Value(status)
    return status


class ChainClient:
    """Thread-safe; one instance per process is enough."""

    def __init__(self, config: ClientConfig) -> None:
        if not config.endpoints:
            raise ValueError("ClientConfig.endpoints is empty")
        self.config = config
        self._channels: dict[str, grpc.Channel] = {}
        self._methods: dict[tuple[str, str], Callable[..., Any]] = {}
        self._active = 0
        self._guard = threading.Lock()
        self._signer_locks: dict[str, threading.Lock] = {}
        self._accounts: dict[str, _AccountState] = {}
        if not config.tls_ca_pem:
            for endpoint in config.endpoints:
                where = "loopback" if is_loopback(endpoint) else "NOT loopback"
                log.warning("plaintext gRPC to chain endpoint %s (%s): its answers are not authenticated",
                            endpoint, where)

    def _open_channel(self, endpoint: str) -> grpc.Channel:
        """A TLS channel pinned to the configured CA, or plaintext when none is configured."""
        options: list[tuple[str, Any]] = list(RECONNECT_OPTIONS)  # back within ~1 s of the node's return
        if not self.config.tls_ca_pem:
            return grpc.insecure_channel(endpoint, options=options)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.config.tls_ca_pem)
        if self.config.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self.config.tls_server_name))
        return grpc.secure_channel(endpoint, credentials, options=options)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._methods.clear()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------------------------

    def _method(self, endpoint: str, path: str, response_cls: type[M]) -> Callable[..., M]:
        with self._guard:
            method = self._methods.get((endpoint, path))
            if method is None:
                channel = self._channels.get(endpoint)
                if channel is None:
                    channel = self._channels[endpoint] = self._open_channel(endpoint)
                method = channel.unary_unary(
                    path,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=response_cls.FromString,
                )
                self._methods[(endpoint, path)] = method
            return method

    def call(self, path: str, request: Message, response_cls: type[M]) -> M:
        """One unary call with retry and failover on transient errors; other gRPC errors propagate."""
        return self.call_at(path, request, response_cls)[0]

    def call_at(self, path: str, request: Message, response_cls: type[M]) -> tuple[M, int | None]:
        """`call`, plus the height the answering node reported (None: it reported none)."""
        endpoints = self.config.endpoints
        delay = self.config.backoff_s
        last: grpc.RpcError | None = None
        for round_ in range(self.config.attempts):
            for _ in range(len(endpoints)):
                endpoint = endpoints[self._active % len(endpoints)]
                try:
                    method = self._method(endpoint, path, response_cls)
                    response, rpc = method.with_call(request, timeout=self.config.rpc_timeout_s)
                    return response, answer_height(rpc)
                except grpc.RpcError as exc:
                    if exc.code() not in TRANSIENT:
                        raise
                    last = exc
                    log.warning("%s on %s: %s; trying the next endpoint", path, endpoint, exc.code().name)
                    self._active = (self._active + 1) % len(endpoints)
            if round_ + 1 < self.config.attempts:
                time.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)
        detail = last.details() if last is not None else "no attempt made"
        raise ChainUnavailable(f"no chain node answered {path} at {', '.join(endpoints)}: {detail}")

    def _get_or_none(self, path: str, request: Message, response_cls: type[M]) -> M | None:
        try:
            return self.call(path, request, response_cls)
        except grpc.RpcError as exc:
            if is_not_found(exc):
                return None
            raise

    def _get_at(self, path: str, request: Message, response_cls: type[M]) -> tuple[M | None, int | None]:
        """`_get_or_none` with the reported height (a NOT_FOUND answer carries it too)."""
        try:
            return self.call_at(path, request, response_cls)
        except grpc.RpcError as exc:
            if is_not_found(exc):
                return None, answer_height(exc)
            raise

    def _pages(self, path: str, request: Any, response_cls: type[M], field_name: str, limit: int) -> list:
        items: list = []
        request.pagination.CopyFrom(PageRequest(limit=limit))
        while True:
            response = self.call(path, request, response_cls)
            items.extend(getattr(response, field_name))
            if not response.pagination.next_key:
                return items
            request.pagination.CopyFrom(PageRequest(key=response.pagination.next_key, limit=limit))

    # ---- queries -----------------------------------------------------------------------------------

    def account(self, address: str) -> BaseAccount | None:
        response = self._get_or_none(
            "/cosmos.auth.v1beta1.Query/Account",
            auth_query.QueryAccountRequest(address=address),
            auth_query.QueryAccountResponse,
        )
        if response is None:
            return None
        return BaseAccount.FromString(response.account.value)

    def balance(self, address: str, denom: str = FEE_DENOM) -> int:
        """The account's spendable balance of `denom` (bank Balance); an address with no account is 0,
        as the SDK answers. A controller reads it to post only the answers it can pay for."""
        response = self.call(
            "/cosmos.bank.v1beta1.Query/Balance",
            bank_query.QueryBalanceRequest(address=address, denom=denom),
            bank_query.QueryBalanceResponse,
        )
        return int(response.balance.amount or 0)

    def key_requests(
        self, keyring_addr: str = "", status: int | str = 0, workspace_addr: str = "", page_limit: int = 100
    ) -> list[key_pb2.KeyReqResponse]:
        """Every key request matching the filters (all pages); empty filters match everything."""
        request = treasury_query.QueryKeyRequestsRequest(
            keyring_addr=keyring_addr,
            status=_status_value(key_pb2.KeyRequestStatus, status),
            workspace_addr=workspace_addr,
        )
        path = "/zrchain.treasury.Query/KeyRequests"
        return self._pages(path, request, treasury_query.QueryKeyRequestsResponse, "key_requests", page_limit)

    def sign_requests(
        self, keyring_addr: str = "", status: int | str = 0, page_limit: int = 100
    ) -> list[mpcsign_pb2.SignReqResponse]:
        request = treasury_query.QuerySignatureRequestsRequest(
            keyring_addr=keyring_addr, status=_status_value(mpcsign_pb2.SignRequestStatus, status)
        )
        path = "/zrchain.treasury.Query/SignatureRequests"
        return self._pages(
            path, request, treasury_query.QuerySignatureRequestsResponse, "sign_requests", page_limit
        )

    def key_request(self, request_id: int) -> key_pb2.KeyReqResponse | None:
        return self.key_request_at(request_id)[0]

    def key_request_at(self, request_id: int) -> tuple[key_pb2.KeyReqResponse | None, int | None]:
        response, height = self._get_at(
            "/zrchain.treasury.Query/KeyRequestByID",
            treasury_query.QueryKeyRequestByIDRequest(id=request_id),
            treasury_query.QueryKeyRequestByIDResponse,
        )
        return (response.key_request if response is not None else None), height

    def sign_request(self, request_id: int) -> mpcsign_pb2.SignReqResponse | None:
        return self.sign_request_at(request_id)[0]

    def sign_request_at(self, request_id: int) -> tuple[mpcsign_pb2.SignReqResponse | None, int | None]:
        response, height = self._get_at(
            "/zrchain.treasury.Query/SignatureRequestByID",
            treasury_query.QuerySignatureRequestByIDRequest(id=request_id),
            treasury_query.QuerySignatureRequestByIDResponse,
        )
        return (response.sign_request if response is not None else None), height

    def key(self, key_id: int) -> key_pb2.KeyResponse | None:
        return self.key_at(key_id)[0]

    def key_at(self, key_id: int) -> tuple[key_pb2.KeyResponse | None, int | None]:
        response, height = self._get_at(
            "/zrchain.treasury.Query/KeyByID",
            treasury_query.QueryKeyByIDRequest(id=key_id),
            treasury_query.QueryKeyByIDResponse,
        )
        return (response.key if response is not None else None), height

    def keys(self, workspace_addr: str = "", page_limit: int = 100) -> list[key_pb2.KeyResponse]:
        request = treasury_query.QueryKeysRequest(workspace_addr=workspace_addr)
        path = "/zrchain.treasury.Query/Keys"
        found = self._pages(path, request, treasury_query.QueryKeysResponse, "keys", page_limit)
        return [entry.key for entry in found]

    def keyring(self, keyring_addr: str) -> Keyring | None:
        response = self._get_or_none(
            "/zrchain.identity.Query/KeyringByAddress",
            identity_query.QueryKeyringByAddressRequest(keyring_addr=keyring_addr),
            identity_query.QueryKeyringByAddressResponse,
        )
        return response.keyring if response is not None else None

    def workspace(self, workspace_addr: str) -> Workspace | None:
        response = self._get_or_none(
            "/zrchain.identity.Query/WorkspaceByAddress",
            identity_query.QueryWorkspaceByAddressRequest(workspace_addr=workspace_addr),
            identity_query.QueryWorkspaceByAddressResponse,
        )
        return response.workspace if response is not None else None

    def keyrings(self, page_limit: int = 100) -> list[Keyring]:
        """identity Keyrings: every keyring (all pages)."""
        path = "/zrchain.identity.Query/Keyrings"
        request = identity_query.QueryKeyringsRequest()
        return self._pages(path, request, identity_query.QueryKeyringsResponse, "keyrings", page_limit)

    def workspaces(self, owner: str = "", creator: str = "", page_limit: int = 100) -> list[Workspace]:
        """identity Workspaces filtered by an owner and/or the creator (all pages)."""
        path = "/zrchain.identity.Query/Workspaces"
        request = identity_query.QueryWorkspacesRequest(owner=owner, creator=creator)
        return self._pages(path, request, identity_query.QueryWorkspacesResponse, "workspaces", page_limit)

    def identity_params(self) -> identity_query.Params:
        return self.call(
            "/zrchain.identity.Query/Params", identity_query.QueryParamsRequest(), identity_query.QueryParamsResponse
        ).params

    def sign_transaction_requests(
        self, key_id: int = 0, wallet_type: int = 0, status: int | str = 0, page_limit: int = 100
    ) -> list[treasury_query.SignTransactionRequestsResponse]:
        """treasury SignTransactionRequests: each with its signature request (mpc_btl, fee left empty)."""
        path = "/zrchain.treasury.Query/SignTransactionRequests"
        request = treasury_query.QuerySignTransactionRequestsRequest(
            key_id=key_id, wallet_type=wallet_type, status=_status_value(mpcsign_pb2.SignRequestStatus, status)
        )
        return self._pages(
            path, request, treasury_query.QuerySignTransactionRequestsResponse, "sign_transaction_requests",
            page_limit,
        )

    def sign_transaction_request(self, request_id: int) -> mpcsign_pb2.SignTxReqResponse | None:
        response = self._get_or_none(
            "/zrchain.treasury.Query/SignTransactionRequestByID",
            treasury_query.QuerySignTransactionRequestByIDRequest(id=request_id),
            treasury_query.QuerySignTransactionRequestByIDResponse,
        )
        return response.sign_transaction_request if response is not None else None

    def key_by_address(self, address: str, wallet_type: int, keyring_addr: str = "",
                       key_type: int = 0) -> key_pb2.KeyResponse | None:
        """treasury KeyByAddress: the key whose wallet of this type has `address` (None: no such key)."""
        response = self.call(
            "/zrchain.treasury.Query/KeyByAddress",
            treasury_query.QueryKeyByAddressRequest(
                address=address, wallet_type=wallet_type, keyring_addr=keyring_addr, key_type=key_type),
            treasury_query.QueryKeyByAddressResponse,
        )
        return response.response.key if response.HasField("response") else None

    def latest_block(self) -> tuple[str, int, datetime | None]:
        """(chain id, height, block time in UTC) of the newest committed block (GetLatestBlock).

        Reads `sdk_block` (Cosmos SDK 0.47+) and falls back to the deprecated CometBFT `block`.
        The time is None before the first block.
        """
        response = self.call(
            "/cosmos.base.tendermint.v1beta1.Service/GetLatestBlock",
            cmt_query.GetLatestBlockRequest(),
            cmt_query.GetLatestBlockResponse,
        )
        header = response.sdk_block.header if response.sdk_block.HasField("header") else response.block.header
        when = header.time.ToDatetime(tzinfo=UTC) if header.HasField("time") else None
        return header.chain_id, header.height, when

    def latest_height(self) -> int:
        return self.latest_block()[1]

    def params(self) -> TreasuryParams:
        """zrChain treasury Params (`default_btl`: blocks a request lives when it sets no mpc_btl)."""
        return self.call(
            "/zrchain.treasury.Query/Params", treasury_query.QueryParamsRequest(), treasury_query.QueryParamsResponse
        ).params

    def get_tx(self, txhash: str) -> tx_service.GetTxResponse | None:
        return self._get_or_none(
            "/cosmos.tx.v1beta1.Service/GetTx", tx_service.GetTxRequest(hash=txhash), tx_service.GetTxResponse
        )

    # ---- transactions ------------------------------------------------------------------------------

    def _signer_lock(self, address: str) -> threading.Lock:
        with self._guard:
            return self._signer_locks.setdefault(address, threading.Lock())

    def _load_account(self, address: str) -> _AccountState:
        account = self.account(address)
        if account is None:
            raise ChainTxError(9, "sdk", f"account {address} not found on chain (it has no funds)")
        state = _AccountState(account.account_number, account.sequence)
        self._accounts[address] = state
        return state

    def forget_account(self, address: str) -> None:
        """Drop the cached sequence, e.g. after another process used the same key."""
        self._accounts.pop(address, None)

    def _gas_and_fee(self, signer: Signer, messages: Sequence[Message], spec: TxSpec) -> tuple[int, int]:
        if not self.config.simulate:
            return self.config.gas_limit, self.config.fee_amount
        raw = build_tx(signer, messages, spec)
        try:
            response = self.call(
                "/cosmos.tx.v1beta1.Service/Simulate",
                tx_service.SimulateRequest(tx_bytes=raw),
                tx_service.SimulateResponse,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return self.config.gas_limit, self.config.fee_amount
            raise ChainTxError.from_simulate_detail(exc.details() or "") from None
        gas = math.ceil(response.gas_info.gas_used * self.config.gas_adjustment)
        return gas, math.ceil(gas * self.config.gas_price)

    def resync(self, address: str) -> int:
        """Re-read the account's sequence from the chain (e.g. after a prepared tx was refused or timed
        out); returns the sequence the next `prepare` will use."""
        with self._signer_lock(address):
            return self._load_account(address).sequence

    def prepare(
        self, signer: Signer, messages: Sequence[Message], memo: str = "", timeout_height: int = 0
    ) -> PreparedTx:
        """Sign with the cached sequence and advance it; nothing is sent (Simulate aside, if configured).

        `timeout_height` (0: none) makes the chain refuse the tx in any block above that height, so a
        journal can tell "will never land" from "may still land" after a crash.
        """
        address = signer_address(signer)
        with self._signer_lock(address):
            return self._prepare_locked(signer, address, messages, memo, timeout_height)

    def _prepare_locked(
        self, signer: Signer, address: str, messages: Sequence[Message], memo: str, timeout_height: int
    ) -> PreparedTx:
        state = self._accounts.get(address) or self._load_account(address)
        spec = TxSpec(self.config.chain_id, state.number, state.sequence, 0, 0, memo, timeout_height)
        gas, fee = self._gas_and_fee(signer, messages, spec)
        spec = TxSpec(self.config.chain_id, state.number, state.sequence, gas, fee, memo, timeout_height)
        raw = build_tx(signer, messages, spec)
        state.sequence += 1
        return PreparedTx(raw, tx_hash(raw), spec.sequence, spec.account_number)

    def broadcast_raw(self, tx_bytes: bytes) -> TxResponse:
        """BroadcastTx (SYNC) of exactly these bytes. Returns the node's answer when the tx is in: code 0,
        or TX_IN_CACHE (19) when these bytes already reached the node; raises ChainTxError otherwise."""
        response = self.call(
            "/cosmos.tx.v1beta1.Service/BroadcastTx",
            tx_service.BroadcastTxRequest(tx_bytes=tx_bytes, mode=tx_service.BROADCAST_MODE_SYNC),
            tx_service.BroadcastTxResponse,
        ).tx_response
        if not response.txhash:
            response.txhash = tx_hash(tx_bytes)
        if response.code in (0, TX_IN_CACHE):
            return response
        raise ChainTxError.from_response(response)

    def broadcast(
        self, signer: Signer, messages: Sequence[Message], memo: str = "", timeout_height: int = 0
    ) -> str:
        """Sign and broadcast (SYNC); returns the tx hash once the node admitted it to its mempool.

        A sequence mismatch re-reads the account and re-signs once; any other refusal gives the
        sequence back (or forgets the account after an ante failure) before raising.
        """
        address = signer_address(signer)
        with self._signer_lock(address):
            for attempt in range(2):
                prepared = self._prepare_locked(signer, address, messages, memo, timeout_height)
                try:
                    return self.broadcast_raw(prepared.tx_bytes).txhash
                except ChainTxError as exc:
                    self._give_back(address, prepared)
                    if exc.code == WRONG_SEQUENCE and attempt == 0:
                        log.info("sequence mismatch for %s (%s); re-reading account", address, exc.raw_log)
                        state = self._load_account(address)
                        match = _EXPECTED_SEQUENCE.search(exc.raw_log)
                        if match:
                            state.sequence = max(state.sequence, int(match.group(1)))
                        continue
                    if exc.code in ANTE_CODES:
                        self.forget_account(address)
                    raise
        raise AssertionError("unreachable")

    def _give_back(self, address: str, prepared: PreparedTx) -> None:
        """Undo `prepare`'s sequence step for a tx the node refused, if no later tx took the next one."""
        state = self._accounts.get(address)
        if state is not None and state.sequence == prepared.sequence + 1:
            state.sequence = prepared.sequence

    def wait_for_tx(self, txhash: str, timeout_s: float | None = None) -> TxResponse:
        """Poll GetTx until the tx is in a block; raise ChainTxError if it failed there."""
        deadline = time.monotonic() + (timeout_s or self.config.inclusion_timeout_s)
        while True:
            found = self.get_tx(txhash)
            if found is not None:
                response = found.tx_response
                if response.code != 0:
                    raise ChainTxError.from_response(response)
                return response
            if time.monotonic() >= deadline:
                raise ChainTxError(0, "client", f"tx {txhash} not included within the timeout", txhash)
            time.sleep(self.config.poll_interval_s)

    def send(
        self, signer: Signer, messages: Sequence[Message], memo: str = "", timeout_height: int = 0
    ) -> TxResponse:
        """Broadcast and wait for inclusion; several messages go in one transaction."""
        txhash = self.broadcast(signer, messages, memo, timeout_height)
        try:
            return self.wait_for_tx(txhash)
        except ChainTxError as exc:
            if exc.code in ANTE_CODES:
                self.forget_account(signer_address(signer))
            raise


def msg_responses(response: TxResponse, classes: Sequence[type[M]]) -> list[M]:
    """Decode TxResponse.data (hex TxMsgData) into the given response types, one per message."""
    data = TxMsgData.FromString(bytes.fromhex(response.data))
    return [cls.FromString(any_msg.value) for cls, any_msg in zip(classes, data.msg_responses, strict=True)]


def event_values(response: TxResponse, event_type: str, key: str) -> list[str]:
    """Values of attribute `key` on every event of `event_type`, e.g. ("new_key_request", "request_id")."""
    return [a.value for e in response.events if e.type == event_type for a in e.attributes if a.key == key]
