"""A reject is posted only when every honest party would post the same one (it is fatal to the request).

Every controller of a keyring runs its real decision code (`Controller._consider`, the planner and the
chain reads behind it) over the same chain data: keys on a real dev node, and signature requests as
the chain's SignatureRequests answer would carry them, malformed ones included. Each must reach the
same decision with byte-identical reasons. A party that lacks its share, or whose MPC session fails,
never rejects: that is not chain data, and another quorum may still sign.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf.any_pb2 import Any as AnyMsg

from appliance.controller.deadlines import Deadlines
from appliance.controller.journal import Journal, State
from appliance.controller.presign import PoolFiller
from appliance.controller.quorum import QuorumPicker
from appliance.controller.scheduler import ShedLog
from appliance.controller.service import Controller, ControllerSection, _Open
from appliance.mpc_party.local_api import JobFailed, SignJob
from chain_client.crypto import SoftwareSigner
from chain_client.proto_gen.zrchain.treasury.key_pb2 import KeyReqResponse
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import (
    SIGN_REQUEST_STATUS_REJECTED,
    ICATransactionRequest,
    SignReqResponse,
)
from chain_client.proto_gen.zrchain.treasury.tx_pb2 import MsgFulfilICATransactionRequest, MsgFulfilSignatureRequest
from tests.chain.conftest import digest, open_world
from tests.chain.test_keeper_rules import new_key

world = pytest.fixture(scope="module", name="world")(open_world)
PARTIES = (1, 2, 3)
ECDSA, EDDSA = "KEY_TYPE_ECDSA_SECP256K1", "KEY_TYPE_EDDSA_ED25519"


class _FailingParty:
    """Stands in for the party daemon only to inject the failure a missing share makes (JobFailed)."""

    def __init__(self, error: str) -> None:
        self.error = error

    def run(self, job, timeout: float):
        raise JobFailed(self.error)


def _controller(world, tmp: Path, me: int, keyring: str) -> Controller:
    """The real Controller's decision state, without the HSM, roster file or job pool it runs with."""
    controller = Controller.__new__(Controller)
    section = ControllerSection(index=me, roster="", party_socket="", data_dir=str(tmp), job_timeout_s=1.0)
    controller.config = SimpleNamespace(controller=section)
    controller.chain = world.new_client()
    controller.keyring, controller.me, controller.parties, controller.threshold = keyring, me, list(PARTIES), 2
    controller.address = f"zen1party{me}"
    controller.journal = Journal(tmp / f"journal-{me}.sqlite")
    controller.deadlines = Deadlines(controller.chain)
    controller._keys, controller._key_types, controller._reject_reasons = {}, {}, {}
    controller._eager, controller._started, controller._running = set(), set(), set()
    controller._lock = threading.Lock()
    controller._admitted = None  # keyring-wide admission off (the default)
    controller._settled, controller._doomed = {}, {}  # no plan cached yet (Controller._expire_settled)
    controller._attempts = (-1, {})
    controller.finishable = True  # what the scheduler says of a job started now (Controller._doom)
    controller.scheduler = SimpleNamespace(could_finish=lambda _kind, _deadline: controller.finishable,
                                           queue=SimpleNamespace(shed_log=ShedLog(60.0)))
    controller._joined = {}  # no joined-session signature from the party (Controller._read_joined)
    controller.quorum = QuorumPicker(me, PARTIES, 2)  # every party live: no liveness view needed here
    controller.members = SimpleNamespace(of=lambda _public_key: (tuple(PARTIES), 2))  # every key: all hold it
    controller.membership = None  # the chain keyring not read here: new keys among the roster's parties
    controller.presign = PoolFiller(None, me, 0, 1, controller.members.of)  # presignature pools off
    controller.height = world.client.latest_height()
    controller.started_jobs = []
    controller._start = lambda job, key_type, ctx: controller.started_jobs.append(job.request_id)
    return controller


def _request(request_id: int, key_type: str, key_ids: list[int], data: list[bytes], **extra) -> SignReqResponse:
    return SignReqResponse(id=request_id, key_type=key_type, key_ids=key_ids, data_for_signing=data,
                           status="SIGN_REQUEST_STATUS_PENDING", mpc_btl=10**9, **extra)


