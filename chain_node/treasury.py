"""treasury module: key and signature requests and the keeper rules for a keyring's answers.

The rules follow shared/zrchain-wire.md: only keyring parties answer; only PENDING/PARTIAL requests
take answers; a request becomes FULFILLED once `party_threshold` parties have posted the same answer;
a repeat answer from one party, or an answer differing from the first, rejects the whole request;
overdue requests are rejected at the start of a block and their fee refunded.
"""

from __future__ import annotations

from collections.abc import Sequence

from coincurve import PublicKey
from google.protobuf.message import Message
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from chain_client.crypto import is_low_s, verify_digest
from chain_client.proto_gen.zrchain.identity.identity_pb2 import Keyring
from chain_client.proto_gen.zrchain.treasury import key_pb2, mpcsign_pb2, tx_pb2
from chain_client.proto_gen.zrchain.treasury.key_pb2 import Key, KeyRequest
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import SignRequest
from chain_node.context import Context
from chain_node.errors import treasury_error
from chain_node.store import OPEN_STATUSES, Overlay, Store

PENDING, PARTIAL, FULFILLED, REJECTED = 1, 2, 3, 4
ECDSA = key_pb2.KEY_TYPE_ECDSA_SECP256K1
EDDSA = key_pb2.KEY_TYPE_EDDSA_ED25519
BITCOIN = key_pb2.KEY_TYPE_BITCOIN_SECP256K1
KEY_TYPES = {"ecdsa": ECDSA, "ed25519": EDDSA, "eddsa": EDDSA, "bitcoin": BITCOIN, "btc": BITCOIN}
MAX_REJECT_REASON = 512
MAX_EDDSA_HEX = 2000


def threshold(keyring: Keyring) -> int:
    return max(1, keyring.party_threshold)


def _keyring(ctx: Context, address: str, for_new_request: bool = False) -> Keyring:
    keyring = ctx.store.get("keyring", address)
    if keyring is None:
        raise treasury_error(f"keyring {address} not found")
    if for_new_request and not keyring.is_active:
        raise treasury_error(f"keyring {address} is not active")
    return keyring


def owned_workspace(ctx: Context, creator: str, address: str) -> None:
    workspace = ctx.store.get("workspace", address)
    if workspace is None:
        raise treasury_error(f"workspace {address} not found")
    if creator not in workspace.owners:
        raise treasury_error(f"{creator} is not an owner of workspace {address}")


UINT64_MAX = 2**64 - 1


def _expiry(ctx: Context, mpc_btl: int) -> int:
    """The height a new request times out at: now + its own lifetime, or the default one.

    (Upstream ignores the message's mpc_btl and always uses default_btl; the dev node honours a
    non-zero value so tests can make short- and long-lived requests, and refuses one whose deadline
    does not fit a uint64 rather than storing a wrapped or impossible height.)
    """
    expiry = ctx.height + (mpc_btl or ctx.params.default_btl)
    if expiry > UINT64_MAX:
        raise treasury_error(f"mpc_btl {mpc_btl}: the deadline height {expiry} does not fit a uint64")
    return expiry


# ---- key requests ----------------------------------------------------------------------------------


def new_key_request(ctx: Context, msg: tx_pb2.MsgNewKeyRequest) -> Message:
    owned_workspace(ctx, msg.creator, msg.workspace_addr)
    keyring = _keyring(ctx, msg.keyring_addr, for_new_request=True)
    key_type = KEY_TYPES.get(msg.key_type.lower())
    if key_type is None:
        raise treasury_error(f"unknown key type {msg.key_type!r} (use ecdsa, ed25519 or bitcoin)")
    ctx.debit(msg.creator, keyring.key_req_fee)
    request = KeyRequest(
        id=ctx.store.next_id("keyreq"),
        creator=msg.creator,
        workspace_addr=msg.workspace_addr,
        keyring_addr=msg.keyring_addr,
        key_type=key_type,
        status=PENDING,
        index=msg.index,
        sign_policy_id=msg.sign_policy_id,
        mpc_btl=_expiry(ctx, msg.mpc_btl),
        fee=keyring.key_req_fee,
    )
    if msg.HasField("zenbtc_metadata"):  # kept as sent, and copied onto the key (treasury NewKeyRequest)
        request.zenbtc_metadata.CopyFrom(msg.zenbtc_metadata)
    ctx.store.set("keyreq", request.id, request)
    ctx.emit("new_key_request", request_id=request.id)
    return tx_pb2.MsgNewKeyRequestResponse(key_req_id=request.id)


