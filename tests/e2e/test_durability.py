"""Controllers killed (SIGKILL) at random points while 50 requests are answered: nothing lost, nothing twice."""

from __future__ import annotations

import secrets
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from chain_client.client import msg_responses
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx

REQUESTS = 50
BATCH = 10
LIFETIME_BLOCKS = 300  # 60 s at 0.2 s blocks: what is tested is loss and duplication, not latency


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    """This module's keyring gives requests a longer lifetime than the shared one: five controller kills
    and restarts within a minute on a loaded 2-core host must not turn into expiries that hide (or fake)
    a lost or doubled answer."""
    net = LocalKeyring(tmp_path_factory.mktemp("durability"),
                       LocalSettings(default_btl=LIFETIME_BLOCKS)).setup().start()
    yield net
    net.close()


def request_batch(keyring, key_id: int, digests: list[bytes]) -> list[int]:
    """The workspace owner asks for several signatures in one transaction."""
    owner = keyring.owner.address()
    msgs = [treasury_tx.MsgNewSignatureRequest(creator=owner, key_ids=[key_id], data_for_signing=d.hex())
            for d in digests]
    response = keyring.client.send(keyring.owner, msgs)
    return [r.sig_req_id for r in msg_responses(response, [treasury_tx.MsgNewSignatureRequestResponse] * len(msgs))]


def test_controllers_killed_at_random_points_lose_and_duplicate_nothing(keyring, keys) -> None:
    chance = secrets.SystemRandom()
    key = keys["ecdsa"]
    digests = [secrets.token_bytes(32) for _ in range(REQUESTS)]
    ids: list[int] = []
    kills = 0
    for start in range(0, REQUESTS, BATCH):
        ids += request_batch(keyring, key.id, digests[start:start + BATCH])
        victim = chance.choice([1, 2, 3])
        time.sleep(chance.uniform(0.0, 0.8))  # anywhere: planning, a session, a post in flight
        keyring.stop_role(victim, "controller", kill=True)
        kills += 1
        time.sleep(chance.uniform(0.0, 0.5))
        keyring.start_role(victim, "controller")
    assert kills == REQUESTS // BATCH
    for request_id, digest in zip(ids, digests, strict=True):
        req = keyring.wait_request("sign", request_id, timeout_s=120)  # raises if REJECTED
        verify_independently("ecdsa", bytes(key.public_key), digest, bytes(req.signed_data[0].signed_data))
        creators = [s.creator for s in req.keyring_party_sigs]
        assert len(creators) == len(set(creators)), f"request {request_id}: a party posted twice"
    # Every controller's journal ends with every request settled.
    time.sleep(1.0)
    for host in keyring.hosts:
        log = host.log("controller").read_text()
        assert "already sent a fulfilment" not in log
