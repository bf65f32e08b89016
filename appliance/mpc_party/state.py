"""What a party must never forget across restarts: signing sessions it ran, signatures it made, OT
pairs it burned.

Two rules of docs/protocols/dkls23.md (selective aborts and repeated sessions) need memory that
survives a crash, an upgrade or an out-of-memory kill, because a restart is exactly what an attacker
would provoke:

- **Used signing sessions.** A signing session id is claimed here, durably (SQLite WAL,
  synchronous=FULL, committed before the call returns), before the first message of the session
  leaves, and a claimed id is never run again. Fresh per-session nonces already keep two runs from
  sharing OT pads; this is the second, independent line.
- **Burned pairs.** When a check whose outcome depends on this party's long-lived OT correlation fails
  (`CorrelationAbort`), the (key, peer) pair is marked here. The party then refuses every signing
  session of that key with that peer until the pair's base OTs have been re-run (`resetup`), and the
  mark is what makes the daemon resume the re-setup after a restart.

- **Signatures made.** The first signature this party made for a signature request; any later job
  for that request (another signer set, another attempt) gets the same signature instead of a second
  session, because zrChain rejects a request whose second posted signature differs from the first
  (docs/architecture.md, "Choosing signers").

The file holds no secret: session ids, signatures (public once posted), public keys, party indices and
reasons. Deleting it forgets the
marks (an operator action that docs/operations.md warns against); tampering with it is in the same
threat class as tampering with the share store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.runtime.errors import UserError
from appliance.runtime.sqlite import connect_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_sessions (
    session_id BLOB PRIMARY KEY,
    kind       TEXT NOT NULL,
    at         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sign_results (
    keyring    TEXT    NOT NULL,
    request_id INTEGER NOT NULL,
    signature  BLOB    NOT NULL,
    at         REAL    NOT NULL,
    PRIMARY KEY (keyring, request_id)
);
CREATE TABLE IF NOT EXISTS burned_pairs (
    keyring    TEXT    NOT NULL,
    public_key BLOB    NOT NULL,
    peer       INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    at         REAL    NOT NULL,
    PRIMARY KEY (keyring, public_key, peer)
);
"""


class StateError(UserError):
    """The party state file cannot be opened or written."""


@dataclass(frozen=True)
class BurnedPair:
    keyring: str
    public_key: bytes
    peer: int
    reason: str
    at: float


class PartyState:
    """The durable party state in one SQLite file; safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = connect_durable(self.path)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: cannot open the party state ({exc})") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{self.path}: cannot record party state ({exc})") from None

    # --- sessions ----------------------------------------------------------------------------------

    def claim_session(self, session_id: bytes, kind: str) -> bool:
        """Record `session_id` as used; False if it already was (then it must not run again).

        Returns only after the row is durable, so a crash right after cannot forget the claim."""
        return self._write("INSERT OR IGNORE INTO used_sessions (session_id, kind, at) VALUES (?,?,?)",
                           (bytes(session_id), kind, time.time())) == 1

    def session_used(self, session_id: bytes) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM used_sessions WHERE session_id=?", (bytes(session_id),))
            return row.fetchone() is not None

    # --- signatures made ---------------------------------------------------------------------------

    def record_signature(self, keyring: str, request_id: int, signature: bytes) -> None:
        """The first signature this party made for a request; kept (never replaced) so any later job
        for the request gets the same answer instead of a second session (docs/architecture.md,
        "Choosing signers": two different valid signatures would make the chain reject the request)."""
        self._write("INSERT OR IGNORE INTO sign_results (keyring, request_id, signature, at) VALUES (?,?,?,?)",
                    (keyring, int(request_id), bytes(signature), time.time()))

    def signature_of(self, keyring: str, request_id: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT signature FROM sign_results WHERE keyring=? AND request_id=?",
                                   (keyring, int(request_id))).fetchone()
        return bytes(row[0]) if row is not None else None

    # --- burned pairs ------------------------------------------------------------------------------

    def burn(self, keyring: str, public_key: bytes, peer: int, reason: str) -> bool:
        """Mark the pair; True if it was not marked before."""
        return self._write(
            "INSERT OR IGNORE INTO burned_pairs (keyring, public_key, peer, reason, at) VALUES (?,?,?,?,?)",
            (keyring, bytes(public_key), peer, reason, time.time())) == 1

    def clear_burn(self, keyring: str, public_key: bytes, peer: int) -> None:
        """The pair's base OTs were re-run: the mark goes."""
        self._write("DELETE FROM burned_pairs WHERE keyring=? AND public_key=? AND peer=?",
                    (keyring, bytes(public_key), peer))

    def burned_peers(self, keyring: str, public_key: bytes) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT peer FROM burned_pairs WHERE keyring=? AND public_key=?",
                                    (keyring, bytes(public_key))).fetchall()
        return {peer for (peer,) in rows}

    def burned(self) -> list[BurnedPair]:
        with self._lock:
            rows = self._db.execute(
                "SELECT keyring, public_key, peer, reason, at FROM burned_pairs ORDER BY at").fetchall()
        return [BurnedPair(k, bytes(pk), peer, reason, at) for k, pk, peer, reason, at in rows]
