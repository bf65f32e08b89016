"""The share store authenticates which key a row is and which version is active (issue 12, part 2).

Every test uses a real SoftHSM token, real SQLite files and real key shares (FROST Ed25519 and DKLs23
secp256k1 from the protocols' local runs); the attacker edits the file with plain `sqlite3`, as anyone
with write access to the party's data directory could.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.hsm.store import (
    SCHEMA_VERSION,
    ShareMeta,
    ShareState,
    ShareStore,
    StoreError,
    StoreTamperError,
    open_share,
    open_share_checked,
    put_share,
    share_aad,
    share_public_key,
)
from appliance.mpc_party.daemon import PartyDaemon
from appliance.mpc_party.local_api import JobFailed, SignJob
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23.local import refresh as dkls_refresh
from appliance.mpc_party.protocols.dkls23.local import run_dkg as dkls_dkg
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost.local import refresh as frost_refresh
from appliance.mpc_party.protocols.frost.local import run_dkg as frost_dkg
from tests.hsm import store_release1

KEYRING = "keyring1k3vx7h9"
EDDSA, ECDSA = dispatch.EDDSA, dispatch.ECDSA_TYPES[0]


@dataclass(frozen=True)
class Share:
    """One party-1 share of a real key: its metadata and the bytes the daemon would seal."""

    meta: ShareMeta
    plaintext: bytes
    secret: int

    def version(self, v: int) -> Share:
        return replace(self, meta=replace(self.meta, share_version=v))


def frost_share(key_id: int) -> tuple[Share, Share]:
    """Party 1's share of a fresh 2-of-3 Ed25519 key (version 1) and of its refresh (version 2)."""
    shares = frost_dkg(3, 2, FROST_ED25519)
    fresh = frost_refresh(shares)
    out = []
    for version, share in ((1, shares[0]), (2, fresh[0])):
        public_key, plaintext = dispatch.export_share(EDDSA, share)
        meta = ShareMeta(KEYRING, key_id, EDDSA, 2, 1, public_key, version)
        out.append(Share(meta, plaintext, share.secret))
    return out[0], out[1]


def dkls_shares(key_id: int) -> tuple[Share, Share]:
    """Party 1's share of a fresh 2-of-3 secp256k1 DKLs23 key (version 1) and of its refresh (v2)."""
    keys = dkls_dkg(3, 2)
    out = []
    for version, key in ((1, keys[0]), (2, dkls_refresh(keys)[0])):
        public_key, plaintext = dispatch.export_share(ECDSA, key)
        out.append(Share(ShareMeta(KEYRING, key_id, ECDSA, 2, 1, public_key, version), plaintext, key.secret))
    return out[0], out[1]


def dkls_share(key_id: int) -> Share:
    return dkls_shares(key_id)[0]


@pytest.fixture(scope="module")
def key_a() -> tuple[Share, Share]:
    return frost_share(1)


@pytest.fixture(scope="module")
def key_b() -> Share:
    return dkls_share(2)


@pytest.fixture
def store(hsm, tmp_path):
    opened = ShareStore(tmp_path / "shares.sqlite", hsm)
    yield opened
    opened.close()


def ids(share: Share) -> tuple[str, int, int]:
    return share.meta.keyring, share.meta.key_id, share.meta.party_index


def put_active(store: ShareStore, hsm, share: Share) -> None:
    put_share(store, hsm, share.meta, share.plaintext)
    store.commit(*ids(share), share.meta.share_version)


def edit(path: Path, *statements: tuple[str, tuple]) -> None:
    """The attacker: plain sqlite3 on the party's file, no HSM."""
    db = sqlite3.connect(path)
    for sql, params in statements:
        db.execute(sql, params)
    db.commit()
    db.close()


def snapshot(path: Path, to: Path) -> Path:
    """An older copy of the file, taken the way a backup would (WAL included, via the backup API)."""
    src, dst = sqlite3.connect(path), sqlite3.connect(to)
    src.backup(dst)
    src.close()
    dst.close()
    return to


