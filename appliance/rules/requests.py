"""Which requests a party answers, decided the same way on every party from chain data alone.

Every controller of a keyring sees the same requests on chain, so each derives the same session id
and the same signing quorum from the request alone. The quorum rotates with the attempt number: if a
party does not answer in time, every controller moves to attempt k+1 and the next window of parties.

Validation here decides which requests are rejected on chain (with a reason an operator can read)
and which are skipped (parents of split signature requests; requests too close to their timeout).
Both daemons apply it: the controller to plan, the party daemon before it joins a signing session a
peer opened (mpc_party/join.py: no controller of ours vetted that request, so the party checks
everything the controller would, `plan_sign`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf.message import DecodeError

from appliance.rules.keytypes import KeyType, parse_key_type
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import ICATransactionRequest

MAX_REJECT_REASON = 512


class Decision(Enum):
    RUN = "run"
    REJECT = "reject"
    SKIP = "skip"


@dataclass(frozen=True)
class Plan:
    decision: Decision
    reason: str = ""


@dataclass(frozen=True)
class SignRequestView:
    """What the planner needs of a signature request (converted from the chain's response)."""

    request_id: int
    key_type: str
    key_ids: tuple[int, ...]
    data_for_signing: tuple[bytes, ...]
    child_req_ids: tuple[int, ...]
    mpc_btl: int


def plan_key_request(key_type: str, mpc_btl: int, height: int, margin: int) -> Plan:
    if parse_key_type(key_type) is None:
        return Plan(Decision.REJECT, f"unsupported key type {key_type!r}")
    if mpc_btl and height + margin >= mpc_btl:
        return Plan(Decision.SKIP, f"too close to timeout (height {height}, mpc_btl {mpc_btl})")
    return Plan(Decision.RUN)


def plan_sign_request(req: SignRequestView, height: int, margin: int) -> Plan:
    """Decide what to do with a signature request; key ownership is checked by the caller."""
    if req.child_req_ids:
        return Plan(Decision.SKIP, "parent request: its children are signed instead")
    key_type = parse_key_type(req.key_type)
    if key_type is None:
        return Plan(Decision.REJECT, f"unsupported key type {req.key_type!r}")
    if len(req.key_ids) != 1:
        return Plan(Decision.REJECT, f"expected exactly one key id, got {len(req.key_ids)}")
    if len(req.data_for_signing) != 1:
        return Plan(Decision.REJECT, f"expected one item of data to sign, got {len(req.data_for_signing)}")
    data = req.data_for_signing[0]
    if key_type is not KeyType.EDDSA_ED25519 and len(data) != 32:
        return Plan(Decision.REJECT, f"data_for_signing must be a 32-byte digest for ECDSA, got {len(data)}")
    if key_type is KeyType.EDDSA_ED25519 and not data:
        return Plan(Decision.REJECT, "data_for_signing is empty")
    if req.mpc_btl and height + margin >= req.mpc_btl:
        return Plan(Decision.SKIP, f"too close to timeout (height {height}, mpc_btl {req.mpc_btl})")
    return Plan(Decision.RUN)


def key_matches_request(key_type: str, request_key_type: str, key_id: int) -> str:
    """Why a signature request cannot be answered with its key ("" when it can).

    zrChain accepts a request whose key_ids mix key types; every child then carries one key's type
    while naming another key, so no honest signature can ever verify on chain. Both types come from
    the chain (KeyByID, the request), so every party reaches the same verdict and rejects at once
    instead of failing attempt after attempt until the request times out.
    """
    if key_type != request_key_type:
        return f"key {key_id} is {key_type} but the request is for {request_key_type}"
    return ""


def clip_reason(reason: str) -> str:
    """The chain refuses reject reasons over 512 characters."""
    return reason if len(reason) <= MAX_REJECT_REASON else reason[: MAX_REJECT_REASON - 3] + "..."


ICA_TYPE_URL = "/" + ICATransactionRequest.DESCRIPTOR.full_name


def is_ica(request: Any) -> bool:
    """A signature request the chain made for an ICA transaction (read from the request's metadata)."""
    return request.HasField("metadata") and request.metadata.type_url == ICA_TYPE_URL


def ica_reject_reason(request: Any) -> str:
    """Why an ICA signature request must be rejected ("" if it may be signed); chain data only.

    zrChain's FulfilICATransactionRequest (x/treasury/keeper/msg_server_fulfil_ica_transaction_request.go)
    answers a signature request whose data is a single 32-byte hash; the data must be exactly SHA-256
    of the ICA request's input_msg for the key the ICA request names (controller/ica.py)."""
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


def sign_view(request: Any, mpc_btl: int) -> SignRequestView:
    """The planner's view of a chain SignReqResponse (`mpc_btl`: its deadline, controller/deadlines.py)."""
    return SignRequestView(request.id, request.key_type, tuple(request.key_ids),
                           tuple(bytes(d) for d in request.data_for_signing), tuple(request.child_req_ids),
                           mpc_btl)


def plan_sign(request: Any, key: Any | None, keyring: str, height: int, margin: int,
              mpc_btl: int | None = None) -> Plan:
    """Everything either daemon checks before a signature request is signed, in the controller's order:
    the ICA rule, the request's own shape and timing (`plan_sign_request`), then its key (known, ours,
    of the request's type). `key` is the chain's key of the request's first key id (None: unknown)."""
    if reason := ica_reject_reason(request):
        return Plan(Decision.REJECT, reason)
    view = sign_view(request, request.mpc_btl if mpc_btl is None else mpc_btl)
    plan = plan_sign_request(view, height, margin)
    if plan.decision is not Decision.RUN:
        return plan
    if key is None:
        return Plan(Decision.REJECT, f"unknown key {view.key_ids[0]}")
    if key.keyring_addr != keyring:
        return Plan(Decision.REJECT, f"key {key.id} belongs to keyring {key.keyring_addr}")
    if mismatch := key_matches_request(key.type, request.key_type, key.id):
        return Plan(Decision.REJECT, mismatch)  # chain data only: every party rejects alike, at once
    return Plan(Decision.RUN)