def check_public_key(key_type: int, public_key: bytes) -> None:
    """Format rules for a keyring's public key; raises with the reason."""
    if key_type in (ECDSA, BITCOIN):
        if len(public_key) != 33 or public_key[0] not in (2, 3):
            raise treasury_error("secp256k1 public key must be 33 bytes compressed (prefix 0x02 or 0x03)")
        body = public_key[1:]
    elif key_type == EDDSA:
        if len(public_key) != 32:
            raise treasury_error("ed25519 public key must be 32 bytes")
        body = public_key
    else:
        raise treasury_error(f"unsupported key type {key_type}")
    if body[:5] == bytes(5):
        raise treasury_error("public key has five or more leading zero bytes")
    if key_type != EDDSA:
        try:
            PublicKey(public_key)
        except ValueError:
            raise treasury_error("public key is not a point on secp256k1") from None


def _fatal_answer(keyring: Keyring | None, msg: tx_pb2.MsgFulfilKeyRequest | tx_pb2.MsgFulfilSignatureRequest,
                  ) -> str:
    """Why this answer rejects the whole request rather than failing its tx ("" if it does not).

    Upstream (treasury FulfilKeyRequest / FulfilSignatureRequest) rejects the request when the keyring
    is inactive or the keyring_party_signature is not 64 bytes, and the tx itself succeeds; the
    signature is never checked beyond its length.
    """
    if keyring is None or not keyring.is_active:
        return f"keyring {keyring.address if keyring else '?'} is nil or is inactive"
    if len(msg.keyring_party_signature) != 64:
        return f"invalid mpc party signature, should be 64 bytes, is {len(msg.keyring_party_signature)}"
    return ""


def _charge_fulfilment(ctx: Context, keyring: Keyring, party: str, fee: int) -> None:
    """Each accepted post pays the request's fee from the posting party's own account to the keyring
    (treasury SplitKeyringFee; the commission is 0 here). A party without the funds fails its tx."""
    ctx.debit(party, fee)
    ctx.credit(keyring.address, fee)


def _open_request(ctx: Context, ns: str, request_id: int, what: str) -> KeyRequest | SignRequest:
    request = ctx.store.get(ns, request_id)
    if request is None:
        raise treasury_error(f"{what} {request_id} not found")
    if request.status not in OPEN_STATUSES:
        raise treasury_error(f"{what} {request_id} is not pending or partial")
    return request


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REJECT_REASON:
        raise treasury_error(f"reject_reason is {len(reason)} characters, at most {MAX_REJECT_REASON}")


def check_party(keyring: Keyring, party: str) -> None:
    if party not in keyring.parties:
        raise treasury_error(f"{party} is not a party of keyring {keyring.address}")


def _already_answered(request: KeyRequest | SignRequest, party: str) -> bool:
    return any(sig.creator == party for sig in request.keyring_party_sigs)


def _record_party(
    request: KeyRequest | SignRequest, msg: tx_pb2.MsgFulfilKeyRequest | tx_pb2.MsgFulfilSignatureRequest
) -> None:
    request.keyring_party_sigs.add(creator=msg.creator, signature=msg.keyring_party_signature)


def reject_key_request(ctx: Context, request: KeyRequest, reason: str, refund: bool = True) -> None:
    """Reject a key request; a party's rejection and a timeout give the escrowed fee back."""
    if request.status == REJECTED:
        return
    request.status = REJECTED
    request.reject_reason = reason
    if refund:
        ctx.credit(request.creator, request.fee)
    ctx.store.set("keyreq", request.id, request)
    ctx.emit("key_request_rejected", request_id=request.id, reason=reason)


