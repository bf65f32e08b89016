"""Pending shares that never become final (issue 14): discarded, replaced, destroyed as orphans,
and never blocking the next attempt ("version 1 is not newer than stored 1")."""

from __future__ import annotations

from dataclasses import replace

from appliance.hsm.store import ShareState, ShareStore, open_share, put_share
from tests.hsm.test_store import IDS, META, store  # noqa: F401 - the fixture


def test_a_discarded_pending_share_does_not_block_a_fresh_attempt(hsm, store):  # noqa: F811
    put_share(store, hsm, META, b"attempt 0")
    store.put_notes(*IDS, 1, b"notes of attempt 0")
    store.discard(*IDS, 1)
    assert store.versions(*IDS) == [] and store.notes(*IDS, 1) is None
    # the fresh attempt made another key under the same request id: a new version, new key fields
    fresh = replace(META, group_public_key=b"\x03" + b"\x44" * 32, share_version=store.next_version(*IDS))
    assert fresh.share_version == 2  # a version number is never reused
    put_share(store, hsm, fresh, b"attempt 1")
    store.put_notes(*IDS, 2, b"evidence")
    store.commit(*IDS, 2)
    active = store.active(*IDS)
    assert active.meta.group_public_key == fresh.group_public_key and open_share(hsm, active) == b"attempt 1"
    assert store.key_notes(*IDS) == b"evidence"


def test_pending_listing_and_heads_agree(hsm, store):  # noqa: F811
    put_share(store, hsm, META, b"pending")
    assert [r.state for r in store.all_pending()] == [ShareState.PENDING]
    assert store.pending(*IDS).meta.share_version == 1
    (head,) = store.heads()
    assert (head.active_version, head.pending_version) == (0, 1)


def test_destroy_key_removes_every_version_and_survives_reopen(hsm, store, tmp_path):  # noqa: F811
    put_share(store, hsm, META, b"v1")
    store.commit(*IDS, 1)
    put_share(store, hsm, replace(META, share_version=2), b"v2")
    assert store.destroy_key(*IDS) == 2
    assert store.active(*IDS) is None and store.pending(*IDS) is None
    again = ShareStore(tmp_path / "shares.sqlite", hsm)
    try:
        assert again.versions(*IDS) == [] and again.next_version(*IDS) == 3
    finally:
        again.close()
