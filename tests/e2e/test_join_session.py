"""A party joins a signing session a peer opened, without its own controller (mpc_party/join.py).

Real processes: chain node, three party daemons with SoftHSM tokens, mutual-TLS gRPC. The controllers
are stopped after the keys are made, so nothing schedules party 2's side of a session: before the
hello, party 1's job waited out the join timeout (under a backlog that was every job slot of every
controller, docs/performance.md "Joining a peer's session"). Now party 2 reads the request from the
chain itself and joins; its own later job for the same session gets the same signature at once, and its daemon lists the
signature for its controller to post (`Joined`).
What a joiner refuses (requests its own rules would not sign, a peer naming many signer sets) is in
tests/party/test_join.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import JobFailed, PartyClient, SignJob
from tests.e2e.test_metrics import metrics_url, scrape, total

KEY_TYPES = {"ecdsa": "KEY_TYPE_ECDSA_SECP256K1", "ed25519": "KEY_TYPE_EDDSA_ED25519"}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    keyring = LocalKeyring(tmp_path_factory.mktemp("join"), LocalSettings()).setup().start()
    keys = {}
    for name in KEY_TYPES:
        request_id = keyring.request_key(name)
        keyring.wait_request("key", request_id)
        keys[name] = keyring.key_for_request(request_id)
    for i in (1, 2, 3):
        keyring.stop_role(i, "controller")  # from here on only this test asks the parties for jobs
    yield keyring, keys
    keyring.close()


def _joins(net: LocalKeyring, index: int, outcome: str) -> float:
    return total(scrape(metrics_url(net.host(index), "party")), "zrkeyring_party_peer_session_joins_total",
                 outcome=outcome)


@pytest.mark.parametrize("name", list(KEY_TYPES))
def test_a_session_one_party_opens_is_joined_by_its_peer_without_its_controller(net, name: str) -> None:
    keyring, keys = net
    key = keys[name]
    data = hashlib.sha256(f"join {name}".encode()).digest()
    request_id = keyring.request_signature(key.id, data)
    job = SignJob(request_id, KEY_TYPES[name], key.id, bytes(key.public_key), data, (1, 2), 0)
    joined_before = _joins(keyring, 2, "joined")
    opener, peer = PartyClient(keyring.host(1).socket), PartyClient(keyring.host(2).socket)
    try:
        signature = opener.run(job, timeout=30)  # only party 1 is asked: party 2 joins on the hello
        verify_independently(name, bytes(key.public_key), data, signature)
        assert peer.run(job, timeout=5) == signature  # party 2's result of the same session, no new one
        # party 2's controller learns of the joined session from its own daemon (mpc_party/joined.py)
        boot, cursor, found = peer.joined(0)
        assert (request_id, signature) in found and cursor >= 1 and boot
        assert peer.joined(cursor)[1:] == (cursor, [])
        # party 3 now opens {2, 3} for the request: party 2 has signed it and hands party 3 the signature
        # in a result note, which party 3 verifies and ends its session with (no join timeout)
        third = PartyClient(keyring.host(3).socket)
        try:
            started = time.monotonic()
            assert third.run(dataclasses.replace(job, signers=(2, 3)), timeout=30) == signature
            assert time.monotonic() - started < keyring.settings.join_timeout_s
        finally:
            third.close()
    finally:
        opener.close()
        peer.close()
    assert _joins(keyring, 2, "joined") == joined_before + 1
    assert _joins(keyring, 2, "answered") >= 1
    runs = re.findall(rf"party 2 runs sign request {request_id} ", keyring.host(2).log("party").read_text())
    assert len(runs) == 1  # one session on party 2, started by the hello


def test_without_join_workers_the_opener_waits_out_the_join_timeout(net) -> None:
    """What the hello fixed: party 3 is restarted with join_workers = 0, and party 1's session with it
    is given up at the join timeout, naming party 3."""
    keyring, keys = net
    config = keyring.host(3).config("party")
    original = config.read_text()
    keyring.stop_role(3, "party")
    config.write_text(original.replace("[party]\n", "[party]\njoin_workers = 0\n", 1))
    keyring.start_role(3, "party")
    keyring.wait_party_ready(3)
    try:
        key = keys["ed25519"]
        data = b"join off"
        request_id = keyring.request_signature(key.id, data)
        job = SignJob(request_id, KEY_TYPES["ed25519"], key.id, bytes(key.public_key), data, (1, 3), 0)
        client = PartyClient(keyring.host(1).socket)
        try:
            with pytest.raises(JobFailed, match=r"no answer from parties \[3\]"):
                client.run(job, timeout=30)
        finally:
            client.close()
    finally:
        keyring.stop_role(3, "party")
        config.write_text(original)
        keyring.start_role(3, "party")
        keyring.wait_party_ready(3)
