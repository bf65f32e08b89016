"""3-of-5 with two party hosts SIGKILLed for the whole run (issue 14): every request fulfilled.

Same shipped timing as test_party_down.py (20-block lifetime, 10-block attempts, 1 s blocks). With two
of five parties down, 7 of the 10 rotation windows hold a dead party; each controller instead takes the
first three live parties of the request's rotation order.
"""

from __future__ import annotations

import pytest

from tests.e2e.party_down import (
    KEY_TYPES,
    ask,
    check_all_fulfilled,
    lifetime_s,
    make_keys,
    quantile,
    running,
    shipped_timing,
    wait_all,
    wait_live,
)

SETTINGS = shipped_timing(parties=5, threshold=3)
LIFETIME_S = lifetime_s(SETTINGS)
DOWN = (2, 4)
PER_TYPE = 4


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    yield from running(tmp_path_factory, "party-down-3of5", SETTINGS)


def test_two_of_five_parties_killed_every_request_fulfilled(net) -> None:
    keys = make_keys(net)  # all five up: every party holds a share of every key
    for index in DOWN:
        net.kill_host(index)
    try:
        asked = [a for key_type in KEY_TYPES for a in ask(net, key_type, keys[key_type], PER_TYPE)]
        wait_all(net, asked, timeout_s=LIFETIME_S * 3)
        latencies = check_all_fulfilled(asked)
        print(f"\n3-of-5, parties {DOWN} down: {len(asked)}/{len(asked)} fulfilled, latency p50 "
              f"{quantile(latencies, 0.5):.2f} s, max {max(latencies):.2f} s (lifetime {LIFETIME_S:.0f} s)")
    finally:
        for index in DOWN:
            net.restart_host(index)
    wait_live(net, 1, {1, 2, 3, 4, 5})
