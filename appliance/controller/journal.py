"""The controller's durable journal: what it has seen, computed and posted, in SQLite.

The double-post guard (as tmkms persists its last signed height before a signature leaves): the
signed transaction bytes are written and fsynced *before* they are broadcast. After a crash the
controller re-broadcasts exactly those bytes (same hash, same account sequence, so at most one copy
can ever be included) or, once the transaction's timeout height has passed without inclusion, knows
it can never land and plans a fresh one. Results held here (public keys, signatures) are public data;
no secret ever enters the journal.

Request states, in order: seen → result (or reject) → posting → done. A request leaves `posting`
only when its transaction's fate is known.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from appliance.runtime.errors import UserError
from appliance.runtime.sqlite import connect_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    kind TEXT NOT NULL,              -- 'key' or 'sign'
    request_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    result BLOB,                     -- public key or signature (public data)
    reject_reason TEXT,
    tx_hash TEXT,
    note TEXT,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (kind, request_id)
);
CREATE TABLE IF NOT EXISTS txs (
    tx_hash TEXT PRIMARY KEY,
    tx_bytes BLOB NOT NULL,
    sequence INTEGER NOT NULL,
    timeout_height INTEGER NOT NULL,
    state TEXT NOT NULL,             -- 'sent', 'included', 'failed', 'expired'
    code INTEGER,
    log TEXT,
    created REAL NOT NULL
);
"""


ENTRY_CACHE = 65536  # request entries kept in memory (a few hundred bytes each)


class State(Enum):
    SEEN = "seen"
    RESULT = "result"
    REJECT = "reject"
    POSTING = "posting"
    DONE = "done"


@dataclass(frozen=True)
class Entry:
    kind: str
    request_id: int
    state: State
    attempt: int
    result: bytes | None
    reject_reason: str | None
    tx_hash: str | None
    note: str | None


@dataclass(frozen=True)
class TxRecord:
    tx_hash: str
    tx_bytes: bytes
    sequence: int
    timeout_height: int
    state: str


