"""The controller's fee arithmetic (appliance/controller/fees.py), as the chain charges posting parties."""

from __future__ import annotations

from appliance.controller.fees import UNLIMITED, Fees

FEES = Fees(key_req_fee=1_000, sig_req_fee=300, tx_fee=750_000)


def test_answer_fees_follow_the_chain():
    """Key fulfilments pay key_req_fee, key rejections nothing, every sign post (rejects too) sig_req_fee."""
    assert FEES.answer("key", reject=False) == 1_000
    assert FEES.answer("key", reject=True) == 0
    assert FEES.answer("sign", reject=False) == FEES.answer("sign", reject=True) == 300


def test_cost_counts_one_tx_fee_per_batch():
    answers = [("key", False)] * 25
    assert FEES.cost(answers, per_tx=20) == 2 * 750_000 + 25 * 1_000
    assert FEES.cost([], per_tx=20) == 0


def test_affordable_prefix_stops_at_the_first_answer_it_cannot_pay():
    answers = [("key", False), ("sign", False), ("key", True), ("key", False)]
    assert FEES.affordable_prefix(answers, 0) == 0
    assert FEES.affordable_prefix(answers, 749_999) == 0  # not even the tx fee
    assert FEES.affordable_prefix(answers, 751_000) == 1
    assert FEES.affordable_prefix(answers, 751_300) == 3  # the key rejection is free
    assert FEES.affordable_prefix(answers, 10**9) == 4


def test_answers_affordable_for_the_alert():
    assert FEES.answers_affordable(0, 20) == 0
    assert FEES.answers_affordable(751_000, 20) == 1
    assert FEES.answers_affordable(2 * (750_000 + 20_000), 20) == 40
    assert Fees(0, 0, 750_000).answers_affordable(1_500_000, 20) == 40
    assert Fees(0, 0, 0).answers_affordable(0, 20) == UNLIMITED
