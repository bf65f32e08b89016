"""The controller's pool filler (controller/presign.py) and the rule behind its signer sets
(rules/attempts.likely_signer_sets): hot keys by recency, the sets the quorum rules would pick, idle
time only, one round at a time, followers' jobs before the ones this party leads."""

from __future__ import annotations

import threading

from appliance.controller.presign import FILL_INTERVAL_S, PoolFiller
from appliance.mpc_party.local_api import JobFailed, PresignJob
from appliance.rules.attempts import likely_signer_sets, pick_signers


def test_likely_sets_are_every_first_pick_of_the_rules() -> None:
    parties, t = [1, 2, 3, 4, 5], 3
    for live in ({1, 2, 3, 4, 5}, {1, 3, 4, 5}, {2, 5, 1}):
        firsts = {pick_signers(parties, t, request_id, attempt, live)
                  for request_id in range(60) for attempt in range(3)}
        assert set(likely_signer_sets(parties, t, live)) == firsts
    assert likely_signer_sets([1, 2, 3], 2, {1, 2, 3}) == [(1, 2), (2, 3), (1, 3)]
    assert likely_signer_sets([1, 2, 3], 2, {1}) == []


class FakeParty:
    def __init__(self, fail: bool = False) -> None:
        self.jobs: list[PresignJob] = []
        self.fail = fail
        self.release = threading.Event()

    def run(self, job: PresignJob, timeout: float) -> bytes:
        self.jobs.append(job)
        self.release.wait(5)
        if self.fail:
            raise JobFailed("refused: pools are off")
        return b"\x00\x01"


def filler(party: FakeParty, clock: list[float], per_key: int = 4, hot: int = 2) -> PoolFiller:
    holders = {b"A": ((1, 2, 3), 2), b"B": ((1, 2, 3), 2), b"C": ((1, 2, 3), 2)}
    return PoolFiller(party, 2, per_key, hot, holders.get, now=lambda: clock[0])  # type: ignore[arg-type]


def test_hot_keys_sets_and_order() -> None:
    party, clock = FakeParty(), [100.0]
    f = filler(party, clock)
    for key_id, pk in ((1, b"A"), (2, b"B"), (3, b"C"), (2, b"B")):
        f.note_sign(key_id, "KEY_TYPE_ECDSA_SECP256K1", pk)
    jobs = f.jobs({1, 2, 3})
    # the two hottest keys (B, then C), every first-pick set containing party 2, per_key entries each
    assert [(j.key_id, j.signers) for j in jobs] == [(2, (1, 2)), (2, (2, 3)), (3, (1, 2)), (3, (2, 3))]
    assert all(j.count == 4 for j in jobs)
    party.release.set()
    assert f.tick(True, {1, 2, 3})
    f._running.join(5)  # noqa: SLF001
    led_last = [min(j.signers) == 2 for j in party.jobs]
    assert led_last == sorted(led_last)  # members' arming first, then the fills this party leads


def test_only_when_idle_one_round_at_a_time_and_off_at_zero() -> None:
    party, clock = FakeParty(fail=True), [100.0]
    f = filler(party, clock)
    f.note_sign(1, "KEY_TYPE_EDDSA_ED25519", b"A")
    assert not f.tick(False, {1, 2, 3})  # busy: nothing
    assert f.tick(True, {1, 2, 3})
    clock[0] += FILL_INTERVAL_S * 2
    assert not f.tick(True, {1, 2, 3})  # the previous round still runs
    party.release.set()
    f._running.join(5)  # noqa: SLF001 - a refused job is logged, the round ends
    assert f.tick(True, {1, 2, 3})  # done and due: the next round
    off = filler(FakeParty(), [0.0], per_key=0)
    off.note_sign(1, "KEY_TYPE_ECDSA_SECP256K1", b"A")
    assert not off.tick(True, {1, 2, 3}) and off.jobs({1, 2, 3}) == []