def dump(path: Path) -> tuple[int, list[str]]:
    db = sqlite3.connect(path)
    out = db.execute("PRAGMA user_version").fetchone()[0], list(db.iterdump())
    db.close()
    return out


def store_files(path: Path) -> list[Path]:
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files
    return files


CHUNK = 32


def chunks(needle: bytes) -> list[bytes]:
    """The needle, and for long ones every 32-byte slice: SQLite splits a large blob over overflow pages
    (4-byte page links in between), so a whole blob never appears in one piece even when it is there."""
    if len(needle) <= 2 * CHUNK:
        return [needle]
    return [needle[i:i + CHUNK] for i in range(0, len(needle) - CHUNK + 1, CHUNK)]


def assert_absent(path: Path, needles: dict[str, bytes]) -> None:
    """No needle (nor any 32-byte piece of a long one) in the sqlite file, its -wal or its -shm."""
    for file in store_files(path):
        data = file.read_bytes()
        for what, needle in needles.items():
            for piece in chunks(needle):
                assert piece not in data, f"{what} (or a piece of it) found in {file.name}"


def secrets_of(share: Share) -> dict[str, bytes]:
    return {
        f"plaintext v{share.meta.share_version}": share.plaintext,
        f"secret BE v{share.meta.share_version}": share.secret.to_bytes(32, "big"),
        f"secret LE v{share.meta.share_version}": share.secret.to_bytes(32, "little"),
    }


# --- column swap ---------------------------------------------------------------------------------

@pytest.mark.parametrize("tables", [("shares",), ("share_heads",), ("shares", "share_heads")])
def test_group_public_key_swap_between_two_keys_is_refused(hsm, store, key_a, key_b, tables):
    a, b = key_a[0], key_b
    put_active(store, hsm, a)
    put_active(store, hsm, b)
    swaps = []
    for table in tables:
        update = f"UPDATE {table} SET group_public_key=? WHERE key_id=?"  # noqa: S608 (fixed names)
        swaps += [(update, (b.meta.group_public_key, 1)), (update, (a.meta.group_public_key, 2))]
    edit(store.path, *swaps)
    with pytest.raises(StoreTamperError, match=r"keyring1k3vx7h9/(1|2)/party 1|store root"):
        store.active_by_public_key(KEYRING, b.meta.group_public_key, 1)
    with pytest.raises(StoreTamperError):
        store.active(*ids(a))


def test_swapped_column_names_the_row(hsm, store, key_a, key_b):
    put_active(store, hsm, key_a[0])
    put_active(store, hsm, key_b)
    edit(store.path, ("UPDATE shares SET group_public_key=? WHERE key_id=2", (key_a[0].meta.group_public_key,)))
    with pytest.raises(StoreTamperError, match=r"share row keyring1k3vx7h9/2/party 1 version 1 fails its "
                                               r"HSM state tag"):
        store.active(*ids(key_b))
    assert open_share(hsm, store.active(*ids(key_a[0]))) == key_a[0].plaintext  # the other key is fine


def sign_job(share: Share) -> SignJob:
    return SignJob(request_id=7, key_type=share.meta.key_type, key_id=share.meta.key_id,
                   public_key=share.meta.group_public_key, data=b"\x11" * 32, signers=(1, 2))


def daemon_sign(store: ShareStore, hsm, job: SignJob) -> None:
    """The daemon's own signing session start (`_sign_session`, after the attempt and per-request checks
    of `_sign`, which need a chain) on this store and HSM; stops at the session runner, which must not be
    reached when the share is refused."""
    def unreachable(*_args):
        raise AssertionError("the daemon started a signing session with a refused share")

    party = SimpleNamespace(me=1, keyring=KEYRING, store=store, hsm=hsm, runner=SimpleNamespace(run=unreachable),
                            pairs=SimpleNamespace(check_signers=lambda *_args: None),
                            state=SimpleNamespace(claim_session=unreachable),
                            refresher=SimpleNamespace(key_lock=lambda _public_key: threading.Lock()))
    party._active_share = lambda *args: PartyDaemon._active_share(party, *args)
    PartyDaemon._sign_session(party, job, b"\x00" * 32)


