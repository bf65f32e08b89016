"""gRPC front end of the node: zrChain treasury/identity queries, Cosmos auth, bank Balance and tx services.

Each handler takes the app lock only for the moment it reads state, so queries see whole blocks, and
(as a Cosmos node does) sends the height it read at in the `x-cosmos-block-height` response header.
A block thread calls `App.produce_block` every `block_time` seconds. Given a certificate and key the
node serves TLS only (`NodeConfig.tls_cert`/`tls_key`); otherwise plaintext.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.any_pb2 import Any as AnyMsg
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message

from chain_client.client import HEIGHT_HEADER
from chain_client.proto_gen.cosmos.auth.v1beta1 import query_pb2 as auth_query
from chain_client.proto_gen.cosmos.auth.v1beta1 import query_pb2_grpc as auth_grpc
from chain_client.proto_gen.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from chain_client.proto_gen.cosmos.bank.v1beta1 import query_pb2 as bank_query
from chain_client.proto_gen.cosmos.bank.v1beta1 import query_pb2_grpc as bank_grpc
from chain_client.proto_gen.cosmos.base.abci.v1beta1.abci_pb2 import GasInfo, Result
from chain_client.proto_gen.cosmos.base.query.v1beta1.pagination_pb2 import PageRequest, PageResponse
from chain_client.proto_gen.cosmos.base.tendermint.v1beta1 import query_pb2 as cmt_query
from chain_client.proto_gen.cosmos.base.tendermint.v1beta1 import query_pb2_grpc as cmt_grpc
from chain_client.proto_gen.cosmos.base.tendermint.v1beta1 import types_pb2 as sdk_types
from chain_client.proto_gen.cosmos.base.v1beta1.coin_pb2 import Coin
from chain_client.proto_gen.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from chain_client.proto_gen.cosmos.tx.v1beta1 import service_pb2 as tx_service
from chain_client.proto_gen.cosmos.tx.v1beta1 import service_pb2_grpc as tx_grpc
from chain_client.proto_gen.tendermint.types import types_pb2 as cmt_types
from chain_client.proto_gen.zrchain.identity import query_pb2 as identity_query
from chain_client.proto_gen.zrchain.identity import query_pb2_grpc as identity_grpc
from chain_client.proto_gen.zrchain.treasury import key_pb2, mpcsign_pb2, tx_pb2, wallet_pb2
from chain_client.proto_gen.zrchain.treasury import query_pb2 as treasury_query
from chain_client.proto_gen.zrchain.treasury import query_pb2_grpc as treasury_grpc
from chain_client.proto_gen.zrchain.treasury.params_pb2 import Params as TreasuryParams
from chain_client.tx import FEE_DENOM, PUBKEY_TYPE_URL, pack
from chain_node import signtx
from chain_node.app import App
from chain_node.errors import TxError
from chain_node.genesis import Genesis
from chain_node.store import OPEN_STATUSES, Store

log = logging.getLogger("chain_node")
T = TypeVar("T")
DEFAULT_PAGE_LIMIT = 100
DEV_ADMIN_SERVICE = "zrkeyring.dev.Admin"
MAX_PAGE_LIMIT = 1000
ANSWER_CACHE_MIN = 4096  # AnswerCache entries before the first prune


def paginate(items: Iterable[tuple[int, T]], page: PageRequest) -> tuple[list[T], PageResponse]:
    """Cosmos pagination over id-ordered items: start after `key` (8-byte id) or at `offset`."""
    limit = min(page.limit or DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)
    ordered = list(items)
    if page.reverse:
        ordered.reverse()
    if page.key:
        start = int.from_bytes(page.key, "big")
        ordered = [(i, v) for i, v in ordered if (i <= start if page.reverse else i >= start)]
    else:
        ordered = ordered[page.offset :]
    selected = ordered[:limit]
    response = PageResponse()
    if len(ordered) > limit:
        response.next_key = ordered[limit][0].to_bytes(8, "big")
    if page.count_total:
        response.total = len(ordered) if not page.key else 0
    return [v for _, v in selected], response


def paginate_ids(ids: list[int], data: dict[int, T], page: PageRequest) -> tuple[list[T], PageResponse]:
    """`paginate` over an ascending id list without copying it: O(page + log n) (bisect to the key or
    offset), with the same answers as `paginate(((i, data[i]) for i in ids), page)`."""
    limit = min(page.limit or DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)
    if page.key:
        start = int.from_bytes(page.key, "big")
        begin = bisect.bisect_right(ids, start) - 1 if page.reverse else bisect.bisect_left(ids, start)
    else:
        begin = len(ids) - 1 - page.offset if page.reverse else page.offset
    step = -1 if page.reverse else 1
    remaining = begin + 1 if page.reverse else len(ids) - begin  # items from `begin` on, in page order
    remaining = max(0, remaining)
    chosen = [ids[begin + step * k] for k in range(min(limit, remaining))]
    response = PageResponse()
    if remaining > limit:
        response.next_key = ids[begin + step * limit].to_bytes(8, "big")
    if page.count_total:
        response.total = remaining if not page.key else 0
    return [data[i] for i in chosen], response


def key_request_response(request: key_pb2.KeyRequest, by_id: bool) -> key_pb2.KeyReqResponse:
    """As upstream: neither query fills `fee`, and only KeyRequestByID fills `mpc_btl`
    (treasury query_key_requests.go / query_key_request_by_id.go)."""
    return key_pb2.KeyReqResponse(
        id=request.id,
        creator=request.creator,
        workspace_addr=request.workspace_addr,
        keyring_addr=request.keyring_addr,
        key_type=key_pb2.KeyType.Name(request.key_type),
        status=key_pb2.KeyRequestStatus.Name(request.status),
        keyring_party_signatures=request.keyring_party_sigs,
        reject_reason=request.reject_reason,
        index=request.index,
        sign_policy_id=request.sign_policy_id,
        mpc_btl=request.mpc_btl if by_id else 0,
        public_key=request.public_key,
        zenbtc_metadata=request.zenbtc_metadata if request.HasField("zenbtc_metadata") else None,
    )


def sign_request_response(request: mpcsign_pb2.SignRequest) -> mpcsign_pb2.SignReqResponse:
    """As upstream: SignatureRequests and SignatureRequestByID both fill `mpc_btl`, neither `fee`."""
    response = mpcsign_pb2.SignReqResponse(
        id=request.id,
        creator=request.creator,
        key_ids=request.key_ids,
        key_type=key_pb2.KeyType.Name(request.key_type),
        data_for_signing=request.data_for_signing,
        status=mpcsign_pb2.SignRequestStatus.Name(request.status),
        signed_data=request.signed_data,
        keyring_party_sigs=request.keyring_party_sigs,
        reject_reason=request.reject_reason,
        parent_req_id=request.parent_req_id,
        child_req_ids=request.child_req_ids,
        cache_id=request.cache_id,
        mpc_btl=request.mpc_btl,
        zenbtc_tx_bytes=request.zenbtc_tx_bytes,
    )
    if request.HasField("metadata"):
        response.metadata.CopyFrom(request.metadata)
    return response


def sign_tx_response(record: mpcsign_pb2.SignTransactionRequest) -> mpcsign_pb2.SignTxReqResponse:
    """SignTxReqResponse as upstream fills it (mpc_btl and the deprecated key_id stay empty)."""
    return mpcsign_pb2.SignTxReqResponse(
        id=record.id,
        creator=record.creator,
        key_ids=record.key_ids,
        wallet_type=wallet_pb2.WalletType.Name(record.wallet_type),
        unsigned_transaction=record.unsigned_transaction,
        sign_request_id=record.sign_request_id,
        no_broadcast=record.no_broadcast,
    )


def key_response(key: key_pb2.Key) -> key_pb2.KeyResponse:
    return key_pb2.KeyResponse(
        id=key.id,
        workspace_addr=key.workspace_addr,
        keyring_addr=key.keyring_addr,
        type=key_pb2.KeyType.Name(key.type),
        public_key=key.public_key,
        index=key.index,
        sign_policy_id=key.sign_policy_id,
        zenbtc_metadata=key.zenbtc_metadata if key.HasField("zenbtc_metadata") else None,
    )


class AnswerCache:
    """Query answers built from a stored object, kept until that object is replaced.

    Every change to the state goes through `Store.set`, which puts a new object in place (an Overlay
    hands down its private copies), so an answer cached beside the object it was built from is exact
    while `store.get` still returns that same object. The keyring's daemons and the bench ask for the
    same open requests many times per block; building each SignReqResponse afresh (enum names,
    field copies) was most of a list query's handler time. Read and fill under the app lock; callers
    must not change a returned answer (they copy it into their response).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._answers: dict[tuple[str, Any, bool], tuple[Any, Message]] = {}
        self._prune_at = ANSWER_CACHE_MIN

    def get(self, ns: str, value: Any, build: Callable[[Any], Message], variant: bool = False) -> Message:
        key = (ns, value.id, variant)
        cached = self._answers.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        answer = build(value)
        self._answers[key] = (value, answer)
        if len(self._answers) >= self._prune_at:
            self.prune()
        return answer

    def prune(self) -> None:
        """Forget answers whose object was replaced. Done when the cache has doubled since the last
        prune, so it stays about as large as the set of objects asked about, at O(1) amortised."""
        data = self.store.data
        self._answers = {k: v for k, v in self._answers.items() if data[k[0]].get(k[1]) is v[0]}
        self._prune_at = max(ANSWER_CACHE_MIN, 2 * len(self._answers))


