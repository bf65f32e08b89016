"""Share store on real SQLite files with shares sealed by a real token."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import replace

import pytest

from appliance.hsm import PinIncorrectError, SealError
from appliance.hsm.softhsm import write_hsm_config
from appliance.hsm.store import (
    ShareMeta,
    ShareState,
    ShareStore,
    StoreError,
    open_share,
    put_share,
    share_aad,
)
from tests.hsm.conftest import connect

META = ShareMeta(
    keyring="keyring1k3vx7h9",
    key_id=42,
    key_type="ecdsa",
    threshold=2,
    party_index=1,
    group_public_key=b"\x02" + b"\x33" * 32,
    share_version=1,
)
IDS = (META.keyring, META.key_id, META.party_index)


@pytest.fixture
def store(hsm, tmp_path):
    opened = ShareStore(tmp_path / "shares.sqlite", hsm)
    yield opened
    opened.close()


def test_pending_does_not_replace_active_until_commit(hsm, store):
    put_share(store, hsm, META, b"share v1")
    assert store.active(*IDS) is None
    store.commit(*IDS, 1)
    put_share(store, hsm, replace(META, share_version=2), b"share v2")
    active = store.active(*IDS)
    assert active.meta.share_version == 1 and open_share(hsm, active) == b"share v1"
    assert store.get(*IDS, 2).state is ShareState.PENDING
    store.commit(*IDS, 2)
    active = store.active(*IDS)
    assert active.meta.share_version == 2 and open_share(hsm, active) == b"share v2"
    assert store.get(*IDS, 1) is None  # the predecessor is destroyed once its successor is committed
    assert [r.meta.share_version for r in store.versions(*IDS)] == [2]


def test_retire_is_explicit_and_delete_needs_it(hsm, store):
    put_share(store, hsm, META, b"share v1")
    store.commit(*IDS, 1)
    with pytest.raises(StoreError, match="retire it before deleting"):
        store.delete_retired(*IDS, 1)
    put_share(store, hsm, replace(META, share_version=2), b"abandoned refresh")
    store.retire(*IDS, 2)  # an abandoned pending version
    assert store.active(*IDS).meta.share_version == 1
    with pytest.raises(StoreError, match="only a pending one can be committed"):
        store.commit(*IDS, 2)
    store.delete_retired(*IDS, 2)
    assert [r.meta.share_version for r in store.versions(*IDS)] == [1]
    store.retire(*IDS, 1)
    assert store.active(*IDS) is None


def test_versions_only_move_forward(hsm, store):
    put_share(store, hsm, replace(META, share_version=3), b"v3")
    for version in (1, 3):
        with pytest.raises(StoreError, match="not newer"):
            put_share(store, hsm, replace(META, share_version=version), b"old")
    with pytest.raises(StoreError, match="no share"):
        store.commit(*IDS, 9)


def test_store_survives_reopen(hsm, tmp_path):
    path = tmp_path / "s.sqlite"
    first = ShareStore(path, hsm)
    put_share(first, hsm, META, b"durable")
    first.commit(*IDS, 1)
    first.close()
    again = ShareStore(path, hsm)
    assert open_share(hsm, again.active(*IDS)) == b"durable"
    again.close()


@pytest.mark.parametrize(
    "change",
    [
        {"keyring": "keyring1other"},
        {"key_id": 43},
        {"party_index": 2},
        {"key_type": "bitcoin"},
        {"share_version": 2},
        {"threshold": 3},
        {"group_public_key": b"\x03" + b"\x33" * 32},
    ],
)
def test_aad_binds_every_field(hsm, change):
    blob = hsm.seal(b"share", share_aad(META))
    with pytest.raises(SealError, match="AAD"):
        hsm.unseal(blob, share_aad(replace(META, **change)))


def test_aad_encoding_is_unambiguous():
    a = replace(META, keyring="ab", key_type="cde")
    b = replace(META, keyring="abc", key_type="de")
    assert share_aad(a) != share_aad(b)
    assert share_aad(META).startswith(b"\x00\x16zrkeyring/share-aad/v2")


def test_swapped_row_metadata_fails_to_unseal(hsm, store):
    put_share(store, hsm, META, b"party one's share")
    other = replace(META, party_index=2)
    put_share(store, hsm, other, b"party two's share")
    db = sqlite3.connect(store.path)
    sealed = db.execute("SELECT sealed FROM shares WHERE party_index=1").fetchone()[0]
    db.execute("UPDATE shares SET sealed=? WHERE party_index=2", (sealed,))
    db.commit()
    db.close()
    with pytest.raises(SealError):
        open_share(hsm, store.get(other.keyring, other.key_id, 2, 1))


def _all_bytes(*roots):
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    yield path, handle.read()


def test_no_plaintext_share_on_disk(hsm, store, softhsm_token):
    shares = [hsm.random(32) for _ in range(100)]
    for index, share in enumerate(shares):
        meta = replace(META, key_id=1000 + index)
        put_share(store, hsm, meta, share)
        store.commit(meta.keyring, meta.key_id, meta.party_index, 1)
    sqlite_files = [p for p in store.path.parent.iterdir() if p.name.startswith(store.path.name)]
    assert {p.name for p in sqlite_files} >= {"shares.sqlite", "shares.sqlite-wal", "shares.sqlite-shm"}
    scanned = 0
    for path, data in _all_bytes(softhsm_token.token_dir, store.path.parent):
        scanned += 1
        for share in shares:
            assert share not in data, f"plaintext share bytes found in {path}"
            assert share[:16] not in data and share[16:] not in data, f"half a share in {path}"
    assert scanned >= 5
    assert all(open_share(hsm, store.active(META.keyring, 1000 + i, 1)) == s for i, s in enumerate(shares))


def test_pin_never_in_logs_or_files(softhsm_token, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    with pytest.raises(PinIncorrectError) as wrong:
        connect(replace(softhsm_token, user_pin=softhsm_token.user_pin + "x"))
    (tmp_path / "data").mkdir()
    with connect(softhsm_token) as hsm:
        hsm.provision()
        store = ShareStore(tmp_path / "data" / "shares.sqlite", hsm)
        put_share(store, hsm, META, b"share")
        hsm.submit(lambda link: link.session.close()).result()  # forces a logged re-login
        assert open_share(hsm, store.get(*IDS, 1)) == b"share"
        texts = [repr(hsm), repr(hsm._link), str(hsm.status().lines())]
        store.close()
    pin = softhsm_token.user_pin
    assert "reopening" in caplog.text  # the re-login path did log
    for text in [caplog.text, str(wrong.value), repr(softhsm_token), *texts]:
        assert pin not in text
    pin_file = config.parent / f"{softhsm_token.label}.pin"
    assert oct(pin_file.stat().st_mode & 0o777) == "0o600"
    for path, data in _all_bytes(softhsm_token.token_dir, tmp_path / "data"):
        assert pin.encode() not in data, f"PIN found in {path}"
    assert pin not in config.read_text()


def test_active_share_found_by_group_public_key(hsm, store):
    put_share(store, hsm, META, b"share v1")
    assert store.active_by_public_key(META.keyring, META.group_public_key, 1) is None  # pending only
    store.commit(*IDS, 1)
    found = store.active_by_public_key(META.keyring, META.group_public_key, 1)
    assert found is not None and open_share(hsm, found) == b"share v1"
    assert store.active_by_public_key(META.keyring, b"\x03" + b"\x33" * 32, 1) is None
    assert store.active_by_public_key("keyring1other", META.group_public_key, 1) is None