def test_daemon_refuses_to_sign_request_b_with_key_a_after_a_swap(hsm, store, key_a, key_b):
    """The finding: swapping the column made a party sign request B's digest with key A."""
    put_active(store, hsm, key_a[0])
    put_active(store, hsm, key_b)
    edit(store.path,
         ("UPDATE shares SET group_public_key=? WHERE key_id=1", (key_b.meta.group_public_key,)),
         ("UPDATE shares SET group_public_key=? WHERE key_id=2", (key_a[0].meta.group_public_key,)))
    with pytest.raises(JobFailed, match=r"refused: .*share row keyring1k3vx7h9/2/party 1 version 1"):
        daemon_sign(store, hsm, sign_job(key_b))


def test_daemon_refuses_a_share_of_another_key(hsm, store, key_a, key_b):
    """A row whose metadata is consistent but whose blob is another key's share (what a mislabelled
    row from a bug, or a release-1 store migrated without the key check, would hold) is refused after
    unsealing, naming the row."""
    wrong = replace(key_a[0], meta=replace(key_a[0].meta, key_id=3, group_public_key=key_b.meta.group_public_key,
                                           key_type=ECDSA))
    put_active(store, hsm, replace(wrong, plaintext=dkls_share(9).plaintext))
    job = sign_job(wrong)
    with pytest.raises(JobFailed, match=r"refused: share row keyring1k3vx7h9/3/party 1 version 1 holds a "
                                        r"share of key [0-9a-f]{66}, but the job names key "
                                        + key_b.meta.group_public_key.hex()):
        daemon_sign(store, hsm, job)


def test_open_share_checked_accepts_the_right_key(hsm, store, key_a, key_b):
    for share in (key_a[0], key_b):
        put_active(store, hsm, share)
        record = store.active_by_public_key(KEYRING, share.meta.group_public_key, 1)
        assert open_share_checked(hsm, record, share.meta.group_public_key) == share.plaintext
        assert share_public_key(share.meta.key_type, share.plaintext) == share.meta.group_public_key
        with pytest.raises(StoreTamperError, match="but the job names key"):
            open_share_checked(hsm, record, b"\x02" + b"\x44" * 32)


# --- state flips ---------------------------------------------------------------------------------

def test_state_flip_between_active_and_pending_is_refused(hsm, store, key_a):
    v1, v2 = key_a
    put_active(store, hsm, v1)
    put_share(store, hsm, v2.meta, v2.plaintext)  # a refresh in flight: v2 pending
    edit(store.path, ("DROP INDEX one_active_share", ()),
         ("UPDATE shares SET state='pending' WHERE share_version=1", ()),
         ("UPDATE shares SET state='active' WHERE share_version=2", ()))
    with pytest.raises(StoreTamperError, match="fails its HSM state tag"):
        store.active(*ids(v1))
    with pytest.raises(StoreTamperError, match="fails its HSM state tag"):
        store.commit(*ids(v1), 2)  # a write on a tampered row is refused too


def test_edited_head_is_refused(hsm, store, key_a):
    v1, v2 = key_a
    put_active(store, hsm, v1)
    put_share(store, hsm, v2.meta, v2.plaintext)
    edit(store.path, ("UPDATE share_heads SET active_version=2, pending_version=1", ()))
    with pytest.raises(StoreTamperError, match="do not match the HSM-sealed store root"):
        store.active(*ids(v1))


