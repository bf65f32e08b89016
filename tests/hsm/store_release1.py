"""FROZEN COPY of appliance/hsm/store.py as release 1 shipped it (commit 3a99b24), kept only so the
migration tests build a store exactly as that release wrote it. Do not edit or use outside tests.

The share store: sealed key shares and their metadata in SQLite (WAL, synchronous=FULL).

Rows only move forward: pending -> active -> retired. A new share version (from DKG or a refresh) is
written `pending` and does not replace the active one until `commit` — the "never overwrite a share until
its replacement is confirmed" rule. Committing retires the previous active version (kept, not deleted);
rows are deleted only by `delete_retired`, and only when already retired.

Plaintext shares never reach this file: `put_share` seals under the HSM with `share_aad(meta)`, which
binds keyring, key id, party index, key type and share version, so a blob copied to another row fails.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from appliance.runtime.errors import UserError

AAD_DOMAIN = b"zrkeyring/share-aad/v1"


class ShareState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


class StoreError(UserError):
    """A share-store operation is not allowed in the current state (or the file is unusable)."""


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


def _text(value: str, field: str) -> bytes:
    data = value.encode("utf-8")
    if not data or len(data) > 0xFFFF:
        raise ValueError(f"share_aad: {field} must be 1..65535 bytes of UTF-8")
    return struct.pack(">H", len(data)) + data


def share_aad(meta: ShareMeta) -> bytes:
    """AAD for a share blob: domain || keyring || key_id || party_index || key_type || share_version.

    Strings are u16-length-prefixed UTF-8; key_id is u64, party_index u16, share_version u32, all
    big-endian, so no two different tuples encode to the same bytes.
    """
    return b"".join(
        (
            _text(AAD_DOMAIN.decode(), "domain"),
            _text(meta.keyring, "keyring"),
            struct.pack(">Q", meta.key_id),
            struct.pack(">H", meta.party_index),
            _text(meta.key_type, "key_type"),
            struct.pack(">I", meta.share_version),
        )
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (
    keyring          TEXT    NOT NULL,
    key_id           INTEGER NOT NULL,
    party_index      INTEGER NOT NULL,
    share_version    INTEGER NOT NULL,
    key_type         TEXT    NOT NULL,
    threshold        INTEGER NOT NULL,
    group_public_key BLOB    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    sealed           BLOB    NOT NULL,
    created_at       REAL    NOT NULL,
    PRIMARY KEY (keyring, key_id, party_index, share_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_share
    ON shares (keyring, key_id, party_index) WHERE state = 'active';
"""

_COLUMNS = (
    "keyring, key_id, party_index, share_version, key_type, threshold, group_public_key, state, sealed, "
    "created_at"
)


