"""The store's life-cycle reads (pending_of, latest_version) on a real token and SQLite file."""

from __future__ import annotations

from dataclasses import replace

from appliance.hsm.store import ShareState, ShareStore, open_share, put_share
from tests.hsm.test_store import IDS, META


def test_pending_of_and_latest_version(hsm, tmp_path):
    store = ShareStore(tmp_path / "shares.sqlite", hsm)
    try:
        assert store.pending_of(*IDS) is None and store.latest_version(*IDS) == 0
        put_share(store, hsm, META, b"v1")
        assert store.pending_of(*IDS).meta.share_version == 1
        store.commit(*IDS, 1)
        assert store.pending_of(*IDS) is None and store.latest_version(*IDS) == 1
        put_share(store, hsm, replace(META, share_version=2), b"v2")
        pending = store.pending_of(*IDS)
        assert pending.state is ShareState.PENDING and open_share(hsm, pending) == b"v2"
        store.retire(*IDS, 2)  # an abandoned refresh: the next one must use a higher version
        assert store.pending_of(*IDS) is None and store.latest_version(*IDS) == 2
        store.delete_retired(*IDS, 2)
        assert store.latest_version(*IDS) == 2  # the head remembers it after the row is gone
    finally:
        store.close()
