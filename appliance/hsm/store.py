"""The share store: sealed key shares and their HSM-authenticated state in SQLite (WAL, synchronous=FULL).

Rows only move forward: pending -> active -> destroyed (or retired, when taken out of service by hand).
A new share version (from DKG, a refresh, or a reshare to another threshold or party set) is written
`pending` and does not replace the active one until `commit` — the "never overwrite a share until its
replacement is confirmed" rule. Committing destroys every older version of that key: the rows are
deleted with `secure_delete` on and the WAL is checkpointed and truncated, so a refresh really leaves
the old share behind. A version's key type and group public key are the key's for ever; its threshold
is its own (bound in its AAD and state tag), and the head carries the latest version's.

Nothing in the file is trusted because it is there. Three things are authenticated by the HSM's
sealing key (AES-256-GCM; a tag is the seal of an empty plaintext, so no new token object is needed):

- each blob's AAD binds keyring, key id, party, key type, version, threshold and group public key;
- each row's `state_tag` binds the same fields and the row's state;
- one `store_root` tag binds a generation counter and a SHA-256 digest of every key's `share_heads` row
  (its group public key, latest, active and pending version).

Every read checks the row against its tag and its state against its head, and the heads against the
root (in full when the file changed under another connection; otherwise from the heads this process
already verified or wrote, which are authentic by construction). A row edited in place fails its tag;
a row copied back from an older copy of the file carries a valid old tag but a state its head
contradicts; an old head copied back changes the digest. What is not detected — a whole file restored
consistently — is set out in docs/hsm.md.

Plaintext shares never reach this file. A store written by release 1 (schema 1: no tags, AAD v1) is
migrated on first open; that is the only code that still reads the v1 AAD.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from appliance.hsm.errors import SealError
from appliance.runtime.errors import UserError
from appliance.runtime.sqlite import connect_durable

log = logging.getLogger(__name__)

AAD_DOMAIN_V1 = b"zrkeyring/share-aad/v1"  # release 1; read only by the migration
AAD_DOMAIN = b"zrkeyring/share-aad/v2"
STATE_DOMAIN = b"zrkeyring/share-state/v1"
ROOT_DOMAIN = b"zrkeyring/share-root/v1"
SCHEMA_VERSION = 2  # PRAGMA user_version; release 1 left it at 0


class ShareState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


class StoreError(UserError):
    """A share-store operation is not allowed in the current state (or the file is unusable)."""


class StoreTamperError(StoreError):
    """The file contradicts what the HSM authenticated: a row, head or root was edited or copied back."""


def _tamper(message: str) -> StoreTamperError:
    """The error to raise, logged here once so the party's own log names the row an operator must
    investigate (the job's caller sees the same text)."""
    log.error("share store: %s", message)
    return StoreTamperError(message)


@dataclass(frozen=True)
class ShareMeta:
    """What identifies and describes one party's share of one key."""

    keyring: str
    key_id: int
    key_type: str
    threshold: int
    party_index: int
    group_public_key: bytes
    share_version: int


@dataclass(frozen=True)
class ShareRecord:
    meta: ShareMeta
    state: ShareState
    sealed: bytes
    created_at: float


class Sealer(Protocol):
    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...
    def unseal(self, blob: bytes, aad: bytes) -> bytes: ...


PublicKeyOf = Callable[[str, bytes], bytes]
"""(key type, unsealed share) -> the share's own group public key, in the chain's format."""


# --- encodings -------------------------------------------------------------------------------------

def _text(value: str, field: str) -> bytes:
    data = value.encode("utf-8")
    if not data or len(data) > 0xFFFF:
        raise ValueError(f"share_aad: {field} must be 1..65535 bytes of UTF-8")
    return struct.pack(">H", len(data)) + data


def _blob(value: bytes, field: str) -> bytes:
    if not value or len(value) > 0xFFFF:
        raise ValueError(f"share_aad: {field} must be 1..65535 bytes")
    return struct.pack(">H", len(value)) + bytes(value)


def _ids(meta: ShareMeta) -> bytes:
    return _text(meta.keyring, "keyring") + struct.pack(">QH", meta.key_id, meta.party_index)


def _key_fields(meta: ShareMeta) -> bytes:
    """Key type, threshold and group public key (a refresh keeps all three, a reshare may change the
    threshold; the key type and public key never change)."""
    return (_text(meta.key_type, "key_type") + struct.pack(">H", meta.threshold)
            + _blob(meta.group_public_key, "group_public_key"))


def share_aad(meta: ShareMeta) -> bytes:
    """AAD v2 for a share blob: domain || keyring || key_id || party || version || key_type || threshold
    || group_public_key.

    Strings and the public key are u16-length-prefixed; key_id u64, party u16, version u32, threshold
    u16, all big-endian, so no two different tuples encode to the same bytes. The public key is in it
    so that a blob can only ever open as the share of the key its row names.
    """
    return (_text(AAD_DOMAIN.decode(), "domain") + _ids(meta) + struct.pack(">I", meta.share_version)
            + _key_fields(meta))


def _share_aad_v1(meta: ShareMeta) -> bytes:
    """Release 1's AAD (no group public key, no threshold); only `_migrate_v1` may use it."""
    return b"".join((_text(AAD_DOMAIN_V1.decode(), "domain"), _text(meta.keyring, "keyring"),
                     struct.pack(">QH", meta.key_id, meta.party_index), _text(meta.key_type, "key_type"),
                     struct.pack(">I", meta.share_version)))


def state_aad(meta: ShareMeta, state: ShareState) -> bytes:
    """AAD of a row's state tag: domain || ids || version || state || key fields."""
    return (_text(STATE_DOMAIN.decode(), "domain") + _ids(meta) + struct.pack(">I", meta.share_version)
            + _text(state.value, "state") + _key_fields(meta))


@dataclass(frozen=True)
class KeyHead:
    """One key's authenticated summary: which versions exist in which state (0 = none)."""

    meta: ShareMeta  # share_version = latest version ever stored (never reused); threshold = that version's
    active_version: int
    pending_version: int

    @property
    def latest_version(self) -> int:
        return self.meta.share_version

    def state_of(self, version: int) -> ShareState:
        """The state the authenticated head says a stored row of this version must have."""
        if version == self.active_version:
            return ShareState.ACTIVE
        if version == self.pending_version:
            return ShareState.PENDING
        return ShareState.RETIRED

    def encode(self) -> bytes:
        return (_ids(self.meta) + _key_fields(self.meta)
                + struct.pack(">III", self.latest_version, self.active_version, self.pending_version))


def root_aad(generation: int, heads: list[KeyHead]) -> bytes:
    """AAD of the store root: domain || generation u64 || SHA-256 over every head (sorted by key)."""
    digest = hashlib.sha256()
    for head in sorted(heads, key=lambda h: (h.meta.keyring, h.meta.key_id, h.meta.party_index)):
        encoded = head.encode()
        digest.update(struct.pack(">I", len(encoded)) + encoded)
    return _text(ROOT_DOMAIN.decode(), "domain") + struct.pack(">Q", generation) + digest.digest()


# --- schema ----------------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE shares (
    keyring          TEXT    NOT NULL,
    key_id           INTEGER NOT NULL,
    party_index      INTEGER NOT NULL,
    share_version    INTEGER NOT NULL,
    key_type         TEXT    NOT NULL,
    threshold        INTEGER NOT NULL,
    group_public_key BLOB    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    sealed           BLOB    NOT NULL,
    state_tag        BLOB    NOT NULL,
    created_at       REAL    NOT NULL,
    PRIMARY KEY (keyring, key_id, party_index, share_version))""",
    """CREATE UNIQUE INDEX one_active_share
    ON shares (keyring, key_id, party_index) WHERE state = 'active'""",
    """CREATE TABLE share_heads (
    keyring          TEXT    NOT NULL,
    key_id           INTEGER NOT NULL,
    party_index      INTEGER NOT NULL,
    key_type         TEXT    NOT NULL,
    threshold        INTEGER NOT NULL,
    group_public_key BLOB    NOT NULL,
    latest_version   INTEGER NOT NULL,
    active_version   INTEGER NOT NULL,
    pending_version  INTEGER NOT NULL,
    PRIMARY KEY (keyring, key_id, party_index))""",
    """CREATE TABLE store_root (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    tag        BLOB    NOT NULL)""",
)

_COLUMNS = (
    "keyring, key_id, party_index, share_version, key_type, threshold, group_public_key, state, sealed, "
    "created_at"
)
_HEAD_COLUMNS = ("keyring, key_id, party_index, key_type, threshold, group_public_key, latest_version, "
                 "active_version, pending_version")
_ROW = "keyring=? AND key_id=? AND party_index=? AND share_version=?"
Heads = dict[tuple[str, int, int], KeyHead]


@dataclass(frozen=True)
class _Verified:
    """Heads this process has checked against the root (or written itself), and which file state they
    belong to. Authentic by construction, so reads may use them instead of re-reading every head;
    another connection's commit (data_version) or a different root generation forces a full check."""

    data_version: int
    generation: int
    heads: Heads
    by_public_key: dict[tuple[str, bytes, int], list[tuple[str, int, int]]]

    @classmethod
    def of(cls, data_version: int, generation: int, heads: Heads) -> _Verified:
        index: dict[tuple[str, bytes, int], list[tuple[str, int, int]]] = {}
        for key, head in heads.items():
            index.setdefault((head.meta.keyring, head.meta.group_public_key, head.meta.party_index),
                             []).append(key)
        return cls(data_version, generation, heads, index)
