"""The controller's deadlines come from the queries that fill them, against a real node process."""

from __future__ import annotations

import pytest

from appliance.controller.deadlines import Deadlines
from appliance.rules.requests import key_matches_request
from tests.chain.conftest import open_world

world = pytest.fixture(scope="module", name="world")(open_world)


def test_key_request_deadline_comes_from_the_by_id_query(world) -> None:
    """KeyRequests leaves mpc_btl empty (as upstream): the deadline is read by id once and remembered."""
    keyring = world.keyring(parties=1)
    (request_id,) = world.key_requests(keyring)
    (listed,) = [r for r in world.client.key_requests(keyring) if r.id == request_id]
    assert listed.mpc_btl == 0
    deadlines = Deadlines(world.client)
    expected = world.client.key_request(request_id).mpc_btl
    assert expected > 0 and deadlines.of("key", listed) == expected
    deadlines.chain = None  # remembered: no second query (a query now would raise)
    assert deadlines.of("key", listed) == expected
    deadlines.forget(set())
    assert deadlines._known == {}


def test_sign_request_deadline_is_taken_from_the_list(world) -> None:
    keyring = world.keyring(parties=1)
    from tests.chain.conftest import digest
    from tests.chain.test_keeper_rules import new_key

    key_id, _ = new_key(world, keyring)
    sign_id = world.sign_request(key_id, [digest("deadline")])
    (listed,) = [r for r in world.client.sign_requests(keyring) if r.id == sign_id]
    assert Deadlines(None).of("sign", listed) == listed.mpc_btl > 0


def test_mixed_key_types_give_one_reason_from_chain_data() -> None:
    assert key_matches_request("KEY_TYPE_ECDSA_SECP256K1", "KEY_TYPE_ECDSA_SECP256K1", 1) == ""
    reason = key_matches_request("KEY_TYPE_EDDSA_ED25519", "KEY_TYPE_ECDSA_SECP256K1", 7)
    assert reason == "key 7 is KEY_TYPE_EDDSA_ED25519 but the request is for KEY_TYPE_ECDSA_SECP256K1"
