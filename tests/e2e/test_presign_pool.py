"""Presignature pools end to end (real chain node, SoftHSM tokens, party daemons and controllers as
processes): a 2-of-3 keyring with pools on signs ECDSA, BITCOIN and Ed25519 requests from the pool
(the parties' hit counters move), every signature verified with an independent library; a party
daemon killed and restarted starts with an empty pool, is refilled in idle time, and nothing is ever
reused: every signature's nonce point (ECDSA r, Ed25519 R) is distinct across the whole module."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import PartyClient
from tests.e2e.test_metrics import metrics_url, scrape, total

PER_KEY = 2
KEY_TYPES = ("ecdsa", "bitcoin", "ed25519")
LABELS = {"ecdsa": "ecdsa_secp256k1", "bitcoin": "bitcoin_secp256k1", "ed25519": "eddsa_ed25519"}
HITS = "zrkeyring_party_presignature_pool_signs_total"
POOL = "zrkeyring_party_presignature_pool_size"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    settings = LocalSettings(presign_pool_max=256, presign_pool_per_key=PER_KEY)
    net = LocalKeyring(tmp_path_factory.mktemp("pool"), settings).setup().start()
    yield net
    net.close()


@pytest.fixture(scope="module")
def keys(keyring):
    out = {}
    for key_type in KEY_TYPES:
        request_id = keyring.request_key(key_type)
        keyring.wait_request("key", request_id)
        out[key_type] = keyring.key_for_request(request_id)
    return out


NONCES: set[bytes] = set()  # every signature's nonce point in this module: a reused entry repeats one


def sign(keyring, key, key_type: str) -> None:
    raw = secrets.token_bytes(24)
    data = b"pool " + raw if key_type == "ed25519" else hashlib.sha256(raw).digest()
    req = keyring.wait_request("sign", keyring.request_signature(key.id, data), timeout_s=90)
    signature = bytes(req.signed_data[0].signed_data)
    verify_independently(key_type, bytes(key.public_key), data, signature)
    nonce = signature[:32]
    assert nonce not in NONCES, "a nonce point repeated: a presignature was used twice"
    NONCES.add(nonce)


def pool_sizes(keyring) -> dict[int, dict[str, float]]:
    out = {}
    for host in keyring.hosts:
        samples = scrape(metrics_url(host, "party"))
        out[host.index] = {t: total(samples, POOL, key_type=LABELS[t]) for t in KEY_TYPES}
    return out


def hits(keyring) -> dict[str, float]:
    samples = [scrape(metrics_url(h, "party")) for h in keyring.hosts]
    return {t: sum(total(s, HITS, key_type=LABELS[t], outcome="hit") for s in samples) for t in KEY_TYPES}


def wait_full(keyring, timeout_s: float = 240.0) -> None:
    """Until every party holds PER_KEY entries of every key for each of its two signer sets."""
    deadline = time.monotonic() + timeout_s
    while True:
        sizes = pool_sizes(keyring)
        if all(v >= 2 * PER_KEY for per in sizes.values() for v in per.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pools not filled in {timeout_s} s: {sizes}")
        time.sleep(0.5)


def test_signatures_come_from_the_pool_and_verify(keyring, keys) -> None:
    for key_type in KEY_TYPES:  # a key becomes hot when it is signed with
        sign(keyring, keys[key_type], key_type)
    wait_full(keyring)
    before = hits(keyring)
    for _round in range(2):
        for key_type in KEY_TYPES:  # one at a time, pools warm
            sign(keyring, keys[key_type], key_type)
            wait_full(keyring)  # refilled in the idle time after each
    after = hits(keyring)
    for key_type in KEY_TYPES:  # both signers of each request signed from an entry
        assert after[key_type] - before[key_type] >= 2, (key_type, before, after)


def test_a_restarted_party_starts_empty_is_refilled_and_reuses_nothing(keyring, keys) -> None:
    wait_full(keyring)
    keyring.stop_role(2, "party", kill=True)
    keyring.start_role(2, "party")
    keyring.wait_party_ready(2)
    assert keyring.party_status(2)["presign_pool"] == 0  # nothing on disk to come back
    keyring.wait_all_live()
    wait_full(keyring)  # the peers dropped what they shared with party 2 when it went; all refilled
    before = hits(keyring)
    for _round in range(2):
        for key_type in KEY_TYPES:
            sign(keyring, keys[key_type], key_type)
            wait_full(keyring)
    after = hits(keyring)
    assert all(after[t] - before[t] >= 2 for t in KEY_TYPES), (before, after)
    assert len(NONCES) >= 3 * 5


@pytest.fixture(scope="module")
def refreshing(tmp_path_factory):
    """A second keyring with pools on and a scheduled refresh every 120 blocks (24 s at 0.2 s blocks)."""
    settings = LocalSettings(presign_pool_max=256, presign_pool_per_key=PER_KEY, refresh_period_blocks=120,
                             refresh_window_blocks=30, round_timeout_s=4.0)
    net = LocalKeyring(tmp_path_factory.mktemp("pool-refresh"), settings).setup().start()
    yield net
    net.close()


def active_versions(net: LocalKeyring) -> set[int]:
    versions = set()
    for host in net.hosts:
        client = PartyClient(host.socket)
        try:
            versions |= {k["version"] for k in client.keys()}
        finally:
            client.close()
    return versions


def dropped_for_new_version(net: LocalKeyring) -> bool:
    """Every party logged dropping pool entries because the key's share version moved past 1."""
    return all(re.search(r"presignature pool entries of key \w+: share version is now ([2-9]|\d\d)",
                         h.log("party").read_text()) for h in net.hosts)


def test_a_refresh_destroys_the_pool_of_the_old_version(refreshing) -> None:
    """Pools filled at one share version; the scheduled refresh commits the next one everywhere: every
    party drops the old version's entries (its log says so), signatures keep verifying, none repeats a
    nonce, and the pools refill at the new version and sign from it."""
    key = keyring_key(refreshing, "ecdsa")
    sign(refreshing, key, "ecdsa")
    deadline = time.monotonic() + 300
    while not dropped_for_new_version(refreshing):
        assert time.monotonic() < deadline, (active_versions(refreshing), "old pool entries not dropped")
        time.sleep(1.0)
    before = sum(hits(refreshing).values())
    for _ in range(4):
        sign(refreshing, key, "ecdsa")
        time.sleep(3.0)  # idle time: the pools refill at the new version
    assert sum(hits(refreshing).values()) - before >= 2
    assert min(active_versions(refreshing)) >= 2


def keyring_key(net: LocalKeyring, key_type: str):
    request_id = net.request_key(key_type)
    net.wait_request("key", request_id)
    return net.key_for_request(request_id)