def test_missing_root_is_refused(hsm, store, key_a):
    put_active(store, hsm, key_a[0])
    edit(store.path, ("DELETE FROM store_root", ()))
    with pytest.raises(StoreTamperError, match="store root row is missing"):
        store.active(*ids(key_a[0]))


# --- rollback from an older copy -----------------------------------------------------------------

def refreshed(store: ShareStore, hsm, key_a, tmp_path: Path) -> Path:
    """v1 active, an older copy of the file taken, then a refresh to v2 committed."""
    v1, v2 = key_a
    put_active(store, hsm, v1)
    old = snapshot(store.path, tmp_path / "old.sqlite")
    put_active(store, hsm, v2)
    return old


def old_rows(old: Path, table: str) -> list[tuple]:
    db = sqlite3.connect(old)
    rows = db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 (fixed table names)
    db.close()
    return rows


def insert(table: str, row: tuple) -> tuple[str, tuple]:
    """The statement that puts an old row back, as the attacker would."""
    return f"INSERT INTO {table} VALUES ({','.join('?' * len(row))})", row  # noqa: S608 (fixed names)


def test_row_copied_back_from_older_copy_is_refused(hsm, store, key_a, tmp_path):
    old = refreshed(store, hsm, key_a, tmp_path)
    (row,) = old_rows(old, "shares")  # v1, active, with its valid old tag
    edit(store.path, ("DELETE FROM shares WHERE share_version=2", ()), insert("shares", row))
    with pytest.raises(StoreTamperError, match="names active version 2, but its row is missing"):
        store.active(*ids(key_a[0]))
    with pytest.raises(StoreTamperError, match=r"version 1 says active, but the authenticated head says "
                                               r"retired .*copied back from an older copy"):
        store.get(*ids(key_a[0]), 1)


def test_row_copied_back_next_to_its_successor_is_refused(hsm, store, key_a, tmp_path):
    old = refreshed(store, hsm, key_a, tmp_path)
    (row,) = old_rows(old, "shares")
    edit(store.path, ("DROP INDEX one_active_share", ()), insert("shares", row))
    with pytest.raises(StoreTamperError, match="copied back from an older copy"):
        store.versions(*ids(key_a[0]))
    assert store.active(*ids(key_a[0])).meta.share_version == 2  # the real active version still serves


def test_row_and_head_copied_back_are_refused(hsm, store, key_a, tmp_path):
    old = refreshed(store, hsm, key_a, tmp_path)
    (row,), (head,) = old_rows(old, "shares"), old_rows(old, "share_heads")
    edit(store.path, ("DELETE FROM shares", ()), ("DELETE FROM share_heads", ()),
         insert("shares", row), insert("share_heads", head))
    with pytest.raises(StoreTamperError, match="do not match the HSM-sealed store root"):
        store.active(*ids(key_a[0]))


def test_limit_whole_file_restore_is_not_detected_but_later_keys_are_lost(hsm, store, key_a, key_b, tmp_path):
    """What the store cannot see (docs/hsm.md): every table restored from the same older copy is a
    consistent older state, sealed by the same HSM key. It is served; only keys made after the copy
    show the restore (their rows have no head, or are gone). Peers' refreshed shares no longer match
    the restored one, so signing with it fails (not tested here)."""
    old = refreshed(store, hsm, key_a, tmp_path)
    put_active(store, hsm, key_b)
    store.close()
    restore = [insert(table, row) for table in ("shares", "share_heads", "store_root") for row in old_rows(old, table)]
    edit(store.path, ("DELETE FROM shares WHERE key_id=1", ()), ("DELETE FROM share_heads", ()),
         ("DELETE FROM store_root", ()), *restore)
    again = ShareStore(store.path, hsm)
    assert again.active(*ids(key_a[0])).meta.share_version == 1  # the rollback itself is not seen
    with pytest.raises(StoreTamperError, match="no matching authenticated key head"):
        again.versions(*ids(key_b))  # the key made after the copy shows it
    again.close()