class ListingCache:
    """Whole list-query answers, kept while the state they were read from stands (`Store.version`).

    Every controller of a keyring lists its open requests after each block, and so do the parties and
    the bench's watcher: the same request, the same answer. Under a backlog of a thousand open
    requests, copying each cached request answer into every caller's response was the node's largest
    query cost. Read and fill under the app lock; callers must not change a returned answer.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._version = -1
        self._answers: dict[tuple[str, bytes], Message] = {}

    def get(self, method: str, request: Message, build: Callable[[], Message]) -> Message:
        if self._version != self.store.version:
            self._version, self._answers = self.store.version, {}
        key = (method, request.SerializeToString(deterministic=True))
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = build()
        return answer


class _Base:
    def __init__(self, app: App, answers: AnswerCache | None = None) -> None:
        self.app = app
        self.store = app.store
        self.answers = answers if answers is not None else AnswerCache(app.store)
        self.listings = ListingCache(app.store)

    def _sign_answer(self, request: mpcsign_pb2.SignRequest) -> mpcsign_pb2.SignReqResponse:
        return self.answers.get("signreq", request, sign_request_response)

    def _key_request_answer(self, request: key_pb2.KeyRequest, by_id: bool) -> key_pb2.KeyReqResponse:
        return self.answers.get("keyreq", request, lambda r: key_request_response(r, by_id), by_id)

    def _height_header(self, context: grpc.ServicerContext) -> None:
        """Report the committed height this answer is read at (call with the app lock held)."""
        context.send_initial_metadata(((HEIGHT_HEADER, str(self.store.height)),))

    def _find(self, context: grpc.ServicerContext, ns: str, key: Any, what: str,
              code: grpc.StatusCode = grpc.StatusCode.UNKNOWN, suffix: str = ": not found") -> Any:
        """The stored object, or the call ends as upstream's does when it is absent.

        zrChain's treasury and identity by-id queries return plain Go errors (fmt.Errorf, or a module
        error registered without a gRPC code), which reach the client as UNKNOWN with the text; only
        the SDK's own services (auth Account, tx GetTx) answer NOT_FOUND.
        """
        self._height_header(context)
        found = self.store.get(ns, key)
        if found is None:
            context.abort(code, f"{what} {key} not found{suffix}")
        return found

    def _page(self, ns: str, status: int, keyring: str, keep: Callable[[Any], bool] | None,
              page: PageRequest) -> tuple[list[Any], PageResponse]:
        """One page of a keyring's requests in `status`: from the open-request index when that is all
        the query filters on (the keyring's polling path), else by filtering every request."""
        if keep is None and keyring and status in OPEN_STATUSES:
            return paginate_ids(self.store.open_ids(ns, keyring, status), self.store.data[ns], page)

        def kept(r: Any) -> bool:
            return (not keyring or self.store.request_keyring(ns, r) == keyring) and (keep is None or keep(r))

        return paginate(self._requests(ns, status, kept), page)

    def _requests(self, ns: str, status: int, keep: Callable[[Any], bool]) -> list[tuple[int, Any]]:
        data = self.store.data[ns]
        ids: Iterable[int] = sorted(self.store.open[ns]) if status in OPEN_STATUSES else data.keys()
        return [(i, data[i]) for i in ids if (not status or data[i].status == status) and keep(data[i])]


class TreasuryQuery(_Base, treasury_grpc.QueryServicer):
    def KeyRequests(self, request, context):  # noqa: N802 (gRPC method names)
        workspace = request.workspace_addr
        keep = (lambda r: r.workspace_addr == workspace) if workspace else None
        def build() -> Message:
            items, page = self._page("keyreq", request.status, request.keyring_addr, keep, request.pagination)
            return treasury_query.QueryKeyRequestsResponse(
                key_requests=[self._key_request_answer(r, False) for r in items], pagination=page
            )

        with self.app.lock:
            self._height_header(context)
            return self.listings.get("KeyRequests", request, build)

    def KeyRequestByID(self, request, context):  # noqa: N802
        with self.app.lock:
            found = self._find(context, "keyreq", request.id, "key request", suffix="")
            return treasury_query.QueryKeyRequestByIDResponse(key_request=self._key_request_answer(found, True))

    def SignatureRequests(self, request, context):  # noqa: N802
        def build() -> Message:
            items, page = self._page("signreq", request.status, request.keyring_addr, None, request.pagination)
            return treasury_query.QuerySignatureRequestsResponse(
                sign_requests=[self._sign_answer(r) for r in items], pagination=page
            )

        with self.app.lock:
            self._height_header(context)
            return self.listings.get("SignatureRequests", request, build)

    def SignatureRequestByID(self, request, context):  # noqa: N802
        with self.app.lock:
            found = self._find(context, "signreq", request.id, "signature request")
            return treasury_query.QuerySignatureRequestByIDResponse(sign_request=self._sign_answer(found))

    def Keys(self, request, context):  # noqa: N802
        with self.app.lock:
            keys = [
                (k.id, k)
                for k in self.store.values("key")
                if not request.workspace_addr or k.workspace_addr == request.workspace_addr
            ]
            items, page = paginate(keys, request.pagination)
            wrapped = [treasury_query.KeyAndWalletResponse(key=key_response(k)) for k in items]
            return treasury_query.QueryKeysResponse(keys=wrapped, pagination=page)

    def KeyByID(self, request, context):  # noqa: N802
        with self.app.lock:
            key = self._find(context, "key", request.id, "key")
            return treasury_query.QueryKeyByIDResponse(key=key_response(key))


    def SignTransactionRequests(self, request, context):  # noqa: N802
        """As upstream (query_sign_transaction_requests.go): filters key_id, wallet_type and the
        signature request's status; `request_id` is ignored; the embedded SignReqResponse leaves
        mpc_btl, fee and zenbtc_tx_bytes empty and SignTxReqResponse leaves mpc_btl empty."""
        def keep(record: mpcsign_pb2.SignTransactionRequest) -> bool:
            sign = self.store.get("signreq", record.sign_request_id)
            return (
                sign is not None
                and (not request.key_id or request.key_id in record.key_ids)
                and (not request.status or sign.status == request.status)
                and (not request.wallet_type or record.wallet_type == request.wallet_type)
            )

        with self.app.lock:
            self._height_header(context)
            records = [(r.id, r) for r in self.store.values("signtxreq") if keep(r)]
            items, page = paginate(sorted(records, key=lambda kv: kv[0]), request.pagination)
            entries = []
            for record in items:
                sign = sign_request_response(self.store.get("signreq", record.sign_request_id))
                sign.ClearField("mpc_btl")
                sign.ClearField("zenbtc_tx_bytes")
                entries.append(treasury_query.SignTransactionRequestsResponse(
                    sign_transaction_requests=sign_tx_response(record), sign_request=sign))
            return treasury_query.QuerySignTransactionRequestsResponse(
                sign_transaction_requests=entries, pagination=page)

    def SignTransactionRequestByID(self, request, context):  # noqa: N802
        with self.app.lock:
            found = self._find(context, "signtxreq", request.id, "sign transaction request")
            return treasury_query.QuerySignTransactionRequestByIDResponse(
                sign_transaction_request=sign_tx_response(found))

    def KeyByAddress(self, request, context):  # noqa: N802
        """As upstream (query_key_by_address.go): the first key, filtered by keyring and type, whose
        wallet of `wallet_type` has this address; an empty answer (not an error) when none has."""
        with self.app.lock:
            self._height_header(context)
            for key in self.store.values("key"):
                if request.keyring_addr and key.keyring_addr != request.keyring_addr:
                    continue
                if request.key_type and key.type != request.key_type:
                    continue
                try:
                    address = signtx.wallet_address(key, request.wallet_type)
                except TxError as exc:
                    context.abort(grpc.StatusCode.UNKNOWN, exc.log)
                if address == request.address:
                    wallet = treasury_query.WalletResponse(
                        address=address, type=wallet_pb2.WalletType.Name(request.wallet_type))
                    return treasury_query.QueryKeyByAddressResponse(
                        response=treasury_query.KeyAndWalletResponse(key=key_response(key), wallets=[wallet]))
            return treasury_query.QueryKeyByAddressResponse()

    def Params(self, request, context):  # noqa: N802
        # Only default_btl means something here; the commission and MPC keyring fields stay empty.
        params = TreasuryParams(default_btl=self.app.params.default_btl)
        return treasury_query.QueryParamsResponse(params=params)


class IdentityQuery(_Base, identity_grpc.QueryServicer):
    def Params(self, request, context):  # noqa: N802
        # identity Params: keyring_creation_fee, which the dev node does not charge (0).
        return identity_query.QueryParamsResponse(params=identity_query.Params())

    def Keyrings(self, request, context):  # noqa: N802
        with self.app.lock:
            self._height_header(context)
            keyrings = sorted(self.store.values("keyring"), key=lambda k: k.address)
            items, page = paginate(enumerate(keyrings), request.pagination)
            return identity_query.QueryKeyringsResponse(keyrings=items, pagination=page)

    def Workspaces(self, request, context):  # noqa: N802
        """Filters `owner` (one of the owners) and `creator`, as upstream's query_workspaces.go."""
        with self.app.lock:
            self._height_header(context)
            workspaces = sorted(
                (w for w in self.store.values("workspace")
                 if (not request.owner or request.owner in w.owners)
                 and (not request.creator or w.creator == request.creator)),
                key=lambda w: w.address,
            )
            items, page = paginate(enumerate(workspaces), request.pagination)
            return identity_query.QueryWorkspacesResponse(workspaces=items, pagination=page)

    def KeyringByAddress(self, request, context):  # noqa: N802
        with self.app.lock:
            keyring = self._find(context, "keyring", request.keyring_addr, "keyring")
            return identity_query.QueryKeyringByAddressResponse(keyring=keyring)

    def WorkspaceByAddress(self, request, context):  # noqa: N802
        with self.app.lock:
            workspace = self._find(context, "workspace", request.workspace_addr, "workspace")
            return identity_query.QueryWorkspaceByAddressResponse(workspace=workspace)


def dev_admin_handler(app: App) -> grpc.GenericRpcHandler:
    """Dev only: `/zrkeyring.dev.Admin/ChainSignTransactionRequest` (a MsgNewSignTransactionRequest, creator
    ignored) makes the chain create that signature request itself at the end of the next block, the way
    zrChain's validation module does from EndBlock. Refused unless genesis sets dev_chain_requests."""
    def queue(msg: tx_pb2.MsgNewSignTransactionRequest, context: grpc.ServicerContext) -> Empty:
        if not app.params.dev_chain_requests:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "dev_chain_requests is not enabled in genesis")
        app.queue_chain_request(msg)
        return Empty()

    method = grpc.unary_unary_rpc_method_handler(
        queue, request_deserializer=tx_pb2.MsgNewSignTransactionRequest.FromString,
        response_serializer=Empty.SerializeToString)
    return grpc.method_handlers_generic_handler(DEV_ADMIN_SERVICE, {"ChainSignTransactionRequest": method})


