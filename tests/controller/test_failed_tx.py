"""A fulfilment tx that failed: each of its answers is read by id before it is re-planned (the one whose
request closed is settled, not re-posted into a fourth failing tx), and a failure in a block newer than the
open-request listing drops the listing (the tick read its height before that block)."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.controller.journal import Journal, State
from appliance.controller.service import Controller

STATUS = {5: "SIGN_REQUEST_STATUS_PARTIAL", 6: "SIGN_REQUEST_STATUS_FULFILLED"}


def controller(tmp_path, failed_at: int, listing_height: int):
    journal = Journal(tmp_path / "journal.sqlite")
    for request_id in STATUS:
        journal.observe("sign", request_id)
        journal.record_result("sign", request_id, b"sig")
    journal.record_tx("AB" * 32, b"tx", 1, 100, [("sign", 5), ("sign", 6)])
    response = SimpleNamespace(code=18, height=failed_at, raw_log="sign request 6 is not pending or partial")
    chain = SimpleNamespace(get_tx=lambda tx_hash: SimpleNamespace(tx_response=response),
                            resync=lambda address: None,
                            sign_request=lambda request_id: SimpleNamespace(status=STATUS[request_id]))
    made = SimpleNamespace(journal=journal, chain=chain, height=listing_height, address="zen1me",
                           _sent_height={}, _listing=(listing_height, {("sign", 5): object()}))
    made._fail_tx = lambda tx_hash, code, raw_log: Controller._fail_tx(made, tx_hash, code, raw_log)
    made._settle_closed = lambda entry: Controller._settle_closed(made, entry)
    return made


def test_a_tx_failed_in_a_newer_block_drops_the_listing(tmp_path) -> None:
    made = controller(tmp_path, failed_at=12, listing_height=11)
    Controller._follow_txs(made)
    assert made._listing is None  # the next listing is read afresh
    assert made.journal.get("sign", 5).state is State.RESULT  # reopened, to be planned against it
    assert made.journal.get("sign", 6).state is State.DONE  # the one that closed is not re-posted


def test_a_listing_newer_than_the_failure_is_kept(tmp_path) -> None:
    made = controller(tmp_path, failed_at=12, listing_height=13)
    Controller._follow_txs(made)
    assert made._listing is not None and made._listing[0] == 13
