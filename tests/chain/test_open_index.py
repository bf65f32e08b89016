"""The dev node's index of open requests by (keyring, status): list queries cost O(page).

The index must give exactly the answers of the filtering path it replaces, stay right as requests
change status, and be rebuilt the same from disk after a restart.
"""

from __future__ import annotations

import random

from chain_client.proto_gen.cosmos.base.query.v1beta1.pagination_pb2 import PageRequest
from chain_client.proto_gen.zrchain.treasury.key_pb2 import Key, KeyRequest
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import SignRequest
from chain_node.server import paginate, paginate_ids
from chain_node.store import Store

PENDING, PARTIAL, FULFILLED, REJECTED = 1, 2, 3, 4


def test_paginate_ids_answers_as_the_filtering_paginate() -> None:
    rng = random.Random(17)  # noqa: S311 (reproducible test data, not a secret)
    for _ in range(400):
        ids = sorted(rng.sample(range(1, 300), rng.randint(0, 60)))
        data = {i: f"r{i}" for i in ids}
        page = PageRequest(limit=rng.choice([0, 1, 5, 20, 100]), reverse=rng.random() < 0.4,
                           count_total=rng.random() < 0.5)
        if rng.random() < 0.5:
            page.key = rng.randint(0, 310).to_bytes(8, "big")
        else:
            page.offset = rng.choice([0, 1, 3, 10, 70])
        expected = paginate(((i, data[i]) for i in ids), page)
        assert paginate_ids(ids, data, page) == expected, (ids, page)


def test_the_index_follows_status_changes_and_survives_a_restart(tmp_path) -> None:
    store = Store(tmp_path / "state.sqlite")
    store.set("key", 1, Key(id=1, keyring_addr="kr-a"))
    store.set("key", 2, Key(id=2, keyring_addr="kr-b"))
    for i in range(1, 9):
        store.set("signreq", i, SignRequest(id=i, key_ids=[1 if i % 2 else 2], status=PENDING))
    store.set("keyreq", 5, KeyRequest(id=5, keyring_addr="kr-a", status=PENDING))
    assert store.open_ids("signreq", "kr-a", PENDING) == [1, 3, 5, 7]
    assert store.open_ids("signreq", "kr-b", PENDING) == [2, 4, 6, 8]
    store.set("signreq", 3, SignRequest(id=3, key_ids=[1], status=PARTIAL))
    store.set("signreq", 5, SignRequest(id=5, key_ids=[1], status=FULFILLED))
    store.set("signreq", 8, SignRequest(id=8, key_ids=[2], status=REJECTED))
    store.set("keyreq", 5, KeyRequest(id=5, keyring_addr="kr-a", status=PARTIAL))
    expected = {
        ("signreq", "kr-a", PENDING): [1, 7], ("signreq", "kr-a", PARTIAL): [3],
        ("signreq", "kr-b", PENDING): [2, 4, 6], ("keyreq", "kr-a", PARTIAL): [5],
    }
    for (ns, keyring, status), ids in expected.items():
        assert store.open_ids(ns, keyring, status) == ids
    assert store.open_ids("keyreq", "kr-a", PENDING) == []
    store.commit()
    store.close()
    reloaded = Store(tmp_path / "state.sqlite")
    try:
        assert {b: ids for b, ids in reloaded.open_index.items() if ids} == expected
    finally:
        reloaded.close()