def _ica_metadata(key_id: int, input_msg: bytes) -> AnyMsg:
    record = ICATransactionRequest(id=3, key_id=key_id, input_msg=input_msg)
    return AnyMsg(type_url="/zrchain.treasury.ICATransactionRequest", value=record.SerializeToString())


@pytest.fixture(scope="module")
def chain_data(world):
    """Keys on chain (ours: ECDSA and Ed25519; another keyring's) and the requests each party reads."""
    ours = world.keyring(parties=1)
    ecdsa, _ = new_key(world, ours)
    eddsa, _ = new_key(world, ours, key_type="ed25519")
    foreign, _ = new_key(world, world.keyring(parties=1))
    good = digest("agreement")
    ica_msg = b"an ICA MsgSendTx"
    requests = {
        "ok ecdsa": _request(101, ECDSA, [ecdsa], [good]),
        "ok eddsa (any length)": _request(102, EDDSA, [eddsa], [b"x" * 77]),
        "bad key type": _request(103, "KEY_TYPE_UNSPECIFIED", [ecdsa], [good]),
        "mixed key types": _request(104, ECDSA, [eddsa], [good], parent_req_id=100),
        "wrong data length": _request(105, ECDSA, [ecdsa], [good[:31]]),
        "two data items": _request(106, ECDSA, [ecdsa], [good, good]),
        "unknown key": _request(107, ECDSA, [987654], [good]),
        "key of another keyring": _request(108, ECDSA, [foreign], [good]),
        "no key ids": _request(109, ECDSA, [], [good]),
        "ICA ok": _request(110, ECDSA, [ecdsa], [hashlib.sha256(ica_msg).digest()],
                           metadata=_ica_metadata(ecdsa, ica_msg)),
        "ICA data not its input_msg": _request(111, ECDSA, [ecdsa], [good], metadata=_ica_metadata(ecdsa, ica_msg)),
        "ICA for another key": _request(112, ECDSA, [ecdsa], [hashlib.sha256(ica_msg).digest()],
                                        metadata=_ica_metadata(eddsa, ica_msg)),
        "parent of children": _request(113, ECDSA, [ecdsa, eddsa], [good, good], child_req_ids=[114, 115]),
    }
    return ours, requests


def _decisions(controller: Controller, requests: dict[str, SignReqResponse]) -> dict[str, tuple]:
    for request in requests.values():
        controller._consider(_Open("sign", request))
    out = {}
    for label, request in requests.items():
        entry = controller.journal.get("sign", request.id)
        out[label] = (entry.state, entry.reject_reason) if entry.state is State.REJECT else ("no reject", "")
    return out


def test_every_party_rejects_the_same_requests_with_the_same_bytes(world, chain_data, tmp_path):
    keyring, requests = chain_data
    decisions = [_decisions(_controller(world, tmp_path, me, keyring), requests) for me in PARTIES]
    assert decisions[0] == decisions[1] == decisions[2]
    rejected = {label for label, (state, _) in decisions[0].items() if state is State.REJECT}
    assert rejected == {
        "bad key type", "mixed key types", "wrong data length", "two data items", "unknown key",
        "key of another keyring", "no key ids", "ICA data not its input_msg", "ICA for another key",
    }
    reasons = {label: reason for label, (state, reason) in decisions[0].items() if state is State.REJECT}
    assert reasons["unknown key"] == "unknown key 987654"
    assert reasons["mixed key types"].startswith("key ") and "but the request is for" in reasons["mixed key types"]


def test_key_requests_agree_too(world, chain_data, tmp_path):
    """plan_key_request: an unsupported key type is rejected by all alike; a good one starts keygen."""
    keyring, _ = chain_data
    bad = KeyReqResponse(id=201, key_type="KEY_TYPE_UNSPECIFIED", status="KEY_REQUEST_STATUS_PENDING", mpc_btl=10**9)
    good = KeyReqResponse(id=202, key_type=ECDSA, status="KEY_REQUEST_STATUS_PENDING", mpc_btl=10**9)
    outcomes = []
    for me in PARTIES:
        controller = _controller(world, tmp_path, me, keyring)
        for request in (bad, good):
            controller._consider(_Open("key", request))
        entries = [controller.journal.get("key", r.id) for r in (bad, good)]
        outcomes.append([(e.state, e.reject_reason) for e in entries])
        assert controller.started_jobs == [202]  # keygen runs on every party
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert outcomes[0][0] == (State.REJECT, "unsupported key type 'KEY_TYPE_UNSPECIFIED'")