class AuthQuery(_Base, auth_grpc.QueryServicer):
    def Account(self, request, context):  # noqa: N802
        with self.app.lock:
            account = self._find(context, "account", request.address, "account", grpc.StatusCode.NOT_FOUND, "")
            base = BaseAccount(
                address=account.address, account_number=account.account_number, sequence=account.sequence
            )
            if account.pub_key:
                pub = PubKey(key=bytes.fromhex(account.pub_key)).SerializeToString()
                base.pub_key.CopyFrom(AnyMsg(type_url=PUBKEY_TYPE_URL, value=pub))
            return auth_query.QueryAccountResponse(account=pack(base))


class BankQuery(_Base, bank_grpc.QueryServicer):
    def Balance(self, request, context):  # noqa: N802
        """As the SDK's bank keeper: an address without an account has a zero balance, not NOT_FOUND."""
        if not request.address:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty address string is not allowed")
        if request.denom != FEE_DENOM:
            return bank_query.QueryBalanceResponse(balance=Coin(denom=request.denom, amount="0"))
        with self.app.lock:
            self._height_header(context)
            account = self.app.store.get("account", request.address)
            amount = account.balance if account is not None else 0
        return bank_query.QueryBalanceResponse(balance=Coin(denom=FEE_DENOM, amount=str(amount)))