def fulfil_key_request(ctx: Context, msg: tx_pb2.MsgFulfilKeyRequest) -> Message:
    request = _open_request(ctx, "keyreq", msg.request_id, "key request")
    keyring = ctx.store.get("keyring", request.keyring_addr)
    if keyring is not None:
        check_party(keyring, msg.creator)
    response = tx_pb2.MsgFulfilKeyRequestResponse()
    fatal = _fatal_answer(keyring, msg)
    if fatal:
        reject_key_request(ctx, request, fatal, refund=False)
        ctx.store.set("keyreq", request.id, request)
    elif _already_answered(request, msg.creator):
        reject_key_request(ctx, request, f"party {msg.creator} already sent a fulfilment", refund=False)
    elif msg.status == REJECTED:
        reason = msg.reject_reason if msg.WhichOneof("result") == "reject_reason" else ""
        _check_reason(reason)
        reject_key_request(ctx, request, reason or f"rejected by party {msg.creator}")
    elif msg.status == FULFILLED:
        if msg.WhichOneof("result") != "key":
            raise treasury_error("a fulfilment must carry the public key")
        public_key = msg.key.public_key
        check_public_key(request.key_type, public_key)
        if request.public_key and request.public_key != public_key:
            reject_key_request(ctx, request, f"party {msg.creator} sent a different public key", refund=False)
            return response
        request.public_key = public_key
        _record_party(request, msg)
        if len(request.keyring_party_sigs) >= threshold(keyring):
            _complete_key_request(ctx, request)
        else:
            request.status = PARTIAL
        ctx.store.set("keyreq", request.id, request)
        _charge_fulfilment(ctx, keyring, msg.creator, request.fee)
    else:
        raise treasury_error("status must be KEY_REQUEST_STATUS_FULFILLED or KEY_REQUEST_STATUS_REJECTED")
    return response


def _complete_key_request(ctx: Context, request: KeyRequest) -> None:
    request.status = FULFILLED
    key = Key(
        id=ctx.store.next_id("key"),
        workspace_addr=request.workspace_addr,
        keyring_addr=request.keyring_addr,
        type=request.key_type,
        public_key=request.public_key,
        index=request.index,
        sign_policy_id=request.sign_policy_id,
    )
    if request.HasField("zenbtc_metadata"):
        key.zenbtc_metadata.CopyFrom(request.zenbtc_metadata)
    ctx.store.set("key", key.id, key)  # the creator's escrowed fee stays in escrow, as upstream
    ctx.emit("key_request_fulfilled", request_id=request.id, key_id=key.id)


# ---- signature requests ----------------------------------------------------------------------------


def _parse_data(text: str, key_type: int) -> list[bytes]:
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise treasury_error("data_for_signing is empty")
    out = []
    for i, item in enumerate(items):
        if key_type == EDDSA:
            if len(item) >= MAX_EDDSA_HEX:
                raise treasury_error(f"data_for_signing item {i}: {MAX_EDDSA_HEX} hex characters or more")
        elif len(item) != 64:
            raise treasury_error(f"data_for_signing item {i} must be 64 hex characters (a 32-byte digest)")
        try:
            out.append(bytes.fromhex(item))
        except ValueError:
            raise treasury_error(f"data_for_signing item {i} is not valid hex") from None
    return out


def sign_request_keyring(store: Store | Overlay, request: SignRequest) -> str:
    """The keyring a signature request is addressed to: the keyring of its (first) key."""
    key = store.get("key", request.key_ids[0]) if request.key_ids else None
    return key.keyring_addr if key is not None else ""


def new_signature_request(ctx: Context, msg: tx_pb2.MsgNewSignatureRequest) -> Message:
    keys = request_keys(ctx, msg.key_ids)
    owned_workspace(ctx, msg.creator, keys[0].workspace_addr)
    _keyring(ctx, keys[0].keyring_addr, for_new_request=True)
    data = _parse_data(msg.data_for_signing, keys[0].type)
    parent = create_sign_requests(
        ctx, SignRequest(creator=msg.creator, cache_id=msg.cache_id, zenbtc_tx_bytes=msg.zenbtc_tx_bytes),
        keys, data, msg.mpc_btl,
    )
    return tx_pb2.MsgNewSignatureRequestResponse(sig_req_id=parent.id)


def request_keys(ctx: Context, key_ids: Sequence[int]) -> list[Key]:
    """The keys a new signature request names; all must exist and belong to one keyring."""
    if not key_ids:
        raise treasury_error("key_ids is empty")
    keys = []
    for key_id in key_ids:
        key = ctx.store.get("key", key_id)
        if key is None:
            raise treasury_error(f"key {key_id} not found")
        keys.append(key)
    if any(k.keyring_addr != keys[0].keyring_addr for k in keys):
        raise treasury_error("all keys of a signature request must belong to one keyring")
    return keys