_KEY = "keyring=? AND key_id=? AND party_index=?"
_NOTES_SCHEMA = """CREATE TABLE IF NOT EXISTS keygen_notes (
    keyring       TEXT    NOT NULL,
    key_id        INTEGER NOT NULL,
    party_index   INTEGER NOT NULL,
    share_version INTEGER NOT NULL,
    notes         BLOB    NOT NULL,
    PRIMARY KEY (keyring, key_id, party_index, share_version))"""


def share_public_key(key_type: str, plaintext: bytes) -> bytes:
    """The group public key an unsealed share belongs to (`.public_key` of a DKLs23 key,
    `.group_public_key` of a FROST key share), decoded by the protocols' own share codec."""
    from appliance.mpc_party.protocols import dispatch

    share = dispatch.import_share(key_type, plaintext)
    if key_type == dispatch.EDDSA:
        return bytes(share.group_public_key)
    return bytes(share.public_key)


class ShareStore:
    """Sealed shares in one SQLite file. Safe to use from several threads (one connection, a lock).

    `sealer` (the party's `Hsm`) makes and checks the tags; `public_key_of` is used by the migration of
    a release-1 store to check that each share is of the key its row names (None skips that check).
    """

    def __init__(self, path: str | Path, sealer: Sealer,
                 public_key_of: PublicKeyOf | None = share_public_key) -> None:
        self.path = Path(path)
        self._sealer = sealer
        self._lock = threading.Lock()
        self._cache: _Verified | None = None
        self._next: _Verified | None = None  # what the cache becomes if the open write commits
        try:
            self._db = connect_durable(self.path, secure_delete=True)  # deleted rows are zeroed, not unlinked
            self._open_schema(public_key_of)
            self._open_notes()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open share store ({exc})") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._next = None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                self._cache = None
                raise
            self._db.execute("COMMIT")
            self._cache, self._next = self._next, None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot, so root, heads and rows are checked against each other consistently."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _open_notes(self) -> None:
        """The keygen evidence table (schema 2 stores made before it get it on open; a read-only
        file without it simply has no evidence yet)."""
        with self._lock:
            try:
                self._db.execute(_NOTES_SCHEMA)
            except sqlite3.OperationalError as exc:
                log.warning("share store %s: cannot add the keygen evidence table (%s)", self.path, exc)

    # --- schema and migration ---------------------------------------------------------------------
    def _open_schema(self, public_key_of: PublicKeyOf | None) -> None:
        """Create a new store, accept a current one, or migrate a release-1 one; refuse anything else."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == SCHEMA_VERSION and {"shares", "share_heads", "store_root"} <= tables:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: share store schema {version} is newer than this release "
                             f"reads ({SCHEMA_VERSION}); upgrade zrkeyring")
        if version == 0 and not tables:
            with self._tx() as db:
                for statement in _SCHEMA:
                    db.execute(statement)
                self._seal_root(db, 0)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return
        if version == 0 and tables == {"shares"}:
            self._migrate_v1(public_key_of)
            return
        raise _tamper(f"{self.path}: share store schema {version} with tables {sorted(tables)} is "
                               "neither release 1 nor this release: the file was altered; refusing it")

    def _migrate_v1(self, public_key_of: PublicKeyOf | None) -> None:
        """Re-seal every kept release-1 row under AAD v2 with a state tag, build heads and the root, and
        destroy versions older than each key's active one. One transaction: all or nothing."""
        with self._tx() as db:
            rows = [_record(r) for r in db.execute(
                f"SELECT {_COLUMNS} FROM shares ORDER BY keyring, key_id, party_index, share_version")]  # noqa: S608
            groups: dict[tuple[str, int, int], list[ShareRecord]] = {}
            for record in rows:
                groups.setdefault(_key_of(record.meta), []).append(record)
            kept: list[tuple[ShareRecord, bytes]] = []
            heads = []
            for records in groups.values():
                head = _legacy_head(records)
                heads.append(head)
                for record in records:
                    if record.meta.share_version < head.active_version:
                        continue  # a predecessor of the active version: destroyed by not copying it
                    kept.append((record, self._reseal_v1(record, public_key_of)))
            db.execute("DROP INDEX IF EXISTS one_active_share")
            db.execute("ALTER TABLE shares RENAME TO shares_release1")
            for statement in _SCHEMA:
                db.execute(statement)
            for head in heads:
                _put_head(db, head)
            for record, sealed in kept:
                state = next(h for h in heads if _key_of(h.meta) == _key_of(record.meta)).state_of(
                    record.meta.share_version)
                self._insert(db, record.meta, state, sealed, record.created_at)
            db.execute("DROP TABLE shares_release1")
            self._seal_root(db, 1)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._wipe(vacuum=True)
        log.info("share store %s migrated from schema 1 to %d: %d rows re-sealed with AAD v2, %d older "
                 "versions destroyed", self.path, SCHEMA_VERSION, len(kept), len(rows) - len(kept))

    def _reseal_v1(self, record: ShareRecord, public_key_of: PublicKeyOf | None) -> bytes:
        """Open a release-1 blob (v1 AAD), check whose share it is, and seal it again under AAD v2."""
        name = _row_name(record.meta)
        try:
            plaintext = self._sealer.unseal(record.sealed, _share_aad_v1(record.meta))
        except SealError as exc:
            raise _tamper(f"{self.path}: migration refused: row {name} does not open under its "
                                   f"release-1 AAD ({exc}); the file was altered before migration") from None
        if public_key_of is not None:
            actual = _public_key(public_key_of, record.meta, plaintext, name)
            if not hmac.compare_digest(actual, record.meta.group_public_key):
                raise _tamper(
                    f"{self.path}: migration refused: row {name} names key {record.meta.group_public_key.hex()}"
                    f" but holds a share of key {actual.hex()} (the group_public_key column was edited)")
        return self._sealer.seal(plaintext, share_aad(record.meta))

    # --- authentication ---------------------------------------------------------------------------
    def _verified(self, db: sqlite3.Connection) -> _Verified:
        """Every key's head, checked against the HSM root tag over all of them (O(keys)), unless the file
        is provably unchanged since this connection last checked or wrote them (O(1))."""
        root = db.execute("SELECT generation, tag FROM store_root WHERE id=1").fetchone()
        if root is None:
            raise _tamper(f"{self.path}: the store root row is missing; refusing the store")
        generation, tag = root
        (data_version,) = db.execute("PRAGMA data_version").fetchone()
        cache = self._cache
        if cache is not None and (cache.data_version, cache.generation) == (data_version, generation):
            return cache
        heads = [_head(r) for r in db.execute(f"SELECT {_HEAD_COLUMNS} FROM share_heads")]  # noqa: S608
        try:
            ok = self._sealer.unseal(bytes(tag), root_aad(generation, heads)) == b""
        except SealError:
            ok = False
        if not ok:
            raise _tamper(
                f"{self.path}: the key heads do not match the HSM-sealed store root (generation "
                f"{generation}): a head row was edited, added, removed or copied back from an older file")
        self._cache = _Verified.of(data_version, generation, {_key_of(h.meta): h for h in heads})
        return self._cache

    def _heads(self, db: sqlite3.Connection) -> Heads:
        return self._verified(db).heads

    def _seal_root(self, db: sqlite3.Connection, generation: int) -> None:
        heads = [_head(r) for r in db.execute(f"SELECT {_HEAD_COLUMNS} FROM share_heads")]  # noqa: S608
        tag = self._sealer.seal(b"", root_aad(generation, heads))
        db.execute("INSERT OR REPLACE INTO store_root (id, generation, tag) VALUES (1, ?, ?)",
                   (generation, tag))

    def _bump_root(self, db: sqlite3.Connection, heads: Heads, *changed: KeyHead) -> None:
        """Write the changed heads and a root sealed over all heads (from the verified set, not the
        file); the verified set follows once the transaction commits."""
        verified = self._verified(db)
        heads = {**heads, **{_key_of(h.meta): h for h in changed}}
        for head in changed:
            _put_head(db, head)
        generation = verified.generation + 1
        tag = self._sealer.seal(b"", root_aad(generation, list(heads.values())))
        db.execute("UPDATE store_root SET generation=?, tag=? WHERE id=1", (generation, tag))
        self._next = _Verified.of(verified.data_version, generation, heads)

    def _checked(self, heads: dict[tuple[str, int, int], KeyHead], row: tuple) -> ShareRecord:
        """A row as a record, or StoreTamperError naming it if its tag or its state is not authentic."""
        record, tag = _record(row[:-1]), bytes(row[-1])
        name = _row_name(record.meta)
        try:
            ok = self._sealer.unseal(tag, state_aad(record.meta, record.state)) == b""
        except SealError:
            ok = False
        if not ok:
            raise _tamper(f"{self.path}: share row {name} fails its HSM state tag: its state, key "
                                   "type, threshold or group public key was edited; refusing it")
        head = heads.get(_key_of(record.meta))
        if head is None or not _same_key(head, record.meta):
            raise _tamper(f"{self.path}: share row {name} has no matching authenticated key head; "
                                   "refusing it")
        expected = head.state_of(record.meta.share_version)
        if record.state is not expected or record.meta.share_version > head.latest_version:
            raise _tamper(
                f"{self.path}: share row {name} says {record.state}, but the authenticated head says "
                f"{expected} (active version {head.active_version}): a row copied back from an older "
                "copy of the file, or an edited state; refusing it")
        return record

    def _rows(self, db: sqlite3.Connection, where: str, params: tuple) -> list[ShareRecord]:
        heads = self._heads(db)
        rows = db.execute(f"SELECT {_COLUMNS}, state_tag FROM shares WHERE {where}", params).fetchall()  # noqa: S608
        return [self._checked(heads, row) for row in rows]

    def _insert(self, db: sqlite3.Connection, meta: ShareMeta, state: ShareState, sealed: bytes,
                created_at: float) -> None:
        tag = self._sealer.seal(b"", state_aad(meta, state))
        db.execute(
            f"INSERT INTO shares ({_COLUMNS}, state_tag) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            (meta.keyring, meta.key_id, meta.party_index, meta.share_version, meta.key_type,
             meta.threshold, bytes(meta.group_public_key), state.value, bytes(sealed), created_at, tag),
        )

    def _set_state(self, db: sqlite3.Connection, meta: ShareMeta, state: ShareState) -> None:
        tag = self._sealer.seal(b"", state_aad(meta, state))
        db.execute(f"UPDATE shares SET state=?, state_tag=? WHERE {_ROW}",  # noqa: S608
                   (state.value, tag, *_key_of(meta), meta.share_version))

    def _wipe(self, vacuum: bool = False) -> None:
        """Push the zeroed pages of deleted rows into the main file and empty the WAL, so no copy of a
        destroyed blob stays in either; VACUUM (after a migration) also drops freed pages."""
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if vacuum:
                self._db.execute("VACUUM")
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("share store %s: WAL checkpoint blocked by another reader; destroyed rows may "
                        "remain in the -wal file until the next checkpoint", self.path)

    # --- writes ------------------------------------------------------------------------------------
    def put_pending(self, meta: ShareMeta, sealed: bytes) -> None:
        """Store a new share version as pending; its version must exceed every stored version, its key
        fields must match the key's, and no other version of the key may be pending."""
        if meta.share_version < 1:
            raise StoreError(f"share {_name(meta)}: version must be >= 1, got {meta.share_version}")
        with self._tx() as db:
            heads = self._heads(db)
            head = heads.get(_key_of(meta))
            if head is not None:
                if meta.share_version <= head.latest_version:
                    raise StoreError(f"share {_name(meta)}: version {meta.share_version} is not newer than "
                                     f"stored {head.latest_version}")
                left = db.execute(f"SELECT COUNT(*) FROM shares WHERE {_KEY}", _key_of(meta)).fetchone()[0]  # noqa: S608
                same_key = (head.meta.key_type, head.meta.group_public_key) == (meta.key_type, meta.group_public_key)
                if not same_key and left:
                    # a resharing may change the threshold (and the set, inside the share), never the key;
                    # with no row left (every earlier attempt discarded) a fresh keygen's new key may take
                    # the id; versions still never repeat
                    raise StoreError(f"share {_name(meta)}: key type or group public key differs from the "
                                     "stored versions of this key")
                if head.pending_version:
                    raise StoreError(f"share {_name(meta)}: version {head.pending_version} is already "
                                     "pending; commit or retire it first")
            active = head.active_version if head is not None else 0
            self._insert(db, meta, ShareState.PENDING, sealed, time.time())
            self._bump_root(db, heads, KeyHead(meta, active, meta.share_version))

    def commit(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Make a pending version active and destroy every older version of the key (row deleted, pages
        zeroed, WAL truncated): the successor is committed, so the predecessor has no use left."""
        key = (keyring, key_id, party_index)
        with self._tx() as db:
            heads = self._heads(db)
            record = self._one(db, heads, key, share_version)
            if record.state is not ShareState.PENDING:
                raise StoreError(f"share version {share_version} is {record.state}; only a pending one can "
                                 "be committed")
            db.execute(f"DELETE FROM shares WHERE {_KEY} AND share_version<?", (*key, share_version))  # noqa: S608
            self._set_state(db, record.meta, ShareState.ACTIVE)
            self._bump_root(db, heads, KeyHead(heads[key].meta, share_version, 0))
        self._wipe()

    def retire(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Explicitly retire a version (an abandoned pending refresh, or a key taken out of service);
        the row is kept, retired, until `delete_retired`."""
        key = (keyring, key_id, party_index)
        with self._tx() as db:
            heads = self._heads(db)
            record = self._one(db, heads, key, share_version)
            if record.state is ShareState.RETIRED:
                return
            self._set_state(db, record.meta, ShareState.RETIRED)
            head = heads[key]
            self._bump_root(db, heads, KeyHead(
                head.meta, 0 if record.state is ShareState.ACTIVE else head.active_version,
                0 if record.state is ShareState.PENDING else head.pending_version))

    def delete_retired(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Destroy one version's row (deleted, pages zeroed, WAL truncated); refused unless retired."""
        key = (keyring, key_id, party_index)
        with self._tx() as db:
            heads = self._heads(db)
            record = self._one(db, heads, key, share_version)
            if record.state is not ShareState.RETIRED:
                raise StoreError(f"share version {share_version} is {record.state}; retire it before "
                                 "deleting")
            db.execute(f"DELETE FROM shares WHERE {_ROW}", (*key, share_version))  # noqa: S608
            self._bump_root(db, heads)
        self._wipe()

    def discard(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Destroy one version whatever its state (a pending share the keygen did not confirm, or an
        orphan of a request that never became a key): retire, then delete, notes included."""
        self.retire(keyring, key_id, party_index, share_version)
        self.delete_retired(keyring, key_id, party_index, share_version)
        with self._lock, self._db:
            self._db.execute(f"DELETE FROM keygen_notes WHERE {_ROW}", (keyring, key_id, party_index, share_version))  # noqa: S608

    def destroy_key(self, keyring: str, key_id: int, party_index: int) -> int:
        """Destroy every stored version of a key (orphan sweep); returns how many there were."""
        records = self.versions(keyring, key_id, party_index)
        for record in records:
            self.discard(keyring, key_id, party_index, record.meta.share_version)
        return len(records)

    def next_version(self, keyring: str, key_id: int, party_index: int) -> int:
        """The version a new share of this key must take: above every version ever stored (a version
        number is never reused, even after its row was destroyed)."""
        with self._read() as db:
            head = self._heads(db).get((keyring, key_id, party_index))
        return 1 if head is None else head.latest_version + 1

    def put_notes(self, keyring: str, key_id: int, party_index: int, share_version: int, notes: bytes) -> None:
        """Keep the keygen confirmation notes (our own first, then every peer's we hold) of one share
        version. Not HSM-tagged: each note is signed by its party's identity key, so an edit can only
        remove evidence (the key then waits for a peer's), never forge it."""
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO keygen_notes (keyring, key_id, party_index, share_version, "
                             "notes) VALUES (?,?,?,?,?)", (keyring, key_id, party_index, share_version, notes))

    def notes(self, keyring: str, key_id: int, party_index: int, share_version: int) -> bytes | None:
        with self._lock:
            row = self._db.execute(f"SELECT notes FROM keygen_notes WHERE {_ROW}",  # noqa: S608
                                   (keyring, key_id, party_index, share_version)).fetchone()
        return bytes(row[0]) if row else None

    def key_notes(self, keyring: str, key_id: int, party_index: int) -> bytes | None:
        """The newest notes of any version of a key: the evidence of the keygen stays the evidence of
        the key across OT re-setups (new versions, same shares' polynomial)."""
        with self._lock:
            row = self._db.execute(f"SELECT notes FROM keygen_notes WHERE {_KEY} ORDER BY share_version DESC "  # noqa: S608
                                   "LIMIT 1", (keyring, key_id, party_index)).fetchone()
        return bytes(row[0]) if row else None

    def pending(self, keyring: str, key_id: int, party_index: int) -> ShareRecord | None:
        """The authenticated pending version of a key, or None."""
        found = [r for r in self.versions(keyring, key_id, party_index) if r.state is ShareState.PENDING]
        return found[-1] if found else None

    def heads(self) -> list[KeyHead]:
        """Every key's authenticated head (which versions are active / pending), checked against the
        root only: no per-row HSM call, so status can list thousands of keys cheaply."""
        with self._read() as db:
            return list(self._verified(db).heads.values())

    def all_pending(self) -> list[ShareRecord]:
        """Every authenticated pending share (restart resolution, orphan sweep, status)."""
        with self._read() as db:
            return self._rows(db, "state='pending' ORDER BY keyring, key_id, party_index", ())

    def _one(self, db: sqlite3.Connection, heads: dict[tuple[str, int, int], KeyHead],
             key: tuple[str, int, int], version: int) -> ShareRecord:
        rows = db.execute(f"SELECT {_COLUMNS}, state_tag FROM shares WHERE {_ROW}", (*key, version)).fetchall()  # noqa: S608
        if not rows:
            raise StoreError(f"no share {key[0]}/{key[1]}/party {key[2]} version {version}")
        return self._checked(heads, rows[0])

    # --- reads -------------------------------------------------------------------------------------
    def active(self, keyring: str, key_id: int, party_index: int) -> ShareRecord | None:
        """The authenticated active version of a key, or None if it has none."""
        with self._read() as db:
            heads = self._heads(db)
            return self._active_of(db, heads, heads.get((keyring, key_id, party_index)))

    def get(self, keyring: str, key_id: int, party_index: int, share_version: int) -> ShareRecord | None:
        with self._read() as db:
            rows = self._rows(db, _ROW, (keyring, key_id, party_index, share_version))
        return rows[0] if rows else None

    def active_by_public_key(
        self, keyring: str, group_public_key: bytes, party_index: int
    ) -> ShareRecord | None:
        """The active share of the key with this group public key (the chain names keys by their own ids,
        which exist only after fulfilment; the public key links the two). The lookup goes through the
        authenticated heads, never the row's own column."""
        wanted = bytes(group_public_key)
        with self._read() as db:
            verified = self._verified(db)
            heads = verified.heads
            found = [heads[k] for k in verified.by_public_key.get((keyring, wanted, party_index), [])
                     if heads[k].active_version]
            if len(found) > 1:
                raise StoreError(f"{self.path}: keys {[h.meta.key_id for h in found]} of {keyring} all have "
                                 f"group public key {wanted.hex()}; refusing to choose")
            return self._active_of(db, heads, found[0] if found else None)

    def _active_of(self, db: sqlite3.Connection, heads: dict[tuple[str, int, int], KeyHead],
                   head: KeyHead | None) -> ShareRecord | None:
        if head is None or not head.active_version:
            return None
        key = _key_of(head.meta)
        rows = db.execute(f"SELECT {_COLUMNS}, state_tag FROM shares WHERE {_ROW}",  # noqa: S608
                          (*key, head.active_version)).fetchall()
        if not rows:
            raise _tamper(f"{self.path}: the authenticated head of {key[0]}/{key[1]}/party {key[2]} "
                                   f"names active version {head.active_version}, but its row is missing")
        return self._checked(heads, rows[0])

    def versions(self, keyring: str, key_id: int, party_index: int) -> list[ShareRecord]:
        with self._read() as db:
            return self._rows(db, f"{_KEY} ORDER BY share_version", (keyring, key_id, party_index))

    def all_active(self) -> list[ShareRecord]:
        """Every authenticated active share in the store (status and audit tools)."""
        with self._read() as db:
            return self._rows(db, "state='active' ORDER BY keyring, key_id, party_index", ())

    # --- life cycle (scheduled refresh, resharing) ----------------------------------------------------
    def pending_of(self, keyring: str, key_id: int, party_index: int) -> ShareRecord | None:
        """The authenticated pending version of a key (a refresh stored, not yet committed), or None."""
        with self._read() as db:
            heads = self._heads(db)
            head = heads.get((keyring, key_id, party_index))
            if head is None or not head.pending_version:
                return None
            return self._one(db, heads, _key_of(head.meta), head.pending_version)

    def latest_version(self, keyring: str, key_id: int, party_index: int) -> int:
        """The highest version ever stored for the key (0 if none): a new version must exceed it."""
        with self._read() as db:
            head = self._heads(db).get((keyring, key_id, party_index))
            return head.latest_version if head is not None else 0


def _same_key(head: KeyHead, meta: ShareMeta) -> bool:
    """A row belongs to the head's key: same ids, key type and group public key. Its threshold may
    differ from the head's (a reshare changes it between versions) except in the latest version, whose
    threshold the head carries; every version's own threshold is bound by its state tag and AAD, and a
    version number is never reused, so no other threshold can be sealed for it."""
    m = head.meta
    if (m.key_type, bytes(m.group_public_key)) != (meta.key_type, bytes(meta.group_public_key)):
        return False
    return meta.share_version != head.latest_version or meta.threshold == m.threshold


def _key_of(meta: ShareMeta) -> tuple[str, int, int]:
    return meta.keyring, meta.key_id, meta.party_index


def _name(meta: ShareMeta) -> str:
    return f"{meta.keyring}/{meta.key_id}/party {meta.party_index}"


def _row_name(meta: ShareMeta) -> str:
    return f"{_name(meta)} version {meta.share_version}"


def _record(row: tuple) -> ShareRecord:
    keyring, key_id, party, version, key_type, threshold, group_pub, state, sealed, created = row
    meta = ShareMeta(keyring, key_id, key_type, threshold, party, bytes(group_pub), version)
    return ShareRecord(meta, ShareState(state), bytes(sealed), created)


def _head(row: tuple) -> KeyHead:
    keyring, key_id, party, key_type, threshold, group_pub, latest, active, pending = row
    return KeyHead(ShareMeta(keyring, key_id, key_type, threshold, party, bytes(group_pub), latest),
                   active, pending)


def _put_head(db: sqlite3.Connection, head: KeyHead) -> None:
    m = head.meta
    db.execute(f"INSERT OR REPLACE INTO share_heads ({_HEAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",  # noqa: S608
               (m.keyring, m.key_id, m.party_index, m.key_type, m.threshold, bytes(m.group_public_key),
                head.latest_version, head.active_version, head.pending_version))


def _legacy_head(records: list[ShareRecord]) -> KeyHead:
    """The head a release-1 key's rows imply: its active version, and its newest pending version above
    that (older pending ones become retired). The key fields must agree across every version."""
    first = records[0].meta
    for record in records:
        if replace(record.meta, share_version=first.share_version) != first:
            raise _tamper(f"migration refused: rows of {_name(first)} disagree on key type, "
                                   "threshold or group public key")
    active = max((r.meta.share_version for r in records if r.state is ShareState.ACTIVE), default=0)
    pending = max((r.meta.share_version for r in records
                   if r.state is ShareState.PENDING and r.meta.share_version > active), default=0)
    latest = max(r.meta.share_version for r in records)
    return KeyHead(replace(first, share_version=latest), active, pending)


def _public_key(public_key_of: PublicKeyOf, meta: ShareMeta, plaintext: bytes, name: str) -> bytes:
    try:
        return bytes(public_key_of(meta.key_type, plaintext))
    except Exception as exc:  # a share that does not even decode is as wrong as a share of another key
        raise _tamper(f"share row {name}: the unsealed share does not decode as a "
                               f"{meta.key_type} share ({type(exc).__name__})") from None


def put_share(store: ShareStore, sealer: Sealer, meta: ShareMeta, plaintext: bytes) -> None:
    """Seal `plaintext` with the share's AAD and store it as a pending version."""
    store.put_pending(meta, sealer.seal(plaintext, share_aad(meta)))


def open_share(sealer: Sealer, record: ShareRecord) -> bytes:
    """Unseal a stored share (SealError if its blob or metadata were altered)."""
    return sealer.unseal(record.sealed, share_aad(record.meta))


def open_share_checked(sealer: Sealer, record: ShareRecord, expected_public_key: bytes,
                       public_key_of: PublicKeyOf = share_public_key) -> bytes:
    """Unseal a share for a job and refuse it unless it is a share of the key the job names (and the
    chain holds): the store's metadata is never the last word on which key a share is."""
    name = _row_name(record.meta)
    expected = bytes(expected_public_key)
    try:
        plaintext = open_share(sealer, record)
    except SealError as exc:
        raise _tamper(f"share row {name}: the sealed blob does not open ({exc}); refusing the "
                               "job") from None
    actual = _public_key(public_key_of, record.meta, plaintext, name)
    if not (hmac.compare_digest(actual, expected)
            and hmac.compare_digest(bytes(record.meta.group_public_key), expected)):
        raise _tamper(f"share row {name} holds a share of key {actual.hex()}, but the job names "
                               f"key {expected.hex()}; refusing the job")
    return plaintext
