"""The controller's planning rules and its durable journal."""

from __future__ import annotations

import itertools
import multiprocessing
import os

import pytest

from appliance.controller.journal import Journal, State
from appliance.rules.attempts import quorum, session_id
from appliance.rules.requests import (
    Decision,
    SignRequestView,
    clip_reason,
    plan_key_request,
    plan_sign_request,
)


def test_session_id_binds_every_field() -> None:
    base = ("zenrock", "keyring1abc", "sign", 7, 0)
    ids = {session_id(*base)}
    for i, other in enumerate(["other", "keyring1xyz", "key", 8, 1]):
        changed = list(base)
        changed[i] = other
        ids.add(session_id(*changed))
    assert len(ids) == 6 and all(len(i) == 32 for i in ids)


def test_quorum_is_deterministic_and_rotates_past_every_party() -> None:
    parties = [1, 2, 3, 4, 5]
    for request_id in range(20):
        first = quorum(parties, 3, request_id, 0)
        assert first == quorum(list(reversed(parties)), 3, request_id, 0)
        assert len(set(first)) == 3
        # Within n attempts, every party has been left out at least once (a silent party is skipped).
        left_out = set().union(*(set(parties) - set(quorum(parties, 3, request_id, a)) for a in range(5)))
        assert left_out == set(parties)
    with pytest.raises(ValueError):
        quorum(parties, 6, 1, 0)


def _sign(**kw) -> SignRequestView:
    fields = dict(request_id=1, key_type="KEY_TYPE_ECDSA_SECP256K1", key_ids=(1,),
                  data_for_signing=(bytes(32),), child_req_ids=(), mpc_btl=100)
    fields.update(kw)
    return SignRequestView(**fields)


@pytest.mark.parametrize(
    ("request_", "decision", "reason"),
    [
        (_sign(), Decision.RUN, ""),
        (_sign(key_type="KEY_TYPE_EDDSA_ED25519", data_for_signing=(b"hello",)), Decision.RUN, ""),
        (_sign(child_req_ids=(2, 3)), Decision.SKIP, "parent request"),
        (_sign(key_type="KEY_TYPE_UNSPECIFIED"), Decision.REJECT, "unsupported key type"),
        (_sign(data_for_signing=(bytes(31),)), Decision.REJECT, "32-byte digest"),
        (_sign(key_type="KEY_TYPE_BITCOIN_SECP256K1", data_for_signing=(bytes(33),)),
         Decision.REJECT, "32-byte"),
        (_sign(key_ids=(1, 2)), Decision.REJECT, "exactly one key"),
        (_sign(mpc_btl=12), Decision.SKIP, "too close to timeout"),
    ],
)
def test_sign_request_plans(request_: SignRequestView, decision: Decision, reason: str) -> None:
    plan = plan_sign_request(request_, height=10, margin=3)
    assert plan.decision is decision and reason in plan.reason


def test_key_request_plans_and_reason_clipping() -> None:
    assert plan_key_request("KEY_TYPE_EDDSA_ED25519", 100, 10, 3).decision is Decision.RUN
    assert plan_key_request("KEY_TYPE_FOO", 100, 10, 3).decision is Decision.REJECT
    assert plan_key_request("KEY_TYPE_ECDSA_SECP256K1", 12, 10, 3).decision is Decision.SKIP
    assert len(clip_reason("x" * 600)) == 512 and clip_reason("short") == "short"


def test_journal_lifecycle(tmp_path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.observe("sign", 5).state is State.SEEN
    journal.record_result("sign", 5, b"sig")
    journal.observe("sign", 5)  # seeing it again changes nothing
    assert journal.get("sign", 5).result == b"sig"
    journal.observe("key", 6)
    journal.record_reject("key", 6, "unsupported")
    journal.record_tx("AB", b"txbytes", 3, 40, [("sign", 5), ("key", 6)])
    assert [t.tx_hash for t in journal.open_txs()] == ["AB"]
    assert journal.items_of_tx("AB") == [("sign", 5), ("key", 6)]
    journal.reopen("key", 6, "tx expired")
    entry = journal.get("key", 6)
    assert entry.state is State.REJECT and entry.tx_hash is None
    journal.set_tx_state("AB", "included", 0)
    journal.mark_done("sign", 5, "included")
    assert journal.open_txs() == []
    assert [e.request_id for e in journal.entries(State.REJECT, State.RESULT)] == [6]
    journal.close()


def _record_then_die(path: str) -> None:
    journal = Journal(path)
    journal.observe("sign", 9)
    journal.record_result("sign", 9, b"s")
    journal.record_tx("CD", b"bytes", 1, 50, [("sign", 9)])
    os._exit(0)  # no close, no cleanup: like a SIGKILL right after the record


def test_journal_survives_abrupt_exit(tmp_path) -> None:
    path = str(tmp_path / "journal.sqlite")
    proc = multiprocessing.get_context("spawn").Process(target=_record_then_die, args=(path,))
    proc.start()
    proc.join(30)
    journal = Journal(path)
    assert journal.get("sign", 9).state is State.POSTING
    assert journal.open_txs()[0].tx_bytes == b"bytes"


def test_quorum_covers_all_subsets_over_requests() -> None:
    seen = {tuple(quorum([1, 2, 3], 2, rid, 0)) for rid in range(50)}
    assert seen == set(itertools.combinations([1, 2, 3], 2))
