"""The party's liveness view: pings, the controller flag, when a peer is down (issue 14)."""

from __future__ import annotations

import time

from appliance.mpc_party import liveness as lv
from appliance.mpc_party.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_live_needs_a_recent_ping_and_an_active_controller() -> None:
    clock = Clock()
    view = Liveness(1, [1, 2, 3], lambda _p, _t: True, clock=clock)
    assert view.live() == {1}  # nobody pinged yet
    view.record(2, True, controller_active=True)
    view.record(3, True, controller_active=False)  # daemon up, controller not ticking
    assert view.live() == {1, 2}
    clock.now += lv.LIVE_WINDOW_S + 0.01
    assert view.live() == {1}  # no ping answered lately


def test_down_only_after_repeated_refusals_or_long_silence() -> None:
    clock = Clock()
    view = Liveness(1, [1, 2], lambda _p, _t: True, clock=clock)
    view.record(2, True, True)
    view.record(2, False, refused=True)
    clock.now += lv.DOWN_AFTER_S + 0.01
    assert not view.is_down(2)  # one refused ping is not a dead peer
    view.record(2, False, refused=True)
    assert view.is_down(2) and 2 not in view.live()  # the view never offers a peer a session was cut for
    view.record(2, True, True)
    assert not view.is_down(2) and 2 in view.live()
    for _ in range(5):  # timeouts: a busy host, not a dead one, until the silence is long
        view.record(2, False)
        clock.now += 0.5
    assert not view.is_down(2)
    clock.now += lv.DOWN_SILENT_S
    view.record(2, False)
    assert view.is_down(2)


def test_controller_flag_follows_local_calls() -> None:
    clock = Clock()
    view = Liveness(1, [1, 2], lambda _p, _t: True, clock=clock)
    assert not view.controller_active()
    view.note_controller()
    assert view.controller_active()
    clock.now += lv.CONTROLLER_ACTIVE_S + 0.01
    assert not view.controller_active()


def test_background_pings_report_changes() -> None:
    up = {2: True, 3: False}
    changes: list[tuple[int, bool]] = []

    def ping(peer: int, _timeout: float) -> bool:
        if not up[peer]:
            raise OSError("down")
        return True

    view = Liveness(1, [1, 2, 3], ping, on_change=lambda p, live: changes.append((p, live))).start()
    try:
        deadline = time.monotonic() + 15  # generous: pings run on a thread of a possibly loaded host
        while (view.live() != {1, 2} or (3, False) not in changes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert view.live() == {1, 2}
        up[3] = True
        while 3 not in view.live() and time.monotonic() < deadline + 15:
            time.sleep(0.05)
        assert view.live() == {1, 2, 3}
        assert (2, True) in changes and (3, False) in changes and (3, True) in changes
        assert view.snapshot()[3]["live"] is True
    finally:
        view.stop()


def test_an_envelope_from_a_peer_seen_down_clears_it_until_the_pings_fail_again() -> None:
    """A peer that has just restarted sends its hello before our next ping reaches it: our half of the
    session it asks us to join must not fail on the spot for a "down" peer (seen in test_reconnect: the
    joined half failed in 5 ms and the opener's half held the pair for a whole round)."""
    clock = Clock()
    view = Liveness(1, [1, 2], lambda _p, _t: True, clock=clock)
    view.record(2, True, True)
    clock.now += 30.0
    for _ in range(3):
        view.record(2, False, refused=True)
    assert view.is_down(2)
    view.heard(2)
    assert not view.is_down(2)
    assert 2 not in view.live()  # heard says "up", not "its controller is active": that stays the pings'
    view.record(2, False, refused=True)
    view.record(2, False, refused=True)  # a channel still in its reconnect backoff refuses a moment longer
    assert not view.is_down(2)
    clock.now += lv.DOWN_AFTER_S + 0.01
    assert view.is_down(2)  # silent again for as long as the rule asks: down again
    view.heard(99)  # a stranger's index changes nothing
