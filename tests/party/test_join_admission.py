"""Which refresh jobs a party with no share of the key accepts (mpc_party/lifecycle.py `_join`): only
when its own reading of the chain's keyring lists it, the key is a key of that keyring, and the key's
request is a fulfilled one of the keyring. The chain readings are stand-ins (each is a read the party
makes itself); nothing is run and nothing is stored when a job is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.mpc_party.lifecycle import Refresher
from appliance.mpc_party.local_api import JobFailed, RefreshJob
from appliance.rules.lifecycle import RefreshSchedule, slot_at
from appliance.rules.membership import Membership
from appliance.runtime.errors import ConfigError

KEYRING, KEY_ID, PK = "keyring1join", 9, b"\x02" + b"\x11" * 32
SCHEDULE = RefreshSchedule(period_blocks=100, window_blocks=30, attempt_blocks=10)


class NothingHeld:
    """The share store of a party that holds nothing of the key; any write fails the test."""

    def active_by_public_key(self, *_args):
        return None

    def pending_of(self, *_args):
        return None

    def __getattr__(self, name):
        raise AssertionError(f"a refused join touched the store: {name}")


class NoSessions:
    def run(self, *_args, **_kwargs):
        raise AssertionError("a refused join ran a session")


def open_height() -> int:
    return next(h for h in range(1000) if (s := slot_at(SCHEDULE, KEYRING, KEY_ID, h)) and s.phase == "refresh")


def refresher(membership, request_of=lambda _pk: 3, keyring=KEYRING) -> tuple[Refresher, RefreshJob]:
    height = open_height()
    slot = slot_at(SCHEDULE, KEYRING, KEY_ID, height)
    chain_key = SimpleNamespace(keyring_addr=keyring, public_key=PK, type="KEY_TYPE_EDDSA_ED25519")
    r = Refresher(me=4, keyring=KEYRING, chain_id="c", store=NothingHeld(), sealer=None, runner=NoSessions(),
                  reader=SimpleNamespace(key=lambda _id: chain_key), height=lambda: height, schedule=SCHEDULE,
                  rng_factory=lambda: None, state=None, membership=membership, request_of=request_of)
    return r, RefreshJob(KEY_ID, "KEY_TYPE_EDDSA_ED25519", PK, slot.period, slot.phase, slot.attempt)


def unreadable() -> Membership:
    raise ConfigError("the keyring on chain names parties [...] that the roster does not list")


@pytest.mark.parametrize(("membership", "request_of", "keyring", "why"), [
    (lambda: Membership((1, 2, 3), 2), lambda _pk: 3, KEYRING, "does not list this party"),
    (lambda: None, lambda _pk: 3, KEYRING, "does not list this party"),
    (unreadable, lambda _pk: 3, KEYRING, "unusable"),
    (lambda: Membership((1, 2, 3, 4), 3), lambda _pk: None, KEYRING, "no fulfilled key request"),
    (lambda: Membership((1, 2, 3, 4), 3), lambda _pk: 3, "keyring1other", "is not a key of keyring"),
])
def test_a_party_without_the_key_refuses_what_the_chain_does_not_give_it(membership, request_of, keyring, why):
    r, job = refresher(membership, request_of, keyring)
    with pytest.raises(JobFailed, match=why) as exc:
        r.run(job)
    assert "refused" in str(exc.value)
    assert r.counts.failed == 1