# --- destruction ---------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["frost", "dkls23"])
def test_retired_version_is_destroyed_after_refresh(hsm, store, key_a, protocol):
    v1, v2 = key_a if protocol == "frost" else dkls_shares(4)
    put_active(store, hsm, v1)
    v1_record = store.active(*ids(v1))
    with sqlite3.connect(store.path) as db:
        (v1_tag,) = db.execute("SELECT state_tag FROM shares WHERE share_version=1").fetchone()
    put_share(store, hsm, v2.meta, v2.plaintext)
    assert open_share(hsm, store.active(*ids(v1))) == v1.plaintext  # v1 serves until v2 is committed
    store.commit(*ids(v2), 2)
    assert store.get(*ids(v1), 1) is None
    assert [r.meta.share_version for r in store.versions(*ids(v1))] == [2]
    assert open_share_checked(hsm, store.active(*ids(v1)), v1.meta.group_public_key) == v2.plaintext
    assert (store.path.parent / "shares.sqlite-wal").stat().st_size == 0  # checkpointed and truncated
    assert_absent(store.path, {"v1 sealed blob": v1_record.sealed, "v1 state tag": bytes(v1_tag),
                               **secrets_of(v1), **secrets_of(v2)})


def test_delete_retired_destroys_the_blob(hsm, store, key_a):
    v1, v2 = key_a
    put_active(store, hsm, v1)
    put_share(store, hsm, v2.meta, v2.plaintext)
    blob = store.get(*ids(v2), 2).sealed
    store.retire(*ids(v2), 2)  # an abandoned refresh
    assert store.get(*ids(v2), 2).state is ShareState.RETIRED
    store.delete_retired(*ids(v2), 2)
    assert_absent(store.path, {"abandoned v2 blob": blob})
    assert store.active(*ids(v1)).meta.share_version == 1


def test_only_one_pending_version_and_same_key_fields(hsm, store, key_a, key_b):
    v1, v2 = key_a
    put_active(store, hsm, v1)
    put_share(store, hsm, v2.meta, v2.plaintext)
    with pytest.raises(StoreError, match="version 2 is already pending; commit or retire it first"):
        put_share(store, hsm, replace(v2.meta, share_version=3), v2.plaintext)
    store.retire(*ids(v2), 2)
    with pytest.raises(StoreError, match="group public key differs"):
        put_share(store, hsm, replace(v2.meta, share_version=3, group_public_key=key_b.meta.group_public_key),
                  v2.plaintext)


# --- migration of a release-1 store --------------------------------------------------------------

def release1_store(path: Path, hsm, rows: list[tuple[Share, str]]) -> None:
    """A store exactly as release 1 wrote it (its own code, frozen in tests/hsm/store_release1.py)."""
    old = store_release1.ShareStore(path)
    for share, final_state in rows:
        meta = store_release1.ShareMeta(**vars(share.meta))
        store_release1.put_share(old, hsm, meta, share.plaintext)
        if final_state in ("active", "retired"):
            old.commit(meta.keyring, meta.key_id, meta.party_index, meta.share_version)
    old.close()


