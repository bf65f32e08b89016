"""One real local keyring per test module: chain node, three SoftHSM tokens, party daemons, controllers."""

from __future__ import annotations

import pytest

from appliance.local.localnet import LocalKeyring, LocalSettings


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    net = LocalKeyring(tmp_path_factory.mktemp("keyring"), LocalSettings()).setup().start()
    yield net
    net.close()


@pytest.fixture(scope="module")
def keys(keyring):
    """One fulfilled key of each type: {name: chain Key}."""
    out = {}
    for key_type in ("ecdsa", "bitcoin", "ed25519"):
        request_id = keyring.request_key(key_type)
        keyring.wait_request("key", request_id)
        out[key_type] = keyring.key_for_request(request_id)
    return out