class Journal:
    """Thread-safe SQLite journal (WAL, synchronous=FULL so a committed row survives power loss).

    Request entries are also kept in memory, read through on a miss and dropped on every write to
    their row: this process is the journal's only writer, and a tick reads the entry of every open
    request two or three times (hundreds of requests under load), which would otherwise be that many
    SQLite queries per tick.

    Two writes carry no safety and are not worth an fsync of their own: a new request's "seen" row
    (`observe`) and the attempt a job runs at (`set_attempt`, for operators only). They are held in
    memory and written with the next durable write, or by `flush` (once per controller tick). A crash
    loses at most that: the request is seen again on restart, and no decision reads the attempt.
    """

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], Entry] = {}
        self._unsaved: dict[tuple[str, int], float] = {}  # seen, row not written yet: first-seen time
        self._attempts: dict[tuple[str, int], int] = {}  # attempts not written yet
        try:
            self._db = connect_durable(path)
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:  # unwritable file or directory, not a database, disk full
            raise UserError(f"controller journal {path}: cannot open: {exc}; check that the file and its "
                            "directory belong to the service user and that it is the controller's journal "
                            "(restore it from backup if damaged)") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple, row: tuple[str, int] | None = None) -> None:
        """One statement in its own durable transaction; `row` names the request entry it changes."""
        self._write_many(sql, [args], [row] if row is not None else [])

    def _write_many(self, sql: str, rows_args: list[tuple], rows: list[tuple[str, int]]) -> None:
        """One statement per argument tuple, all in one durable transaction (one fsync), after the
        held-back rows (`_save_held_locked`)."""
        with self._lock:
            for row in rows:
                self._entries.pop(row, None)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._save_held_locked()
                for args in rows_args:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._unsaved.clear()
            self._attempts.clear()

    def _save_held_locked(self) -> None:
        """Write the held-back seen rows and attempts inside the caller's transaction."""
        for (kind, request_id), seen in self._unsaved.items():
            self._db.execute("INSERT OR IGNORE INTO requests (kind, request_id, state, first_seen, updated) "
                             "VALUES (?, ?, ?, ?, ?)", (kind, request_id, State.SEEN.value, seen, seen))
        for (kind, request_id), attempt in self._attempts.items():
            self._db.execute("UPDATE requests SET attempt=? WHERE kind=? AND request_id=?",
                             (attempt, kind, request_id))

    def flush(self) -> None:
        """Write what is held back (the controller calls it once per tick)."""
        with self._lock:
            if not self._unsaved and not self._attempts:
                return
        self._write_many("", [], [])

    # --- requests --------------------------------------------------------------------------------
    def observe(self, kind: str, request_id: int) -> Entry:
        """Record a request as seen (no-op if known) and return its entry; the row itself is written
        with the next durable write or `flush`."""
        known = self.get(kind, request_id)
        if known is not None:
            return known
        entry = Entry(kind, request_id, State.SEEN, 0, None, None, None, None)
        with self._lock:
            self._unsaved[(kind, request_id)] = time.time()
            self._entries[(kind, request_id)] = entry
        return entry

    def get(self, kind: str, request_id: int) -> Entry | None:
        with self._lock:
            cached = self._entries.get((kind, request_id))
            if cached is not None:
                return cached
            if (kind, request_id) in self._unsaved:  # seen, its row held back (and evicted from the cache)
                attempt = self._attempts.get((kind, request_id), 0)
                return Entry(kind, request_id, State.SEEN, attempt, None, None, None, None)
            row = self._db.execute(
                "SELECT kind, request_id, state, attempt, result, reject_reason, tx_hash, note "
                "FROM requests WHERE kind=? AND request_id=?",
                (kind, request_id),
            ).fetchone()
            if not row:
                return None
            entry = self._entries[(kind, request_id)] = _entry(row)
            if len(self._entries) > ENTRY_CACHE:
                self._entries.pop(next(iter(self._entries)))  # oldest first: done requests age out
            return entry

    def entries(self, *states: State) -> list[Entry]:
        self.flush()
        wanted = {s.value for s in states}
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, request_id, state, attempt, result, reject_reason, tx_hash, note "
                "FROM requests WHERE state != 'done' OR ? ORDER BY request_id",
                (State.DONE.value in wanted,),
            ).fetchall()
        return [_entry(r) for r in rows if r[2] in wanted]

    def set_attempt(self, kind: str, request_id: int, attempt: int) -> None:
        """The attempt a job runs at (held back; see the class docstring)."""
        with self._lock:
            self._attempts[(kind, request_id)] = attempt
            cached = self._entries.get((kind, request_id))
            if cached is not None:
                self._entries[(kind, request_id)] = dataclasses.replace(cached, attempt=attempt)

    def record_result(self, kind: str, request_id: int, result: bytes) -> None:
        self._set_state(kind, request_id, State.RESULT, result=result)

    def record_reject(self, kind: str, request_id: int, reason: str) -> None:
        self._set_state(kind, request_id, State.REJECT, reject_reason=reason)

    def mark_done(self, kind: str, request_id: int, note: str) -> None:
        self._set_state(kind, request_id, State.DONE, note=note)

    def mark_all_done(self, items: list[tuple[str, int]], note: str) -> None:
        """`mark_done` for every request of an included tx, in one transaction (one fsync, not 20)."""
        now = time.time()
        self._write_many("UPDATE requests SET state=?, note=?, updated=? WHERE kind=? AND request_id=?",
                         [(State.DONE.value, note, now, kind, request_id) for kind, request_id in items], items)

    def reopen(self, kind: str, request_id: int, note: str) -> None:
        """Back to result/reject after a transaction that can no longer land (expired or failed)."""
        entry = self.get(kind, request_id)
        if entry is None or entry.state is not State.POSTING:
            return
        state = State.REJECT if entry.reject_reason is not None else State.RESULT
        self._set_state(kind, request_id, state, note=note, clear_tx=True)

    def _set_state(
        self,
        kind: str,
        request_id: int,
        state: State,
        *,
        result: bytes | None = None,
        reject_reason: str | None = None,
        note: str | None = None,
        clear_tx: bool = False,
    ) -> None:
        self._write(
            "UPDATE requests SET state=?, result=COALESCE(?, result), "
            "reject_reason=COALESCE(?, reject_reason), note=COALESCE(?, note), "
            "tx_hash=CASE WHEN ? THEN NULL ELSE tx_hash END, updated=? WHERE kind=? AND request_id=?",
            (state.value, result, reject_reason, note, clear_tx, time.time(), kind, request_id),
            (kind, request_id),
        )

    # --- transactions ----------------------------------------------------------------------------
    def record_tx(
        self, tx_hash: str, tx_bytes: bytes, sequence: int, timeout_height: int, items: list[tuple[str, int]]
    ) -> None:
        """Durably record a signed transaction and the requests it answers, before it is broadcast."""
        now = time.time()
        with self._lock:
            for item in items:
                self._entries.pop(item, None)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._save_held_locked()
                self._db.execute(
                    "INSERT INTO txs (tx_hash, tx_bytes, sequence, timeout_height, state, created) "
                    "VALUES (?, ?, ?, ?, 'sent', ?)",
                    (tx_hash, tx_bytes, sequence, timeout_height, now),
                )
                for kind, request_id in items:
                    self._db.execute(
                        "UPDATE requests SET state=?, tx_hash=?, updated=? WHERE kind=? AND request_id=?",
                        (State.POSTING.value, tx_hash, now, kind, request_id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._unsaved.clear()
            self._attempts.clear()

    def set_tx_state(self, tx_hash: str, state: str, code: int | None = None, log: str | None = None) -> None:
        self._write("UPDATE txs SET state=?, code=?, log=? WHERE tx_hash=?", (state, code, log, tx_hash))

    def open_txs(self) -> list[TxRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tx_hash, tx_bytes, sequence, timeout_height, state FROM txs "
                "WHERE state='sent' ORDER BY created"
            ).fetchall()
        return [TxRecord(*r) for r in rows]

    def items_of_tx(self, tx_hash: str) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, request_id FROM requests WHERE tx_hash=? ORDER BY request_id", (tx_hash,)
            ).fetchall()
        return [(k, int(r)) for k, r in rows]


def _entry(row: tuple) -> Entry:
    kind, request_id, state, attempt, result, reason, tx_hash, note = row
    return Entry(kind, int(request_id), State(state), int(attempt), result, reason, tx_hash, note)
