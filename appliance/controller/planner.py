"""Planning a request the same way on every party, without talking to the others.

Every controller of a keyring sees the same requests on chain, so each derives the same session id
and the same signing quorum from the request alone. The quorum rotates with the attempt number: if a
party does not answer in time, every controller moves to attempt k+1 and the next window of parties.

Validation here decides which requests are rejected on chain (with a reason an operator can read)
and which are skipped (parents of split signature requests; requests too close to their timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from appliance.rules.keytypes import KeyType, parse_key_type

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
