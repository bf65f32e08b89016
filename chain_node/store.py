"""Chain state: in memory for speed, written to SQLite (WAL) once per block in one transaction.

Every block's changes are committed atomically with the new height, so a crash (even SIGKILL) loses
at most the block being built, never a committed one, and a restart reloads everything. Message
handlers work on an `Overlay`: their writes reach the store only if the whole message succeeds,
which gives Cosmos's "a failed message changes nothing" rule.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from chain_client.proto_gen.cosmos.tx.v1beta1.service_pb2 import GetTxResponse
from chain_client.proto_gen.zrchain.identity.identity_pb2 import Keyring, Workspace
from chain_client.proto_gen.zrchain.treasury.key_pb2 import Key, KeyRequest
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import (
    ICATransactionRequest,
    SignRequest,
    SignTransactionRequest,
)

OPEN_STATUSES = (1, 2)  # PENDING, PARTIAL (same numbers for key and sign requests)


@dataclass
class Account:
    address: str
    account_number: int
    sequence: int = 0
    balance: int = 0
    pub_key: str = ""  # hex of the compressed key, set by the account's first transaction


_PROTO: dict[str, type[Message]] = {
    "workspace": Workspace,
    "keyring": Keyring,
    "keyreq": KeyRequest,
    "signreq": SignRequest,
    "key": Key,
    "tx": GetTxResponse,
    "signtxreq": SignTransactionRequest,
    "icareq": ICATransactionRequest,
}
_INT_KEYED = {"keyreq", "signreq", "key", "signtxreq", "icareq"}
NAMESPACES = (*_PROTO, "account", "meta")


def _copy(value: Any) -> Any:
    if isinstance(value, Message):
        clone = type(value)()
        clone.CopyFrom(value)
        return clone
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value)
    return value


def _encode(ns: str, value: Any) -> bytes:
    if ns in _PROTO:
        return value.SerializeToString()
    if ns == "account":
        return json.dumps(dataclasses.asdict(value)).encode()
    return json.dumps(value).encode()


def _decode(ns: str, blob: bytes) -> Any:
    if ns in _PROTO:
        return _PROTO[ns].FromString(blob)
    if ns == "account":
        return Account(**json.loads(blob))
    return json.loads(blob)


class Store:
    """The committed state plus the changes of the block being built (`dirty`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (ns TEXT, k TEXT, v BLOB, PRIMARY KEY (ns, k))")
        self.data: dict[str, dict[Any, Any]] = {ns: {} for ns in NAMESPACES}
        self.open: dict[str, set[int]] = {"keyreq": set(), "signreq": set()}
        # Open requests by (namespace, keyring, status), ids ascending: a keyring's list query reads
        # one page of its own bucket instead of filtering every open request of the chain.
        self.open_index: dict[tuple[str, str, int], list[int]] = {}
        self._bucket: dict[tuple[str, int], tuple[str, str, int]] = {}
        self.dirty: set[tuple[str, Any]] = set()
        self.version = 0  # bumped by every change: answers built from the state are exact while it stands
        self._load()

    def _load(self) -> None:
        rows = self._db.execute("SELECT ns, k, v FROM state").fetchall()
        loaded: dict[str, list[tuple[Any, Any]]] = {ns: [] for ns in NAMESPACES}
        for ns, key, blob in rows:
            loaded[ns].append((int(key) if ns in _INT_KEYED else key, _decode(ns, blob)))
        for ns in sorted(loaded, key=lambda ns: ns != "key"):  # keys first: they name a sign request's keyring
            items = loaded[ns]
            for key, value in sorted(items, key=lambda kv: kv[0]) if ns in _INT_KEYED else items:
                self._put(ns, key, value)

    def _put(self, ns: str, key: Any, value: Any) -> None:
        self.data[ns][key] = value
        self.version += 1
        if ns in self.open:
            if value.status in OPEN_STATUSES:
                self.open[ns].add(key)
            else:
                self.open[ns].discard(key)
            self._reindex(ns, key, value)

    def _reindex(self, ns: str, key: int, value: Any) -> None:
        """Move a request to the bucket of its current (keyring, status), or out when it closes."""
        bucket = (ns, self.request_keyring(ns, value), value.status) if value.status in OPEN_STATUSES else None
        old = self._bucket.get((ns, key))
        if old == bucket:
            return
        if old is not None:
            ids = self.open_index[old]
            del ids[bisect.bisect_left(ids, key)]
            del self._bucket[(ns, key)]
        if bucket is not None:
            bisect.insort(self.open_index.setdefault(bucket, []), key)
            self._bucket[(ns, key)] = bucket

    def request_keyring(self, ns: str, request: Any) -> str:
        """The keyring a request is addressed to (a signature request's is its first key's)."""
        if ns == "keyreq":
            return request.keyring_addr
        key = self.data["key"].get(request.key_ids[0]) if request.key_ids else None
        return key.keyring_addr if key is not None else ""

    def open_ids(self, ns: str, keyring: str, status: int) -> list[int]:
        """Ids (ascending) of the open requests of `keyring` in `status`; the list is the index itself:
        read it under the app lock and do not change it."""
        return self.open_index.get((ns, keyring, status), [])

    def get(self, ns: str, key: Any) -> Any:
        """The stored object itself: callers that change it must go through an Overlay."""
        return self.data[ns].get(key)

    def set(self, ns: str, key: Any, value: Any) -> None:
        self._put(ns, key, value)
        self.dirty.add((ns, key))

    def values(self, ns: str) -> Iterator[Any]:
        return iter(self.data[ns].values())

    @property
    def height(self) -> int:
        return int(self.data["meta"].get("height", 0))

    def commit(self) -> None:
        """Write this block's changes and the height in one SQLite transaction (one fsync)."""
        rows = [(ns, str(key), _encode(ns, self.data[ns][key])) for ns, key in self.dirty]
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO state (ns, k, v) VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.dirty.clear()

    def close(self) -> None:
        self._db.close()


class Overlay:
    """Copy-on-read view of a store (or another overlay); `commit` hands the changed entries down.

    Reads return a private copy that stays cached, so a handler may change an object in place and
    then `set` it; only `set` entries are written back.
    """

    def __init__(self, parent: Store | Overlay) -> None:
        self.parent = parent
        self.cache: dict[tuple[str, Any], Any] = {}
        self.changed: dict[tuple[str, Any], None] = {}

    def get(self, ns: str, key: Any) -> Any:
        if (ns, key) in self.cache:
            return self.cache[(ns, key)]
        value = self.parent.get(ns, key)
        if value is not None:
            value = _copy(value)
            self.cache[(ns, key)] = value
        return value

    def set(self, ns: str, key: Any, value: Any) -> None:
        self.cache[(ns, key)] = value
        self.changed[(ns, key)] = None

    def commit(self) -> None:
        for ns, key in self.changed:
            self.parent.set(ns, key, self.cache[(ns, key)])
        self.cache.clear()
        self.changed.clear()

    def next_id(self, counter: str) -> int:
        """Allocate the next id of a sequence (ids start at 1, as on zrChain)."""
        value = int(self.get("meta", f"next_{counter}") or 1)
        self.set("meta", f"next_{counter}", value + 1)
        return value