def test_release1_store_is_migrated_on_first_open(hsm, tmp_path, key_a, key_b):
    a1, a2 = key_a
    c1, c2 = frost_share(3)
    path = tmp_path / "shares.sqlite"
    # key 1 refreshed under release 1 (v1 retired, kept forever); key 2 plain; key 3 refresh pending
    release1_store(path, hsm, [(a1, "retired"), (a2, "active"), (key_b, "active"), (c1, "active"), (c2, "pending")])
    with sqlite3.connect(path) as db:
        (a1_blob,) = db.execute("SELECT sealed FROM shares WHERE key_id=1 AND share_version=1").fetchone()
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
    store = ShareStore(path, hsm)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    for share in (a2, key_b, c1):
        record = store.active(*ids(share))
        assert record.meta == share.meta
        assert open_share_checked(hsm, record, share.meta.group_public_key) == share.plaintext
        assert hsm.unseal(record.sealed, share_aad(share.meta)) == share.plaintext  # AAD v2 now
    assert [r.meta.share_version for r in store.versions(*ids(a1))] == [2]  # v1 destroyed by the migration
    assert store.get(*ids(c2), 2).state is ShareState.PENDING
    store.commit(*ids(c2), 2)
    assert open_share(hsm, store.active(*ids(c2))) == c2.plaintext
    assert_absent(path, {"release-1 retired blob": a1_blob, **secrets_of(a1), **secrets_of(a2),
                         **secrets_of(key_b), **secrets_of(c1), **secrets_of(c2)})
    store.close()
    again = ShareStore(path, hsm)  # a second open does not migrate again
    assert open_share(hsm, again.active(*ids(key_b))) == key_b.plaintext
    again.close()


def test_migration_refuses_a_release1_column_swap_and_changes_nothing(hsm, tmp_path, key_a, key_b):
    path = tmp_path / "shares.sqlite"
    release1_store(path, hsm, [(key_a[0], "active"), (key_b, "active")])
    edit(path, ("UPDATE shares SET group_public_key=? WHERE key_id=1", (key_b.meta.group_public_key,)),
         ("UPDATE shares SET group_public_key=? WHERE key_id=2", (key_a[0].meta.group_public_key,)))
    before = dump(path)
    with pytest.raises(StoreTamperError, match=r"migration refused: row keyring1k3vx7h9/1/party 1 version 1 "
                                               r"names key .* but holds a share of key"):
        ShareStore(path, hsm)
    assert dump(path) == before  # rolled back: still exactly the release-1 store


def test_migration_refuses_a_blob_that_fails_its_release1_aad(hsm, tmp_path, key_a, key_b):
    path = tmp_path / "shares.sqlite"
    release1_store(path, hsm, [(key_a[0], "active"), (key_b, "active")])
    edit(path, ("UPDATE shares SET key_id=5 WHERE key_id=1", ()))
    with pytest.raises(StoreTamperError, match=r"row keyring1k3vx7h9/5/party 1 version 1 does not open under "
                                               r"its release-1 AAD"):
        ShareStore(path, hsm)


def test_schema_downgrade_and_newer_schema_are_refused(hsm, tmp_path, key_a):
    path = tmp_path / "shares.sqlite"
    ShareStore(path, hsm).close()
    edit(path, ("PRAGMA user_version=0", ()))
    with pytest.raises(StoreTamperError, match="neither release 1 nor this release"):
        ShareStore(path, hsm)
    edit(path, ("PRAGMA user_version=9", ()))
    with pytest.raises(StoreError, match="schema 9 is newer than this release reads"):
        ShareStore(path, hsm)


def test_no_plaintext_in_sqlite_wal_or_shm(hsm, tmp_path, key_a, key_b):
    """Real shares through every write path (migration, put, commit, refresh): no share, no secret
    scalar, in the store's files at any point we look."""
    path = tmp_path / "shares.sqlite"
    release1_store(path, hsm, [(key_b, "active")])
    store = ShareStore(path, hsm)
    needles = {**secrets_of(key_b), **secrets_of(key_a[0]), **secrets_of(key_a[1])}
    put_share(store, hsm, key_a[0].meta, key_a[0].plaintext)
    assert {p.name for p in store_files(path)} >= {"shares.sqlite", "shares.sqlite-wal", "shares.sqlite-shm"}
    assert_absent(path, needles)
    store.commit(*ids(key_a[0]), 1)
    put_share(store, hsm, key_a[1].meta, key_a[1].plaintext)
    assert_absent(path, needles)
    store.commit(*ids(key_a[1]), 2)
    assert_absent(path, needles)
    shutil.copy(path, tmp_path / "copy.sqlite")
    store.close()
    assert_absent(path, needles)
