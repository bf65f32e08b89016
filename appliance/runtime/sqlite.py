"""The one way the daemons open their SQLite files: WAL, synchronous=FULL, autocommit.

Every file here (shares, party state, controller journal) must not lose a committed row to a crash or
power cut: WAL with synchronous=FULL makes a commit durable before it returns. Callers use explicit
`BEGIN IMMEDIATE` transactions where they need several statements to land together.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect_durable(path: str | Path, *, secure_delete: bool = False) -> sqlite3.Connection:
    """Open (or create) `path`; sqlite3.DatabaseError if it is not a usable database.

    `secure_delete` zeroes deleted content in the file instead of only unlinking it (for secrets)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if secure_delete:
            db.execute("PRAGMA secure_delete=ON")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
