"""Keygen with a party down, final only when whole (issue 14, the keygen half), on real processes.

A 2-of-3 keyring: party 2 is SIGKILLed and stays down while keys of every type are made by parties 1
and 3 (the jobs name the live set P = (1, 3), as a controller with a liveness view does); every key is
fulfilled on chain, each live party holds a committed share with complete confirmation evidence.
Party 2 then returns, finds the keys it is missing on chain, has them repaired (and its DKLs23 OT pairs
set up), and signs with them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import KEY_TYPE_NAMES as KEY_TYPES
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import JobFailed, KeygenJob, PartyClient

pytestmark = pytest.mark.slow
DOWN = 2
LIVE = (1, 3)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("party-down")
    keyring = LocalKeyring(root, LocalSettings(default_btl=300, attempt_blocks=15)).setup().start()
    yield keyring
    keyring.close()


def status(net, index: int) -> dict:
    client = PartyClient(net.host(index).socket)
    try:
        return client.status(timeout=10)
    finally:
        client.close()


def keygen_on(net, parties: tuple[int, ...], request_id: int, key_type: str, attempt: int = 0) -> list[bytes]:
    """The same KeygenJob sent to each party's own socket at once, as their controllers would."""
    job = KeygenJob(request_id, key_type, parties, 2, attempt)

    def run(index: int) -> bytes:
        client = PartyClient(net.host(index).socket)
        try:
            return client.run(job, timeout=120)
        finally:
            client.close()

    with ThreadPoolExecutor(len(parties)) as pool:
        return list(pool.map(run, parties))


def sign_every_key(net, prefix: bytes) -> None:
    """A signature request for every key made, fulfilled and checked by an independent library."""
    for name, (request_id, public_key) in net.made.items():
        key = net.key_for_request(request_id)
        data = (prefix + name.encode()).ljust(32, b".")[:32]
        sign_request = net.request_signature(key.id, data)
        req = net.wait_request("sign", sign_request, timeout_s=180)
        verify_independently(name, public_key, data, bytes(req.signed_data[0].signed_data))


def test_all_parties_up_keygen_is_confirmed(net) -> None:
    request_id = net.request_key("ed25519")
    net.wait_request("key", request_id, timeout_s=90)
    for i in (1, 2, 3):
        assert status(net, i)["pending_keys"] == [] and status(net, i)["missing_keys"] == {}


def test_one_party_down_for_the_whole_run_every_key_type_fulfilled(net) -> None:
    for i in (1, 2, 3):
        net.stop_role(i, "controller")
    net.stop_role(DOWN, "party", kill=True)
    made = {}
    for name, key_type in KEY_TYPES.items():
        request_id = net.request_key(name)
        keys = keygen_on(net, LIVE, request_id, key_type)
        assert len(set(keys)) == 1, keys
        made[name] = (request_id, keys[0])
    for i in LIVE:
        assert status(net, i)["pending_keys"] == []
        net.start_role(i, "controller")  # asks with every party: answered from the committed share
    for name, (request_id, public_key) in made.items():
        req = net.wait_request("key", request_id, timeout_s=90)
        assert bytes(req.public_key) == public_key, name
    net.made = made


def test_signatures_with_the_live_parties(net) -> None:
    sign_every_key(net, b"signed while party 2 is down ")


def test_controllers_alone_make_keys_with_the_live_parties(net) -> None:
    """No direct jobs: each live controller sends the parties its daemon sees live (controller/quorum.py,
    keygen_parties) and the keys are fulfilled, and sign, while party 2 stays down."""
    for name in KEY_TYPES:
        request_id = net.request_key(name)
        req = net.wait_request("key", request_id, timeout_s=90)
        assert req.status.endswith("FULFILLED"), (name, req.status)
        key = net.key_for_request(request_id)
        data = b"made by the controllers alone".ljust(32, b".")
        signed = net.wait_request("sign", net.request_signature(key.id, data), timeout_s=180)
        verify_independently(name, bytes(req.public_key), data, bytes(signed.signed_data[0].signed_data))


def test_the_party_returns_is_repaired_and_signs_with_its_shares(net) -> None:
    net.start_role(DOWN, "party")
    net.wait_party_ready(DOWN)
    net.start_role(DOWN, "controller")
    deadline = time.monotonic() + 120
    st: dict = {}
    while time.monotonic() < deadline:
        try:
            st = status(net, DOWN)
        except JobFailed:  # a loaded host: the party busy with its repairs answers Status late; ask again
            time.sleep(1)
            continue
        if st["repaired_keys"] >= len(net.made) and not st["missing_keys"] and not st["burned_pairs"]:
            break
        time.sleep(1)
    assert st and st["repaired_keys"] >= len(net.made) and not st["missing_keys"], st
    assert not st["burned_pairs"], st  # every DKLs23 OT pair with parties 1 and 3 set up
    # party 1 goes away: only the quorum {2, 3} can sign, so party 2's repaired shares are used
    net.stop_role(1, "controller")
    net.stop_role(1, "party", kill=True)
    sign_every_key(net, b"signed by the repaired party ")