def create_sign_requests(ctx: Context, parent: SignRequest, keys: list[Key], data: list[bytes], mpc_btl: int,
                         escrow: bool = True) -> SignRequest:
    """treasury processSignatureRequests: escrow sig_req_fee once per key from the creator, store the
    parent (key type of the first key) and, for several hashes, one child per hash. Returns the parent.

    `escrow=False` is the chain's own requests (the validation module's keys are reserved: no fee).
    """
    keyring = _keyring(ctx, keys[0].keyring_addr)
    fee = keyring.sig_req_fee if escrow else 0
    ctx.debit(parent.creator, fee * len(keys))
    first = keys[0]
    key_ids = [k.id for k in keys]
    parent.MergeFrom(SignRequest(
        id=ctx.store.next_id("signreq"), key_id=first.id, key_type=first.type, data_for_signing=data,
        status=PENDING, key_ids=key_ids, mpc_btl=_expiry(ctx, mpc_btl), fee=fee,
    ))
    if len(data) > 1:
        for i, item in enumerate(data):
            key_id = key_ids[i] if len(key_ids) == len(data) else first.id
            child = SignRequest(
                id=ctx.store.next_id("signreq"),
                creator=parent.creator,
                key_id=key_id,
                key_type=first.type,
                data_for_signing=[item],
                status=PENDING,
                parent_req_id=parent.id,
                key_ids=[key_id],
                mpc_btl=parent.mpc_btl,
                fee=parent.fee,  # every child's fulfilment is charged to its poster (not refunded twice)
            )
            parent.child_req_ids.append(child.id)
            ctx.store.set("signreq", child.id, child)
            ctx.emit("new_sign_request", request_id=child.id, parent_req_id=parent.id)
    ctx.store.set("signreq", parent.id, parent)
    ctx.emit("new_sign_request", request_id=parent.id)
    return parent


def check_signature(key_type: int, public_key: bytes, data: bytes, signature: bytes) -> None:
    """A keyring's signature must verify against the key and data; raises with the reason."""
    if key_type in (ECDSA, BITCOIN):
        if len(signature) not in (64, 65):
            raise treasury_error(f"ECDSA signature must be 64 bytes r||s or 65 with v, got {len(signature)}")
        rs = signature[:64]
        if not is_low_s(rs):
            raise treasury_error("signature is not in lower-S form")
        if not verify_digest(public_key, data, rs):
            raise treasury_error("signature does not verify against the key and data_for_signing")
    elif key_type == EDDSA:
        if len(signature) != 64:
            raise treasury_error(f"Ed25519 signature must be 64 bytes, got {len(signature)}")
        try:
            VerifyKey(public_key).verify(data, signature)
        except (BadSignatureError, ValueError):
            raise treasury_error("signature does not verify against the key and data_for_signing") from None
    else:
        raise treasury_error(f"unsupported key type {key_type}")


def reject_sign_request(ctx: Context, request: SignRequest, reason: str, refund: bool = False) -> None:
    """Reject a request; a rejected child takes its parent (and open siblings) with it.

    Only a timeout refunds the escrowed fee (treasury's block-start expiry); a party's rejection does
    not (FulfilSignatureRequest). Children carry no escrow of their own.
    """
    if request.status == REJECTED:
        return
    request.status = REJECTED
    request.reject_reason = reason
    if refund and not request.parent_req_id:
        ctx.credit(request.creator, request.fee)
    ctx.store.set("signreq", request.id, request)
    ctx.emit("sign_request_rejected", request_id=request.id, reason=reason)
    if request.parent_req_id:
        parent = ctx.store.get("signreq", request.parent_req_id)
        if parent is not None and parent.status in OPEN_STATUSES:
            reject_sign_request(ctx, parent, f"child request {request.id} rejected: {reason}")
    for child_id in request.child_req_ids:
        child = ctx.store.get("signreq", child_id)
        if child is not None and child.status in OPEN_STATUSES:
            reject_sign_request(ctx, child, f"parent request {request.id} rejected")


