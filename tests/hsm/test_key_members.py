"""Signing sets per key (mpc_party/members.py, controller/members.py): a key signs with its own
holders and threshold, read from the party's authenticated share (real token, real SQLite), and the
controller reads them from its party over the real local socket. Before a key is reshared it keeps
its old set and threshold; after the commit, the new ones; a party without a share is in no quorum."""

from __future__ import annotations

import secrets

import pytest

from appliance.controller.members import KeyMembers as ControllerMembers
from appliance.hsm.store import ShareMeta, ShareStore, put_share
from appliance.mpc_party.local_api import LocalServer, PartyClient
from appliance.mpc_party.members import KeyMembers
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23.local import run_dkg as dkls_dkg
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost.local import run_dkg as frost_dkg
from appliance.rules.attempts import quorum
from tests.mpc.test_reshare import reshare_dkls, reshare_frost

KEYRING = "keyring1k3vx7h9"
EDDSA, ECDSA = dispatch.EDDSA, dispatch.ECDSA_TYPES[0]


@pytest.fixture
def store(hsm, tmp_path):
    opened = ShareStore(tmp_path / "shares.sqlite", hsm)
    yield opened
    opened.close()


def two_of_three_then_three_of_four(key_type: str) -> tuple[dict, dict]:
    """A real 2-of-3 key and its resharing to 3-of-4 by dealers 1 and 2 (same public key)."""
    if key_type == EDDSA:
        old = {s.party_id: s for s in frost_dkg(3, 2, FROST_ED25519)}
        return old, reshare_frost({1: old[1], 2: old[2]}, (1, 2), (1, 2, 3, 4), 3)
    old = {k.party_id: k for k in dkls_dkg(3, 2)}
    return old, reshare_dkls({1: old[1], 2: old[2]}, (1, 2), (1, 2, 3, 4), 3)


def store_version(store, hsm, key_type: str, share, party: int, version: int, threshold: int) -> ShareMeta:
    public_key, plaintext = dispatch.export_share(key_type, share)
    meta = ShareMeta(KEYRING, 7, key_type, threshold, party, public_key, version)
    put_share(store, hsm, meta, plaintext)
    return meta


@pytest.mark.parametrize("key_type", [EDDSA, ECDSA])
def test_a_key_signs_with_its_own_holders_before_and_after_its_reshare(hsm, store, key_type):
    old, new = two_of_three_then_three_of_four(key_type)
    meta = store_version(store, hsm, key_type, old[1], 1, 1, 2)
    store.commit(KEYRING, 7, 1, 1)
    members = KeyMembers(store, hsm, KEYRING, 1)
    assert members.of(meta.group_public_key) == ((1, 2, 3), 2)
    store_version(store, hsm, key_type, new[1], 1, 2, 3)  # reshared, pending: the old set still signs
    assert members.of(meta.group_public_key) == ((1, 2, 3), 2)
    assert len(quorum([1, 2, 3], 2, 11, 0)) == 2
    store.commit(KEYRING, 7, 1, 2)
    assert members.of(meta.group_public_key) == ((1, 2, 3, 4), 3)
    signers = quorum([1, 2, 3, 4], 3, 11, 0)
    assert len(signers) == 3 and set(signers) <= {1, 2, 3, 4}
    assert KeyMembers(store, hsm, KEYRING, 4).of(meta.group_public_key) is None  # party 4 holds none here


def test_controller_reads_each_keys_members_over_the_local_socket(tmp_path):
    keys = [{"public_key": "02" + "11" * 32, "threshold": 2, "parties": [1, 2, 3]}]
    server = LocalServer(tmp_path / "party.sock", lambda job: b"", lambda: {}, keys=lambda: keys).start()
    now = [0.0]
    try:
        members = ControllerMembers(PartyClient(tmp_path / "party.sock"), max_age_s=5.0, clock=lambda: now[0])
        old_key, new_key = bytes.fromhex(keys[0]["public_key"]), b"\x03" + secrets.token_bytes(32)
        assert members.of(old_key) == ((1, 2, 3), 2)
        assert members.of(new_key) is None  # no share here: this party is in no quorum of it
        keys[0] = {**keys[0], "threshold": 3, "parties": [1, 2, 3, 4]}  # the party committed a reshare
        keys.append({"public_key": new_key.hex(), "threshold": 3, "parties": [2, 3, 4]})
        now[0] = 0.5
        assert members.of(new_key) is None  # a miss re-reads at most once a second
        now[0] = 1.5
        assert members.of(new_key) == ((2, 3, 4), 3)
        now[0] = 7.0
        assert members.of(old_key) == ((1, 2, 3, 4), 3)  # the listing is re-read once it is old
    finally:
        server.stop()
