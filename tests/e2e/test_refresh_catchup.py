"""A party killed in the middle of a scheduled refresh (right after it stored the new share pending; the
process exits there by itself, tests/e2e/faulty_party.py, so the test does not race the commit):
the keyring keeps signing with the version every party holds, and once the party is back every party
ends on the new version with the old one destroyed (the catch-up phase, or the next slot)."""

from __future__ import annotations

import secrets
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from tests.e2e.test_refresh import PERIOD, WINDOW, refreshed_everywhere, share_rows


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    settings = LocalSettings(refresh_period_blocks=PERIOD, refresh_window_blocks=WINDOW, attempt_blocks=15,
                             round_timeout_s=4.0)
    fault = ("tests.e2e.faulty_party", {"ZRKEYRING_FAULT": "exit-after-refresh-pending"})
    net = LocalKeyring(tmp_path_factory.mktemp("catchup"), settings).setup().start(party_entry={3: fault})
    yield net
    net.close()


def signs(net: LocalKeyring, key_type: str, key) -> None:
    data = secrets.token_bytes(32)
    req = net.wait_request("sign", net.request_signature(key.id, data), timeout_s=120)
    verify_independently(key_type, bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))


def test_party_killed_after_storing_pending_catches_up(keyring) -> None:
    keys = {}
    for key_type in ("ecdsa", "ed25519"):
        request_id = keyring.request_key(key_type)
        keyring.wait_request("key", request_id)
        keys[key_type] = keyring.key_for_request(request_id)
    party3 = keyring.host(3).procs["party"]  # dies (os._exit) right after its first refresh stored pending
    deadline = time.monotonic() + 2 * PERIOD * 0.2 + 60
    while party3.poll() is None:
        assert time.monotonic() < deadline, "no refresh reached the pending stage"
        time.sleep(0.05)
    keyring.stop_role(3, "party")
    killed_at = share_rows(keyring, 3)
    assert any(any(state == "pending" for _v, state in rows) for rows in killed_at.values()), killed_at
    for key_type, key in keys.items():  # parties 1 and 2 keep signing, whatever version they are on
        signs(keyring, key_type, key)
    keyring.start_role(3, "party")  # the shipped daemon this time
    keyring.wait_party_ready(3)
    deadline = time.monotonic() + 3 * PERIOD * 0.2 + 60
    while not refreshed_everywhere(keyring):
        assert time.monotonic() < deadline, {i: share_rows(keyring, i) for i in (1, 2, 3)}
        time.sleep(1.0)
    for key_type, key in keys.items():  # and every quorum signs with the new version
        for _ in range(3):
            signs(keyring, key_type, key)
