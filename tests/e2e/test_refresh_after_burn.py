"""A refresh at once after an abort that burns an OT pair: party 2 runs the bit-flip attack
(tests/e2e/evil_party.py); the first honest party whose OT-extension check fails burns the pair and
invites every holder to refresh the key there and then (no slot, no operator). Every party ends with
the refreshed key, the burn mark is gone, and the key keeps signing (verified independently)."""

from __future__ import annotations

import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import PartyClient

pytestmark = pytest.mark.slow
EVIL, HONEST = 2, (1, 3)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("burn")
    keyring = LocalKeyring(root, LocalSettings(attempt_blocks=30, default_btl=200)).setup()
    keyring.start({EVIL: ("tests.e2e.evil_party",
                          {"ZRKEYRING_EVIL": "bitflip", "ZRKEYRING_EVIL_LOG": str(root / "evil.jsonl")})})
    yield keyring
    keyring.close()


def sign(net, key, data: bytes) -> None:
    req = net.wait_request("sign", net.request_signature(key.id, data), timeout_s=120)
    verify_independently("ecdsa", bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))


def status(net, index: int) -> dict:
    client = PartyClient(net.host(index).socket)
    try:
        return client.status(timeout=5)
    finally:
        client.close()


def test_burned_pair_refreshes_the_key_at_once(net) -> None:
    request_id = net.request_key("ecdsa")
    net.wait_request("key", request_id, timeout_s=60)
    key = net.key_for_request(request_id)
    for n in range(40):
        sign(net, key, f"burn {n}".encode().ljust(32, b".")[:32])
        if any("BURNED" in net.host(i).log("party").read_text() for i in HONEST):
            break
    else:
        pytest.fail("40 sessions and no honest check failed: the attack did not run")
    deadline = time.monotonic() + 60
    while not all(status(net, i)["refresh"]["refreshed"] + status(net, i)["refresh"]["committed"] >= 1
                  for i in (1, 2, 3)):
        assert time.monotonic() < deadline, [status(net, i)["refresh"] for i in (1, 2, 3)]
        time.sleep(0.5)
    for i in (1, 2, 3):
        log = net.host(i).log("party").read_text()
        assert "at once" in log and f"key {request_id} refreshed" in log, log[-3000:]
        assert status(net, i)["refresh"]["urgent"] >= 1
    deadline = time.monotonic() + 60
    while any(status(net, i)["burned_pairs"] for i in HONEST):  # the refresh (or the re-setup) cleared it
        assert time.monotonic() < deadline
        time.sleep(0.5)
    sign(net, key, b"after the refresh".ljust(32, b"."))