def test_an_ica_reject_is_posted_with_the_ica_message(world, chain_data, tmp_path):
    """The answer to an ICA transaction's request, a reject included, is MsgFulfilICATransactionRequest."""
    keyring, requests = chain_data
    controller = _controller(world, tmp_path, 1, keyring)
    controller.signer = SoftwareSigner()
    request = requests["ICA data not its input_msg"]
    controller._consider(_Open("sign", request))
    message = controller._messages(controller.journal.get("sign", request.id), request)
    assert isinstance(message, MsgFulfilICATransactionRequest)
    assert message.status == SIGN_REQUEST_STATUS_REJECTED and message.request_id == request.id
    assert "input_msg" in message.reject_reason and len(message.keyring_party_signature) == 64
    plain = requests["unknown key"]
    controller._consider(_Open("sign", plain))
    assert isinstance(controller._messages(controller.journal.get("sign", plain.id), plain), MsgFulfilSignatureRequest)


def test_a_party_without_its_share_or_with_a_failed_session_never_rejects(world, chain_data, tmp_path):
    keyring, requests = chain_data
    ok = requests["ok ecdsa"]
    for me, error in ((1, "no share for key"), (2, "session aborted: peer 3 sent an invalid message")):
        controller = _controller(world, tmp_path, me, keyring)
        controller.party = _FailingParty(error)
        controller._consider(_Open("sign", ok))
        key = world.client.key(ok.key_ids[0])
        public, data = bytes(key.public_key), bytes(ok.data_for_signing[0])
        job = SignJob(ok.id, ok.key_type, key.id, public, data, PARTIES[:2], 0)
        controller._run_job_once(job, ok.key_type, (public, data))
        controller._consider(_Open("sign", ok))
        assert controller.journal.get("sign", ok.id).state is State.SEEN


def test_a_request_no_job_can_finish_is_not_planned_again_until_someone_signs_it(world, chain_data, tmp_path):
    """Regression (issue 17): under overload most open requests are past saving, and each controller
    planned (and shed) every one of them again at every attempt: most of its CPU. Such a request is now
    shed once and left alone until its view on chain changes (a peer's signature posted: it is adopted)."""
    keyring, _ = chain_data
    key_id, private = new_key(world, keyring)
    data = digest("doomed")
    pending = _request(120, ECDSA, [key_id], [data])
    controller = _controller(world, tmp_path, 1, keyring)
    controller.party = SimpleNamespace(signature=lambda _request_id: None)  # not our party's signature
    controller.finishable = False
    controller._consider(_Open("sign", pending))
    assert controller.started_jobs == [] and pending.id in controller._doomed
    controller.finishable = True  # even so: nothing about the request has changed, it is not planned
    controller._consider(_Open("sign", pending))
    assert controller.started_jobs == []
    partial = SignReqResponse()
    partial.CopyFrom(pending)
    partial.status = "SIGN_REQUEST_STATUS_PARTIAL"
    partial.signed_data.add(sign_request_id=pending.id, signed_data=private.sign_recoverable(data, hasher=None)[:64])
    partial.keyring_party_sigs.add(creator="zen1party2", signature=b"\x01" * 64)
    controller._consider(_Open("sign", partial))  # a peer posted: planned again, its signature adopted
    assert controller.journal.get("sign", pending.id).state is State.RESULT
    (tmp_path / "other").mkdir()
    other = _controller(world, tmp_path / "other", 1, keyring)
    other.finishable = False
    other._consider(_Open("sign", pending))
    other._doomed.clear()  # every plan made afresh (live parties changed, or RECONSIDER_ALL_S passed)
    other.finishable = True
    other._consider(_Open("sign", pending))
    assert other.started_jobs == [pending.id]