class ShareStore:
    """Sealed shares in one SQLite file. Safe to use from several threads (one connection, a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open share store ({exc})") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- writes ------------------------------------------------------------------------------------
    def put_pending(self, meta: ShareMeta, sealed: bytes) -> None:
        """Store a new share version as pending; its version must exceed every stored version."""
        with self._tx() as db:
            (latest,) = db.execute(
                "SELECT MAX(share_version) FROM shares WHERE keyring=? AND key_id=? AND party_index=?",
                (meta.keyring, meta.key_id, meta.party_index),
            ).fetchone()
            if latest is not None and meta.share_version <= latest:
                raise StoreError(
                    f"share {_name(meta)}: version {meta.share_version} is not newer than stored {latest}"
                )
            db.execute(
                f"INSERT INTO shares ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                (
                    meta.keyring,
                    meta.key_id,
                    meta.party_index,
                    meta.share_version,
                    meta.key_type,
                    meta.threshold,
                    bytes(meta.group_public_key),
                    ShareState.PENDING.value,
                    bytes(sealed),
                    time.time(),
                ),
            )

    def commit(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Make a pending version active; the previous active version becomes retired (not deleted)."""
        self._transition((keyring, key_id, party_index, share_version), {ShareState.PENDING}, "commit")

    def retire(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Explicitly retire a version (an abandoned pending refresh, or a key taken out of service)."""
        self._transition((keyring, key_id, party_index, share_version), set(ShareState), "retire")

    def delete_retired(self, keyring: str, key_id: int, party_index: int, share_version: int) -> None:
        """Delete one version's row; refused unless it was retired first."""
        self._transition((keyring, key_id, party_index, share_version), {ShareState.RETIRED}, "delete")

    _REFUSALS = {
        "commit": "only a pending one can be committed",
        "delete": "retire it before deleting",
    }

    def _transition(self, ids: tuple[str, int, int, int], allowed: set[ShareState], action: str) -> None:
        """Check the row's state and apply `action` in one IMMEDIATE transaction."""
        where = "keyring=? AND key_id=? AND party_index=? AND share_version=?"
        with self._tx() as db:
            state = self._state(db, *ids)
            if state not in allowed:
                raise StoreError(f"share version {ids[3]} is {state}; {self._REFUSALS[action]}")
            if action == "delete":
                db.execute(f"DELETE FROM shares WHERE {where}", ids)  # noqa: S608
                return
            if action == "commit":
                db.execute(
                    "UPDATE shares SET state='retired' WHERE keyring=? AND key_id=? AND party_index=? "
                    "AND state='active'",
                    ids[:3],
                )
            target = ShareState.ACTIVE if action == "commit" else ShareState.RETIRED
            db.execute(f"UPDATE shares SET state=? WHERE {where}", (target.value, *ids))  # noqa: S608

    # --- reads -------------------------------------------------------------------------------------
    def active(self, keyring: str, key_id: int, party_index: int) -> ShareRecord | None:
        rows = self._select(
            "keyring=? AND key_id=? AND party_index=? AND state='active'", (keyring, key_id, party_index)
        )
        return rows[0] if rows else None

    def get(self, keyring: str, key_id: int, party_index: int, share_version: int) -> ShareRecord | None:
        rows = self._select(
            "keyring=? AND key_id=? AND party_index=? AND share_version=?",
            (keyring, key_id, party_index, share_version),
        )
        return rows[0] if rows else None

    def active_by_public_key(
        self, keyring: str, group_public_key: bytes, party_index: int
    ) -> ShareRecord | None:
        """The active share of the key with this group public key (the chain names keys by their own ids,
        which exist only after fulfilment; the public key links the two)."""
        rows = self._select(
            "keyring=? AND group_public_key=? AND party_index=? AND state='active'",
            (keyring, bytes(group_public_key), party_index),
        )
        return rows[0] if rows else None

    def versions(self, keyring: str, key_id: int, party_index: int) -> list[ShareRecord]:
        return self._select(
            "keyring=? AND key_id=? AND party_index=? ORDER BY share_version", (keyring, key_id, party_index)
        )

    def _select(self, where: str, params: tuple) -> list[ShareRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM shares WHERE {where}", params).fetchall()  # noqa: S608
        return [_record(row) for row in rows]

    @staticmethod
    def _state(
        db: sqlite3.Connection, keyring: str, key_id: int, party_index: int, version: int
    ) -> ShareState:
        row = db.execute(
            "SELECT state FROM shares WHERE keyring=? AND key_id=? AND party_index=? AND share_version=?",
            (keyring, key_id, party_index, version),
        ).fetchone()
        if row is None:
            raise StoreError(f"no share {keyring}/{key_id}/party {party_index} version {version}")
        return ShareState(row[0])


def _name(meta: ShareMeta) -> str:
    return f"{meta.keyring}/{meta.key_id}/party {meta.party_index}"


def _record(row: tuple) -> ShareRecord:
    keyring, key_id, party, version, key_type, threshold, group_pub, state, sealed, created = row
    meta = ShareMeta(keyring, key_id, key_type, threshold, party, bytes(group_pub), version)
    return ShareRecord(meta, ShareState(state), bytes(sealed), created)


def put_share(store: ShareStore, sealer: Sealer, meta: ShareMeta, plaintext: bytes) -> None:
    """Seal `plaintext` with the share's AAD and store it as a pending version."""
    store.put_pending(meta, sealer.seal(plaintext, share_aad(meta)))


def open_share(sealer: Sealer, record: ShareRecord) -> bytes:
    """Unseal a stored share (SealError if its blob or metadata were altered)."""
    return sealer.unseal(record.sealed, share_aad(record.meta))