def fulfil_signature_request(ctx: Context, msg: tx_pb2.MsgFulfilSignatureRequest) -> Message:
    request = _open_request(ctx, "signreq", msg.request_id, "sign request")
    if request.child_req_ids:
        raise treasury_error(f"sign request {request.id} has child requests; fulfil those instead")
    key = ctx.store.get("key", request.key_ids[0])
    keyring = _keyring(ctx, key.keyring_addr)
    check_party(keyring, msg.creator)
    response = tx_pb2.MsgFulfilSignatureRequestResponse()
    if msg.status not in (FULFILLED, PARTIAL, REJECTED):
        raise treasury_error("status must be SIGN_REQUEST_STATUS_FULFILLED or SIGN_REQUEST_STATUS_REJECTED")
    _answer_sign_request(ctx, request, key, keyring, msg)
    ctx.store.set("signreq", request.id, request)
    _charge_fulfilment(ctx, keyring, msg.creator, request.fee)  # upstream charges every post, even a reject
    return response


def _answer_sign_request(ctx: Context, request: SignRequest, key: Key, keyring: Keyring,
                         msg: tx_pb2.MsgFulfilSignatureRequest) -> None:
    """Apply one party's post; anything fatal to the request rejects it (the tx still succeeds)."""
    fatal = _fatal_answer(keyring, msg)
    if fatal:
        reject_sign_request(ctx, request, fatal)
    elif _already_answered(request, msg.creator):
        reject_sign_request(ctx, request, f"party {msg.creator} already sent a fulfilment")
    elif msg.status == REJECTED:
        _check_reason(msg.reject_reason)
        reject_sign_request(ctx, request, msg.reject_reason or f"rejected by party {msg.creator}")
    else:
        check_signature(key.type, key.public_key, request.data_for_signing[0], msg.signed_data)
        if request.signed_data and request.signed_data[0].signed_data != msg.signed_data:
            # upstream's words (x/treasury/keeper/msg_server_fulfil_signature_request.go): a second,
            # equally valid signature from another quorum rejects the whole request
            first = bytes(request.signed_data[0].signed_data)
            reject_sign_request(ctx, request, f"signed data mismatch, expected {first.hex()}, "
                                              f"got {bytes(msg.signed_data).hex()}")
            return
        if not request.signed_data:
            request.signed_data.add(sign_request_id=request.id, signed_data=msg.signed_data)
        _record_party(request, msg)
        if len(request.keyring_party_sigs) >= threshold(keyring):
            _complete_sign_request(ctx, request, keyring)
        else:
            request.status = PARTIAL


def _complete_sign_request(ctx: Context, request: SignRequest, keyring: Keyring) -> None:
    request.status = FULFILLED
    ctx.store.set("signreq", request.id, request)
    ctx.emit("sign_request_fulfilled", request_id=request.id)
    if not request.parent_req_id:
        return
    parent = ctx.store.get("signreq", request.parent_req_id)
    children = [ctx.store.get("signreq", child_id) for child_id in parent.child_req_ids]
    if parent.status in OPEN_STATUSES and all(c.status == FULFILLED for c in children):
        parent.signed_data.extend(c.signed_data[0] for c in children)
        _complete_sign_request(ctx, parent, keyring)


# ---- block start -------------------------------------------------------------------------------------


def expire_requests(ctx: Context, store: Store) -> int:
    """Reject every open request whose mpc_btl height has passed; returns how many.

    The open requests are looked at in the committed store (read only, `ctx.store` is a fresh overlay
    at the start of a block) and only the expiring ones are copied into the overlay: copying every
    open request each block was a quarter of the node's CPU under a backlog of a thousand."""
    count = 0
    for ns, what, reject in (
        ("keyreq", "key request", reject_key_request),
        ("signreq", "sign request", reject_sign_request),
    ):
        due = sorted(i for i in store.open[ns] if ctx.height > (r := store.get(ns, i)).mpc_btl
                     and r.status in OPEN_STATUSES)
        for request_id in due:
            reject(ctx, ctx.store.get(ns, request_id), f"{what} {request_id} timed out", refund=True)
            count += 1
    return count


HANDLERS = {
    tx_pb2.MsgNewKeyRequest: new_key_request,
    tx_pb2.MsgFulfilKeyRequest: fulfil_key_request,
    tx_pb2.MsgNewSignatureRequest: new_signature_request,
    tx_pb2.MsgFulfilSignatureRequest: fulfil_signature_request,
}

STATUS_NAMES = {"keyreq": key_pb2.KeyRequestStatus, "signreq": mpcsign_pb2.SignRequestStatus}