class TxService(_Base, tx_grpc.ServiceServicer):
    def BroadcastTx(self, request, context):  # noqa: N802
        return tx_service.BroadcastTxResponse(tx_response=self.app.check_tx(request.tx_bytes))

    def Simulate(self, request, context):  # noqa: N802
        try:
            gas, events, responses = self.app.simulate(request.tx_bytes)
        except TxError as exc:
            detail = f"{exc.log} (codespace {exc.codespace}, code {exc.code})"
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)
        return tx_service.SimulateResponse(
            gas_info=GasInfo(gas_wanted=gas, gas_used=gas),
            result=Result(events=events, msg_responses=[pack(r) for r in responses]),
        )

    def GetTx(self, request, context):  # noqa: N802
        with self.app.lock:
            return self._find(context, "tx", request.hash.upper(), "tx", grpc.StatusCode.NOT_FOUND, "")


class TendermintService(_Base, cmt_grpc.ServiceServicer):
    """GetLatestBlock with the fields a keyring reads: chain id, height, time (no txs or commit)."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self._latest: tuple[int, str, cmt_query.GetLatestBlockResponse] | None = None

    def GetLatestBlock(self, request, context):  # noqa: N802
        """Built once per block: every daemon of a keyring asks for it several times a block."""
        with self.app.lock:
            height = self.store.height
            stamp = self.store.data["meta"].get("time", "")
        latest = self._latest
        if latest is not None and latest[0] == height and latest[1] == stamp:
            return latest[2]
        response = self._block_response(height, stamp)
        self._latest = (height, stamp, response)
        return response

    def _block_response(self, height: int, stamp: str) -> cmt_query.GetLatestBlockResponse:
        chain_id = self.app.genesis.chain_id
        # Not a CometBFT block hash (there is no consensus here): a stable stand-in that changes per block.
        block_id = cmt_types.BlockID(hash=hashlib.sha256(f"{chain_id}/{height}/{stamp}".encode()).digest())
        header = cmt_types.Header(chain_id=chain_id, height=height)
        sdk_header = sdk_types.Header(chain_id=chain_id, height=height)
        if stamp:
            header.time.FromJsonString(stamp)
            sdk_header.time.CopyFrom(header.time)
        return cmt_query.GetLatestBlockResponse(
            block_id=block_id, block=cmt_types.Block(header=header), sdk_block=sdk_types.Block(header=sdk_header)
        )


@dataclass
class NodeConfig:
    data_dir: Path
    listen: str = "127.0.0.1:9090"
    block_time: float = 1.0
    tls_cert: Path | None = None  # PEM certificate chain the node presents (with tls_key: TLS only)
    tls_key: Path | None = None  # its PEM private key (a development node's throwaway key)


def server_credentials(config: NodeConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, None for plaintext; both or neither are given."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if config.tls_cert is None or config.tls_key is None:
        return None
    cert, key = Path(config.tls_cert).read_bytes(), Path(config.tls_key).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ValueError(f"{config.tls_cert}: not a PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise ValueError(f"{config.tls_key}: not a PEM private key")
    return grpc.ssl_server_credentials([(key, cert)])


class Node:
    """One chain node: state, gRPC server and block thread."""

    def __init__(self, genesis: Genesis, config: NodeConfig) -> None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.store = Store(config.data_dir / "state.sqlite")
        stored_chain = self.store.get("meta", "chain_id")
        if stored_chain is not None and stored_chain != genesis.chain_id:
            raise ValueError(f"data dir holds chain {stored_chain!r}, genesis says {genesis.chain_id!r}")
        self.app = App(self.store, genesis)
        self._stop = threading.Event()
        self.failed = False  # set when block production hit an error: the node stopped and must exit non-zero
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)]
        )
        treasury_grpc.add_QueryServicer_to_server(TreasuryQuery(self.app), self._server)
        identity_grpc.add_QueryServicer_to_server(IdentityQuery(self.app), self._server)
        auth_grpc.add_QueryServicer_to_server(AuthQuery(self.app), self._server)
        bank_grpc.add_QueryServicer_to_server(BankQuery(self.app), self._server)
        tx_grpc.add_ServiceServicer_to_server(TxService(self.app), self._server)
        cmt_grpc.add_ServiceServicer_to_server(TendermintService(self.app), self._server)
        self._server.add_generic_rpc_handlers((dev_admin_handler(self.app),))
        credentials = server_credentials(config)
        self.tls = credentials is not None
        if credentials is None:
            self.port = self._server.add_insecure_port(config.listen)
        else:
            self.port = self._server.add_secure_port(config.listen, credentials)
        if not self.port:
            raise OSError(f"cannot listen on {config.listen}")
        self._thread = threading.Thread(target=self._block_loop, name="blocks", daemon=True)

    def start(self) -> None:
        self._server.start()
        self._thread.start()
        log.info(
            "node for chain %s listening on %s (%s), height %d, block every %.2f s",
            self.app.genesis.chain_id,
            self.config.listen,
            "TLS" if self.tls else "plaintext",
            self.store.height,
            self.config.block_time,
        )

    def _block_loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            due = max(due + self.config.block_time, time.monotonic())
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            try:
                self.app.produce_block()
            except Exception:
                # A message's own failure never gets here (App._deliver records it as a failed tx):
                # this is the store or the node itself, and carrying on could commit a wrong state.
                log.exception("block production failed; stopping the node")
                self.failed = True
                self._stop.set()

    def wait(self) -> None:
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        self._server.stop(grace=0.5).wait()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self.app.lock:
            self.store.close()
        log.info("node stopped at height %d", int(self.store.data["meta"].get("height", 0)))
