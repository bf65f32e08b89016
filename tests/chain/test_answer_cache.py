"""The dev node's query answers built once per stored object (chain_node/server.py AnswerCache).

An answer may be reused only while the store still holds the very object it was built from: every
change replaces the object (Store.set), so a changed request is answered afresh, never stale.
"""

from __future__ import annotations

from chain_client.proto_gen.zrchain.treasury.key_pb2 import Key
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import SignRequest
from chain_node import server
from chain_node.server import AnswerCache, sign_request_response
from chain_node.store import Overlay, Store

PENDING, PARTIAL = 1, 2


def _store(tmp_path) -> Store:
    store = Store(tmp_path / "state.sqlite")
    store.set("key", 1, Key(id=1, keyring_addr="kr"))
    store.set("signreq", 7, SignRequest(id=7, key_ids=[1], status=PENDING, mpc_btl=30))
    return store


def test_an_answer_is_reused_until_its_request_changes(tmp_path) -> None:
    store = _store(tmp_path)
    cache = AnswerCache(store)
    built: list[int] = []

    def build(request: SignRequest):
        built.append(request.id)
        return sign_request_response(request)

    first = cache.get("signreq", store.get("signreq", 7), build)
    assert cache.get("signreq", store.get("signreq", 7), build) is first and built == [7]
    overlay = Overlay(store)  # how a message handler changes a request: a private copy, then set
    request = overlay.get("signreq", 7)
    request.status = PARTIAL
    request.signed_data.add(sign_request_id=7, signed_data=b"sig")
    overlay.set("signreq", 7, request)
    overlay.commit()
    fresh = cache.get("signreq", store.get("signreq", 7), build)
    assert built == [7, 7]
    assert fresh.status == "SIGN_REQUEST_STATUS_PARTIAL" and fresh.signed_data[0].signed_data == b"sig"
    assert first.status == "SIGN_REQUEST_STATUS_PENDING"  # the old answer was not changed in place
    store.close()


def test_variants_are_kept_apart_and_replaced_objects_pruned(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(server, "ANSWER_CACHE_MIN", 4)
    store = _store(tmp_path)
    cache = AnswerCache(store)
    request = store.get("signreq", 7)
    plain = cache.get("signreq", request, lambda r: sign_request_response(r), variant=False)
    other = cache.get("signreq", request, lambda r: sign_request_response(r), variant=True)
    assert plain is not other
    for i in range(8, 12):  # each request answered, then replaced: the old answers must go
        store.set("signreq", i, SignRequest(id=i, key_ids=[1], status=PENDING))
        cache.get("signreq", store.get("signreq", i), sign_request_response)
        store.set("signreq", i, SignRequest(id=i, key_ids=[1], status=PARTIAL))
    cache.prune()
    assert len(cache._answers) == 2  # only request 7's two answers still match their objects
    store.close()
