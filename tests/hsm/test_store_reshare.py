"""A reshared key in the store: a new version with another threshold (and party set) next to the old
one, on a real token and SQLite file, with every integrity check still in force."""

from __future__ import annotations

from dataclasses import replace

import pytest

from appliance.hsm.store import ShareState, ShareStore, StoreError, StoreTamperError, open_share, put_share
from tests.hsm.test_store import IDS, META
from tests.hsm.test_store_auth import edit


@pytest.fixture
def store(hsm, tmp_path):
    opened = ShareStore(tmp_path / "shares.sqlite", hsm)
    yield opened
    opened.close()


def reshared(store: ShareStore, hsm) -> None:
    """2-of-n version 1 active, 3-of-n version 2 pending (a reshare to a higher threshold)."""
    put_share(store, hsm, META, b"2-of-3 share")
    store.commit(*IDS, 1)
    put_share(store, hsm, replace(META, share_version=2, threshold=3), b"3-of-4 share")


def test_reshare_to_another_threshold_is_stored_pending_then_committed(hsm, store):
    reshared(store, hsm)
    active, pending = store.active(*IDS), store.pending_of(*IDS)
    assert (active.meta.threshold, active.meta.share_version) == (2, 1)  # the old set keeps signing
    assert (pending.meta.threshold, pending.state) == (3, ShareState.PENDING)
    assert [r.meta.threshold for r in store.versions(*IDS)] == [2, 3]
    assert store.active_by_public_key(META.keyring, META.group_public_key, META.party_index).meta.threshold == 2
    store.commit(*IDS, 2)
    active = store.active(*IDS)
    assert (active.meta.threshold, open_share(hsm, active)) == (3, b"3-of-4 share")
    assert store.get(*IDS, 1) is None  # the 2-of-3 share is destroyed on commit, as for a refresh


def test_reshare_survives_reopen(hsm, store, tmp_path):
    reshared(store, hsm)
    again = ShareStore(store.path, hsm)
    try:
        assert [(r.meta.share_version, r.meta.threshold, r.state) for r in again.versions(*IDS)] == [
            (1, 2, ShareState.ACTIVE), (2, 3, ShareState.PENDING)]
    finally:
        again.close()


def test_an_abandoned_reshare_leaves_the_old_threshold_active(hsm, store):
    reshared(store, hsm)
    store.retire(*IDS, 2)
    assert store.active(*IDS).meta.threshold == 2 and store.pending_of(*IDS) is None
    put_share(store, hsm, replace(META, share_version=3, threshold=3), b"second try")
    assert store.pending_of(*IDS).meta.share_version == 3


def test_a_reshare_cannot_change_the_key_type_or_public_key(hsm, store):
    put_share(store, hsm, META, b"v1")
    store.commit(*IDS, 1)
    with pytest.raises(StoreError, match="key type or group public key differs"):
        put_share(store, hsm, replace(META, share_version=2, key_type="eddsa"), b"v2")
    with pytest.raises(StoreError, match="key type or group public key differs"):
        put_share(store, hsm, replace(META, share_version=2, group_public_key=b"\x03" + b"\x44" * 32), b"v2")


@pytest.mark.parametrize("version", [1, 2])
def test_edited_threshold_of_either_version_is_refused(hsm, store, version):
    """The threshold column of each version is bound by that row's HSM state tag (and its blob's AAD)."""
    reshared(store, hsm)
    edit(store.path, ("UPDATE shares SET threshold=7 WHERE share_version=?", (version,)))
    with pytest.raises(StoreTamperError, match="fails its HSM state tag"):
        store.versions(*IDS)


def test_edited_head_threshold_is_refused(hsm, store):
    reshared(store, hsm)
    edit(store.path, ("UPDATE share_heads SET threshold=2", ()))
    with pytest.raises(StoreTamperError, match="do not match the HSM-sealed store root"):
        ShareStore(store.path, hsm).active(*IDS)
