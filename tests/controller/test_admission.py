"""The keyring-wide admission rule (scheduler.admitted): past capacity every party drops the same
requests, from chain data only, so no quorum member starts a session its partner dropped."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.controller.scheduler import OpenSign, admitted


def backlog(deadlines: list[int], first_id: int = 1) -> list[OpenSign]:
    return [OpenSign(first_id + i, d, True) for i, d in enumerate(deadlines)]


def test_off_admits_everything() -> None:
    reqs = backlog([101] * 50)
    assert admitted(reqs, 100, 0.0, 2) == {r.request_id for r in reqs}


def test_only_what_the_keyring_reaches_in_time_is_admitted() -> None:
    # one session a block, 2 blocks to include the answer: the k-th request is done k blocks from now
    reqs = backlog([110] * 20)
    assert admitted(reqs, 100, 1.0, 2) == set(range(1, 9))  # k + 2 <= 10
    assert admitted(reqs, 100, 2.5, 2) == set(range(1, 21))  # 20 / 2.5 = 8 blocks: all in time


def test_earliest_deadline_first_then_request_id() -> None:
    reqs = [OpenSign(7, 130, True), OpenSign(3, 104, True), OpenSign(5, 104, True), OpenSign(1, 104, True)]
    # per block 1, margin 2, height 100: two fit before 104 (ids 1 then 3); id 5 is doomed; 7 has time
    assert admitted(reqs, 100, 1.0, 2) == {1, 3, 7}


def test_a_doomed_request_takes_no_capacity_from_those_behind_it() -> None:
    reqs = [OpenSign(1, 102, True), OpenSign(2, 105, True), OpenSign(3, 105, True)]
    assert admitted(reqs, 100, 1.0, 2) == {2, 3}


def test_requests_needing_no_session_are_admitted_and_count_for_nothing() -> None:
    signed = [OpenSign(i, 103, False) for i in range(1, 11)]  # signature on chain: only posts remain
    reqs = signed + [OpenSign(20, 103, True)]
    assert admitted(reqs, 100, 1.0, 2) == {r.request_id for r in reqs}
    assert 20 in admitted(reqs + [OpenSign(21, 0, True)], 100, 1.0, 2)  # no deadline: always admitted


def test_admitted_requests_stay_admitted_as_the_backlog_drains() -> None:
    reqs = backlog([110] * 20)
    first = admitted(reqs, 100, 1.0, 2)
    served = min(first)
    later = admitted([r for r in reqs if r.request_id != served], 101, 1.0, 2)
    assert first - {served} <= later


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.booleans()), max_size=60), st.integers(0, 300),
       st.floats(0.0, 20.0), st.integers(0, 5), st.randoms(use_true_random=False))
def test_every_party_decides_alike_whatever_order_it_listed_the_requests_in(
        rows, height, per_block, margin, rnd: random.Random) -> None:
    reqs = [OpenSign(i + 1, d, needs) for i, (d, needs) in enumerate(rows)]
    other = list(reqs)
    rnd.shuffle(other)
    decided = admitted(reqs, height, per_block, margin)
    assert decided == admitted(other, height, per_block, margin)
    assert decided <= {r.request_id for r in reqs}
    # never more sessions taken on than the keyring serves before the latest admitted deadline
    taken = [r for r in reqs if r.request_id in decided and r.needs_session and r.deadline]
    if per_block > 0 and taken:
        assert len(taken) <= per_block * max(0, max(r.deadline for r in taken) - height - margin)


def controller_at(height: int, per_block: float, deadlines: dict[int, int], default_btl: int = 20,
                  attempt_blocks: int = 10):
    """The real Controller's admission methods over stand-in state (no chain, HSM or party)."""
    from types import SimpleNamespace

    from appliance.controller.service import Controller

    shed: list[str] = []
    ns = SimpleNamespace(
        config=SimpleNamespace(controller=SimpleNamespace(
            admission_per_block=per_block, post_margin_blocks=2, default_btl=default_btl,
            attempt_blocks=attempt_blocks)),
        height=height, deadlines=SimpleNamespace(of=lambda kind, req: deadlines[req.id]), _not_admitted=set(),
        _attempts=(-1, {}),
        scheduler=SimpleNamespace(queue=SimpleNamespace(shed_log=SimpleNamespace(
            shed=lambda kind, reason, now: shed.append(reason)))))
    for name in ("_attempt", "_attempt_at", "_attempt_end"):
        setattr(ns, name, getattr(Controller, name).__get__(ns))
    return ns, shed


def open_sign(request_id: int, signed: bool = False, parent: bool = False):
    from types import SimpleNamespace

    from appliance.controller.service import _Open

    req = SimpleNamespace(id=request_id, signed_data=[object()] if signed else [],
                          child_req_ids=[99] if parent else [])
    return ("sign", request_id), _Open("sign", req)


def test_the_controller_feeds_the_rule_chain_data_only_and_counts_a_drop_once() -> None:
    from appliance.controller.service import Controller

    deadlines = {1: 104, 2: 104, 3: 104, 4: 104, 5: 104}
    controller, shed = controller_at(100, 1.0, deadlines)
    opened = dict([open_sign(1, signed=True), open_sign(2, parent=True), open_sign(3), open_sign(4),
                   open_sign(5)])
    opened[("key", 3)] = opened[("sign", 3)]  # key requests are not the rule's business
    decided = Controller._admission(controller, opened)
    # 1 has its signature on chain and 2 is a parent: neither needs a session; 3 and 4 fit before 104
    assert decided == {1, 2, 3, 4}
    for _ in range(3):
        Controller._shed_by_admission(controller, 5)
    assert shed == ["admission"]
    off, _ = controller_at(100, 0.0, deadlines)
    assert Controller._admission(off, opened) is None


def test_a_request_is_admitted_only_if_reached_within_its_current_attempt() -> None:
    """Past its attempt the quorum rotates: a session started then meets nobody. Created at 90 with a
    40-block lifetime and 10-block attempts, at height 100 the current attempt ends at 110, so one
    session a block takes on 8 requests (2 blocks of margin), not the 28 the lifetime would allow."""
    from appliance.controller.service import Controller

    ids = range(1, 31)
    controller, _ = controller_at(100, 1.0, dict.fromkeys(ids, 130), default_btl=40, attempt_blocks=10)
    opened = dict(open_sign(i) for i in ids)
    assert Controller._admission(controller, opened) == set(range(1, 9))
