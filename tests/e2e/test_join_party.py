"""A keyring that grows a host and replaces a lost one, with real processes (issue 15).

One 2-of-3 keyring with keys of every type, signature requests submitted all along:

1. a fourth host is set up the operator's way (`LocalKeyring.add_host`: `hsm init`, `cluster add-party`,
   `cluster roster`, `cluster seal-key`, the new roster on every host, funded) and the admin adds it on
   chain raising party_threshold to 3: every key is reshared to 3-of-4 with party 4 as a joining
   receiver, same public keys, and party 4's controller lists each key as 3-of-4 among [1, 2, 3, 4];
2. host 1 is wiped (token and data gone): with it down every signature comes from {2, 3, 4}, so the
   joiner's signature shares take part; a key requested now is made among the chain's parties with
   the chain's threshold (3), not the roster's start-up one (2);
3. a replacement host 5 is set up the same way and the admin, in one transaction, adds it and removes
   party 1: the holders 2, 3, 4 reshare every key to {2, 3, 4, 5}, 3-of-4, same public keys; with host 2
   stopped the quorum is {3, 4, 5}, so the new host signs.

Every signature is verified with an independent library (cryptography / coincurve / PyNaCl) and every
signature request submitted during the changes is fulfilled.
"""

from __future__ import annotations

import secrets
import threading

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import PartyClient
from tests.e2e.test_reshare_chain import reshared, share_rows, sign_and_verify, wait_for

pytestmark = pytest.mark.slow

PERIOD, WINDOW = 80, 30
TYPES = ("ecdsa", "bitcoin", "ed25519")
RESHARE_TIMEOUT_S = 3 * PERIOD * 0.2 + 240  # three periods of 0.2 s blocks, plus a loaded host's slack


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    settings = LocalSettings(refresh_period_blocks=PERIOD, refresh_window_blocks=WINDOW, attempt_blocks=30,
                             round_timeout_s=4.0, default_btl=400)
    net = LocalKeyring(tmp_path_factory.mktemp("join"), settings).setup().start()
    yield net
    net.close()


def holders_seen_by(net: LocalKeyring, index: int) -> set[tuple[tuple[int, ...], int]]:
    """(holders, threshold) of every key, from party `index`'s own shares (what its controller signs with)."""
    client = PartyClient(net.host(index).socket)
    try:
        return {(tuple(k["parties"]), int(k["threshold"])) for k in client.keys()}
    finally:
        client.close()


class Load:
    """Signature requests, one a second, round-robin over the keys, while the keyring changes."""

    def __init__(self, net: LocalKeyring, keys: dict) -> None:
        self.net, self.keys = net, keys
        self.submitted: list[tuple[str, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key_type = TYPES[i % len(TYPES)]
            data = secrets.token_bytes(32)
            try:
                self.submitted.append((key_type, self.net.request_signature(self.keys[key_type].id, data), data))
            except Exception:  # noqa: S112 - a tx refused while the owner's sequence races: the next one goes
                continue
            i += 1
            self._stop.wait(1.0)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_party_added_then_lost_host_replaced_every_key_follows_the_chain(keyring) -> None:
    net = keyring
    keys = {}
    for key_type in TYPES:
        request_id = net.request_key(key_type)
        net.wait_request("key", request_id, timeout_s=120)
        keys[key_type] = net.key_for_request(request_id)
    with Load(net, keys) as load:
        net.add_host(4, increase_threshold=True)  # MsgAddKeyringParty with increase_threshold
        chain = net.client.keyring(net.keyring)
        assert len(chain.parties) == 4 and chain.party_threshold == 3
        wait_for(lambda: reshared(net, (1, 2, 3, 4), 3, len(keys)),
                 f"keys not reshared to 3-of-4: {[share_rows(net, i) for i in (1, 2, 3, 4)]}", RESHARE_TIMEOUT_S)
        assert holders_seen_by(net, 4) == {((1, 2, 3, 4), 3)}

        net.wipe_host(1)  # token and data gone: every signature now needs the joiner
        sign_and_verify(net, keys)
        later = net.request_key("ed25519")  # made among the chain's parties with the chain's threshold
        net.wait_request("key", later, timeout_s=180)
        assert {rows[-1][1] for i in (2, 3, 4) for rows in [share_rows(net, i)[later]]} == {3}
        keys_after = {**keys, "ed25519-later": net.key_for_request(later)}

        net.add_host(5, replacing=1)  # one tx: MsgAddKeyringParty(5) + MsgRemoveKeyringParty(1)
        chain = net.client.keyring(net.keyring)
        assert sorted(chain.parties) == sorted(net.host(i).chain_address for i in (2, 3, 4, 5))
        assert chain.party_threshold == 3
        wait_for(lambda: reshared(net, (2, 3, 4, 5), 3, len(keys_after)),
                 f"keys not reshared to {{2, 3, 4, 5}}: {[share_rows(net, i) for i in (2, 3, 4, 5)]}",
                 RESHARE_TIMEOUT_S)
        assert holders_seen_by(net, 5) == {((2, 3, 4, 5), 3)}
    net.kill_host(2)  # the quorum is now {3, 4, 5}: the replacement host's shares sign
    sign_and_verify(net, keys)
    data = secrets.token_bytes(48)
    req = net.wait_request("sign", net.request_signature(keys_after["ed25519-later"].id, data), timeout_s=120)
    verify_independently("ed25519", bytes(keys_after["ed25519-later"].public_key), data,
                         bytes(req.signed_data[0].signed_data))
    for key_type, request_id, data in load.submitted:  # nothing lost during either change
        req = net.wait_request("sign", request_id, timeout_s=180)
        verify_independently(key_type, bytes(keys[key_type].public_key), data, bytes(req.signed_data[0].signed_data))
    assert len(load.submitted) >= 5
