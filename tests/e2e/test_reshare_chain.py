"""Resharing driven by the chain, with real processes: a 2-of-3 keyring with keys of every type; the
admin raises party_threshold to 3 on chain, and every key is reshared to 3-of-3 in its next refresh
slot (same public keys); then the admin removes party 1, and every key is reshared to parties 2 and 3
(threshold lowered to 2 by the chain), party 1 dealing and then destroying its shares. Signature
requests submitted throughout are all fulfilled and verified independently; signatures after each
change come from the new quorums. (Party 1's old shares not combining with the new ones is shown at
protocol level: tests/mpc/test_reshare.py.)"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import PartyClient

pytestmark = pytest.mark.slow

PERIOD, WINDOW = 80, 30
TYPES = ("ecdsa", "bitcoin", "ed25519")


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    settings = LocalSettings(refresh_period_blocks=PERIOD, refresh_window_blocks=WINDOW, attempt_blocks=30,
                             round_timeout_s=4.0, default_btl=200)
    net = LocalKeyring(tmp_path_factory.mktemp("reshare"), settings).setup().start()
    yield net
    net.close()


def share_rows(net: LocalKeyring, index: int) -> dict[int, list[tuple[int, int, str]]]:
    """key id -> [(version, threshold, state)] from the party's share store (public columns only)."""
    path = net.host(index).directory / "data" / "shares.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key_id, share_version, threshold, state FROM shares "
                          "ORDER BY key_id, share_version").fetchall()
    finally:
        db.close()
    out: dict[int, list[tuple[int, int, str]]] = {}
    for key_id, version, threshold, state in rows:
        out.setdefault(key_id, []).append((version, threshold, state))
    return out


def reshared(net: LocalKeyring, parties: tuple[int, ...], threshold: int, keys: int) -> bool:
    """Every party in `parties` holds exactly one version of every key, active, with `threshold`."""
    views = [share_rows(net, i) for i in parties]
    return all(len(view) == keys and all(len(rows) == 1 and rows[0][1:] == (threshold, "active")
                                         for rows in view.values()) for view in views)


def wait_for(condition, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(1.0)


def sign_and_verify(net: LocalKeyring, keys: dict) -> None:
    for key_type, key in keys.items():
        data = secrets.token_bytes(32)
        req = net.wait_request("sign", net.request_signature(key.id, data), timeout_s=120)
        verify_independently(key_type, bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))


def test_threshold_raised_then_party_removed_on_chain_every_key_reshared(keyring) -> None:
    keys = {}
    for key_type in TYPES:
        request_id = keyring.request_key(key_type)
        keyring.wait_request("key", request_id)
        keys[key_type] = keyring.key_for_request(request_id)
    submitted: list[tuple[str, int, bytes]] = []
    stop = threading.Event()

    def load() -> None:  # signature requests keep coming while the keyring changes
        i = 0
        while not stop.is_set():
            key_type = TYPES[i % 3]
            data = secrets.token_bytes(32)
            submitted.append((key_type, keyring.request_signature(keys[key_type].id, data), data))
            i += 1
            stop.wait(1.0)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        keyring.set_threshold(3)
        wait_for(lambda: reshared(keyring, (1, 2, 3), 3, len(keys)),
                 "keys not reshared to 3-of-3", 3 * PERIOD * 0.2 + 120)
        assert keyring.client.keyring(keyring.keyring).party_threshold == 3
        sign_and_verify(keyring, keys)  # 3-of-3 now: every party signs, same public keys
        keyring.remove_party(1)  # the chain lowers the threshold to the 2 parties left
        assert keyring.client.keyring(keyring.keyring).party_threshold == 2
        wait_for(lambda: reshared(keyring, (2, 3), 2, len(keys)) and share_rows(keyring, 1) == {},
                 f"keys not reshared to parties 2 and 3: {[share_rows(keyring, i) for i in (1, 2, 3)]}",
                 3 * PERIOD * 0.2 + 120)
        keyring.stop_role(1, "party")  # party 1 is gone: parties 2 and 3 sign alone
        keyring.stop_role(1, "controller")
        sign_and_verify(keyring, keys)
    finally:
        stop.set()
        loader.join()
    for key_type, request_id, data in submitted:  # nothing lost during either change
        req = keyring.wait_request("sign", request_id, timeout_s=120)
        verify_independently(key_type, bytes(keys[key_type].public_key), data, bytes(req.signed_data[0].signed_data))
    assert len(submitted) >= 5


@pytest.fixture(scope="module")
def lost_host(tmp_path_factory):
    settings = LocalSettings(refresh_period_blocks=PERIOD, refresh_window_blocks=WINDOW, attempt_blocks=30,
                             round_timeout_s=4.0, default_btl=200)
    net = LocalKeyring(tmp_path_factory.mktemp("lost"), settings).setup().start()
    yield net
    net.close()


def test_a_lost_party_removed_on_chain_the_others_reshare_without_it(lost_host) -> None:
    """2-of-3 and party 1's host gone (both daemons stopped): the admin removes it on chain, and parties 2
    and 3 alone (enough to deal: t = 2) reshare every key to themselves, 2-of-2, same public keys."""
    net = lost_host
    keys = {}
    for key_type in TYPES:
        request_id = net.request_key(key_type)
        net.wait_request("key", request_id)
        keys[key_type] = net.key_for_request(request_id)
    net.stop_role(1, "party", kill=True)
    net.stop_role(1, "controller", kill=True)
    sign_and_verify(net, keys)  # 2-of-3 without party 1: the old set still signs
    net.remove_party(1)
    assert net.client.keyring(net.keyring).party_threshold == 2
    wait_for(lambda: reshared(net, (2, 3), 2, len(keys)) and all(
        rows[0][0] >= 2 for view in (share_rows(net, 2), share_rows(net, 3)) for rows in view.values()),
        f"keys not reshared to parties 2 and 3: {[share_rows(net, i) for i in (2, 3)]}", 3 * PERIOD * 0.2 + 120)
    for index in (2, 3):  # each key's holders, from the party's own share (what its quorums come from)
        client = PartyClient(net.host(index).socket)
        try:
            assert {(k["parties"] == [2, 3], k["threshold"]) for k in client.keys()} == {(True, 2)}
        finally:
            client.close()
    sign_and_verify(net, keys)
