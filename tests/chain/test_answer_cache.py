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


def test_a_listing_is_reused_while_the_state_stands_and_rebuilt_after_any_change(tmp_path) -> None:
    """ListingCache: the controllers, parties and watchers all list the same open requests after a
    block; one answer serves them until the store changes (any change: a request created, answered,
    timed out), and the request bytes key it (another keyring, status or page is another answer)."""
    from chain_client.proto_gen.zrchain.treasury import query_pb2
    from chain_node.server import ListingCache

    store = _store(tmp_path)
    cache = ListingCache(store)
    built: list[str] = []

    def build(tag: str):
        def make():
            built.append(tag)
            return query_pb2.QuerySignatureRequestsResponse()
        return make

    ask = query_pb2.QuerySignatureRequestsRequest(keyring_addr="kr", status=PENDING)
    other = query_pb2.QuerySignatureRequestsRequest(keyring_addr="kr", status=PARTIAL)
    first = cache.get("SignatureRequests", ask, build("a"))
    assert cache.get("SignatureRequests", ask, build("a")) is first
    assert cache.get("SignatureRequests", other, build("b")) is not first
    assert cache.get("KeyRequests", ask, build("c")) is not first  # another method, another answer
    assert built == ["a", "b", "c"]
    store.set("signreq", 8, SignRequest(id=8, key_ids=[1], status=PENDING, mpc_btl=30))
    assert cache.get("SignatureRequests", ask, build("a")) is not first
    assert built == ["a", "b", "c", "a"]
    store.close()


def test_expiry_copies_only_the_requests_it_rejects(tmp_path, monkeypatch) -> None:
    """A backlog of open requests is looked at in place each block; only the overdue ones are copied
    into the block's overlay and rejected (the others stay untouched objects: their cached answers
    live on)."""
    from chain_node import store as store_module
    from chain_node import treasury
    from chain_node.context import Context
    from chain_node.genesis import Params

    store = _store(tmp_path)
    for i in range(8, 108):
        store.set("signreq", i, SignRequest(id=i, key_ids=[1], status=PENDING, mpc_btl=1000))
    copies: list[int] = []
    real_copy = store_module._copy
    monkeypatch.setattr(store_module, "_copy", lambda v: (copies.append(getattr(v, "id", -1)), real_copy(v))[1])
    untouched = store.get("signreq", 50)
    ctx = Context(store=Overlay(store), height=31, params=Params())
    assert treasury.expire_requests(ctx, store) == 1  # request 7 (mpc_btl 30)
    ctx.store.commit()
    assert copies == [7]
    assert store.get("signreq", 7).status == 4  # REJECTED
    assert store.get("signreq", 50) is untouched
    store.close()
