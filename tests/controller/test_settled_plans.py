"""A sign request's plan is made once per attempt, not once per tick (Controller `_settled`).

Under a 3x backlog the controller planned each of hundreds of open requests afresh every tick; a
profile of one controller under overload had 73 % of its CPU in `_consider` (docs/performance.md,
"Planned once per attempt"). A plan now holds until something it depends on changes: the request's
attempt, status or signatures on chain, its job ending, the live parties, the keyring's membership
or drain mode, and at most RECONSIDER_ALL_S."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from appliance.controller import service
from appliance.controller.journal import Journal
from appliance.controller.quorum import QuorumPicker
from appliance.controller.service import RECONSIDER_ALL_S, Controller, ControllerSection, SignJob, _Open, _QueuedJob

BTL = 100


def controller(tmp_path) -> Controller:
    c = Controller.__new__(Controller)
    c.config = SimpleNamespace(controller=ControllerSection(index=1, roster="", party_socket="",
                                                            data_dir=str(tmp_path), default_btl=BTL))
    c.height = 10
    c.deadlines = SimpleNamespace(of=lambda kind, req: req.mpc_btl)
    c.journal = Journal(tmp_path / "journal.sqlite")
    c._key_types, c._settled, c._reconsider, c._lock = {}, {}, set(), threading.Lock()
    c._shed_signs, c._running, c._doomed = [], set(), {}
    c.address = "zen1us"
    c.planned = []
    c._consider_sign = lambda req: (c.planned.append(req.id), c._settled.__setitem__(req.id, c._plan_view(req)))
    c.quorum = QuorumPicker(1, [1, 2, 3], 2)
    c.membership, c.drain = None, SimpleNamespace(on=False)
    c._settled_view, c._settled_at, c._attempts = (), float("-inf"), (-1, {})
    return c


def request(request_id: int = 7, status: str = "SIGN_REQUEST_STATUS_PENDING", signed: int = 0, posts: int = 0):
    return SimpleNamespace(id=request_id, key_type="KEY_TYPE_ECDSA_SECP256K1", mpc_btl=10 + BTL, status=status,
                           signed_data=[b"s"] * signed,
                           keyring_party_sigs=[SimpleNamespace(creator="zen1them")] * posts)


def consider(c: Controller, req) -> None:
    c._expire_settled()
    c._consider(_Open("sign", req))


def test_a_planned_request_is_not_planned_again_in_the_same_attempt(tmp_path) -> None:
    c = controller(tmp_path)
    for _ in range(5):
        consider(c, request())
    assert c.planned == [7]


def test_a_new_attempt_a_new_status_or_a_signature_on_chain_plans_it_again(tmp_path) -> None:
    c = controller(tmp_path)
    consider(c, request())
    c.height += c.config.controller.attempt_blocks  # the quorum rotates
    consider(c, request())
    consider(c, request(status="SIGN_REQUEST_STATUS_PARTIAL", signed=1, posts=1))
    consider(c, request(status="SIGN_REQUEST_STATUS_PARTIAL", signed=1, posts=1))
    assert c.planned == [7, 7, 7]


def test_a_job_that_ended_plans_its_request_again_at_once(tmp_path) -> None:
    c = controller(tmp_path)
    consider(c, request())
    with c._lock:
        c._reconsider.add(7)  # what _run_job does when a job ends
    consider(c, request())
    consider(c, request())
    assert c.planned == [7, 7]


def test_live_parties_membership_drain_and_time_plan_everything_again(tmp_path, monkeypatch) -> None:
    c = controller(tmp_path)
    consider(c, request())
    c.quorum.live = {1, 2}  # party 3 went down: other signer sets
    consider(c, request())
    c.drain.on = True
    consider(c, request())
    c.membership = ("parties", (1, 2, 3, 4))
    consider(c, request())
    assert c.planned == [7] * 4
    now = [service.time.monotonic() + RECONSIDER_ALL_S]
    monkeypatch.setattr(service.time, "monotonic", lambda: now[0])
    consider(c, request())  # a second later
    consider(c, request())
    now[0] += RECONSIDER_ALL_S
    consider(c, request())
    assert c.planned == [7] * 6


def test_a_shed_job_is_not_planned_again_in_its_attempt_and_its_set_stays_first(tmp_path) -> None:
    """Regression (issue 17): a job shed unstarted used to re-plan its request at the next tick. The
    shed set counted as tried, so the plan moved to another set or a rerun, which was shed too: under
    3x, 17 sheds per request, and quorum partners planning different sets."""
    c = controller(tmp_path)
    request_id = 7
    first, retry = c.quorum.signers(request_id, 0)
    c.quorum.mark_tried(request_id, 0, first)  # what _start does as it queues the job
    consider(c, request(request_id))
    job = SignJob(request_id, "KEY_TYPE_ECDSA_SECP256K1", 1, b"pk", b"data", first, 0, retry)
    c._running.add(("sign", request_id))
    c._job_shed(_QueuedJob(job, "ecdsa", None, 10 + BTL))  # from a job thread
    assert c._running == set() and c._reconsider == set()
    consider(c, request(request_id))
    consider(c, request(request_id))
    assert c.planned == [request_id]  # next planned at its next attempt
    assert c.quorum.signers(request_id, 0) == (first, 0)  # the shed set was not tried after all
