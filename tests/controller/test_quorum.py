"""The signer choice of issue 14: first live untried candidate of the attempt, bound into the session id."""

from __future__ import annotations

import itertools

import pytest

from appliance.controller.quorum import KEYGEN_ABSENT_S, QuorumPicker
from appliance.mpc_party.local_api import JobFailed
from appliance.rules.attempts import (
    MAX_SET_RETRIES,
    candidate_sets,
    keygen_participants,
    pick_run,
    pick_signers,
    quorum,
    rotation_order,
    session_id,
)

PARTIES = [1, 2, 3, 4, 5]


def test_with_everyone_live_the_first_candidate_is_the_rotation_window() -> None:
    for request_id in range(40):
        for attempt in range(6):
            first = next(candidate_sets(PARTIES, 3, request_id, attempt, set(PARTIES)))
            assert list(first) == quorum(PARTIES, 3, request_id, attempt)


def test_candidates_skip_dead_parties_and_every_controller_computes_the_same() -> None:
    live = {1, 3, 4}
    for request_id in range(40):
        sets = list(candidate_sets(PARTIES, 3, request_id, 0, live))
        assert sets == [(1, 3, 4)]
        shuffled = list(candidate_sets(list(reversed(PARTIES)), 3, request_id, 0, set(live)))
        assert shuffled == sets  # the roster's order does not matter, only its members
    two_down = list(candidate_sets(PARTIES, 2, 7, 0, {1, 2, 5}))
    assert sorted(two_down) == sorted(tuple(sorted(c)) for c in itertools.combinations([1, 2, 5], 2))
    order = [p for p in rotation_order(PARTIES, 7, 0) if p in {1, 2, 5}]
    assert two_down[0] == tuple(sorted(order[:2]))  # the first two live parties of the rotation


def test_pick_moves_past_tried_sets_and_says_when_none_is_left() -> None:
    live = set(PARTIES)
    first = pick_signers(PARTIES, 3, 11, 0, live)
    second = pick_signers(PARTIES, 3, 11, 0, live, tried={first})
    assert first is not None and second is not None and first != second
    every = set(candidate_sets(PARTIES, 3, 11, 0, live))
    assert len(every) == 10 and pick_signers(PARTIES, 3, 11, 0, live, tried=every) is None
    assert pick_signers(PARTIES, 3, 11, 0, {1, 2}) is None  # fewer than t live
    outsider = next(p for p in PARTIES if p not in first)
    assert pick_signers(PARTIES, 3, 11, 0, live, me=outsider) is None  # another party signs first


def test_pick_run_prefers_a_new_set_then_reruns_each_set_once() -> None:
    live = {1, 2, 3}
    first = pick_run([1, 2, 3], 2, 4, 0, live, {})
    assert first is not None and first[1] == 0
    runs = {first[0]: 1}
    second = pick_run([1, 2, 3], 2, 4, 0, live, runs)
    assert second is not None and second[0] != first[0] and second[1] == 0
    runs = dict.fromkeys(candidate_sets([1, 2, 3], 2, 4, 0, live), 1)
    assert pick_run([1, 2, 3], 2, 4, 0, live, runs) == (first[0], 1)
    runs = dict.fromkeys(runs, MAX_SET_RETRIES)
    assert pick_run([1, 2, 3], 2, 4, 0, live, runs) is None


def test_session_id_binds_the_member_set() -> None:
    base = ("chain-1", "keyring1", "sign", 5, 0)
    ids = {session_id(*base, members) for members in itertools.combinations(PARTIES, 3)}
    assert len(ids) == 10
    assert session_id(*base, (3, 1, 2)) == session_id(*base, (1, 2, 3))  # a set, not a sequence
    assert session_id(*base, (1, 2, 3)) != session_id(*base, (1, 2, 3, 4))
    assert session_id(*base, (1, 2)) != session_id("chain-1", "keyring1", "sign", 5, 1, (1, 2))
    assert session_id(*base, (1, 2)) != session_id(*base, (1, 2), 1)  # a rerun is a new session


def test_keygen_takes_every_live_party_when_there_are_enough() -> None:
    assert keygen_participants(PARTIES, 3, {5, 1, 3}) == (1, 3, 5)
    assert keygen_participants(PARTIES, 3, set(PARTIES)) == tuple(PARTIES)
    assert keygen_participants(PARTIES, 3, {1, 2}) == tuple(PARTIES)  # below t: wait for everyone


class _Party:
    """The controller's local API answering from a fixed view (or not at all)."""

    def __init__(self, live: set[int] | None) -> None:
        self.view = live

    def liveness(self) -> set[int]:
        if self.view is None:
            raise JobFailed("party daemon unreachable: UNAVAILABLE", retryable=True)
        return set(self.view)


def test_picker_retries_within_the_attempt_after_a_failed_set() -> None:
    picker = QuorumPicker(1, [1, 2, 3], 2)
    party = _Party({1, 2, 3})
    picker.refresh(party)
    request_id = next(r for r in range(100) if quorum([1, 2, 3], 2, r, 0) == [1, 3])
    assert picker.signers(request_id, 0) == ((1, 3), 0)
    picker.mark_tried(request_id, 0, (1, 3))
    party.view = {1, 2}  # party 3 went down mid-session: the next tick moves on at once
    picker.refresh(party)
    assert picker.signers(request_id, 0) == ((1, 2), 0)
    picker.mark_tried(request_id, 0, (1, 2))
    assert picker.signers(request_id, 0) == ((1, 2), 1)  # the only live set failed: run it once more
    picker.mark_tried(request_id, 0, (1, 2))
    assert picker.signers(request_id, 0) is None
    assert picker.signers(request_id, 1) == ((1, 2), 0)  # a new attempt starts afresh
    picker.forget(set())
    assert picker.signers(request_id, 0) == ((1, 2), 0)


def test_picker_without_a_view_assumes_everyone_and_keeps_itself() -> None:
    picker = QuorumPicker(2, [1, 2, 3], 2)
    assert picker.refresh(_Party(None)) == {1, 2, 3}
    assert picker.refresh(_Party({1, 3})) == {1, 2, 3}  # this party always counts itself
    assert picker.keygen_parties() == (1, 2, 3)


def test_keygen_leaves_a_party_out_only_once_its_absence_is_settled() -> None:
    now = [100.0]
    picker = QuorumPicker(1, [1, 2, 3], 2, clock=lambda: now[0])
    picker.refresh(_Party({1}))  # a view still filling (peers' controllers not ticking yet)
    assert picker.keygen_parties() == (1, 2, 3)
    now[0] += 1.0
    picker.refresh(_Party({1, 2}))
    now[0] += KEYGEN_ABSENT_S
    picker.refresh(_Party({1, 2}))
    assert picker.keygen_parties() == (1, 2)  # party 3 out of the view for longer than the settle time
    picker.refresh(_Party({1, 2, 3}))
    assert picker.keygen_parties() == (1, 2, 3)  # back at once


@pytest.mark.parametrize("n,t", [(3, 2), (5, 3), (8, 5)])
def test_any_two_candidates_share_a_party_when_t_is_a_majority(n: int, t: int) -> None:
    """Why a party's one-signature-per-request rule keeps two quorums from both finishing
    (docs/architecture.md, Choosing signers): every two t-sets meet when 2t > n."""
    sets = list(candidate_sets(range(1, n + 1), t, 3, 0, set(range(1, n + 1))))
    assert all(set(a) & set(b) for a, b in itertools.combinations(sets, 2))
