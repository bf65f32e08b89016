"""A fulfilment tx that failed in a block newer than the controller's open-request listing: the listing is
read again before anything is re-posted. Before, the tick's height was read before that block, the
listing of that height was reused, and the reopened answer went straight back into a request the
failing block had just closed: a second failed tx (seen twice in a row in an overloaded run)."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.controller.journal import Journal, State
from appliance.controller.service import Controller


def controller(tmp_path, failed_at: int, listing_height: int):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.observe("sign", 5)
    journal.record_result("sign", 5, b"sig")
    journal.record_tx("AB" * 32, b"tx", 1, 100, [("sign", 5)])
    response = SimpleNamespace(code=18, height=failed_at, raw_log="sign request 5 is not pending or partial")
    chain = SimpleNamespace(get_tx=lambda tx_hash: SimpleNamespace(tx_response=response),
                            resync=lambda address: None)
    made = SimpleNamespace(journal=journal, chain=chain, height=listing_height, address="zen1me",
                           _sent_height={}, _listing=(listing_height, {("sign", 5): object()}))
    made._fail_tx = lambda tx_hash, code, raw_log: Controller._fail_tx(made, tx_hash, code, raw_log)
    return made


def test_a_tx_failed_in_a_newer_block_drops_the_listing(tmp_path) -> None:
    made = controller(tmp_path, failed_at=12, listing_height=11)
    Controller._follow_txs(made)
    assert made._listing is None  # the next listing is read afresh
    assert made.journal.get("sign", 5).state is State.RESULT  # reopened, to be planned against it


def test_a_listing_newer_than_the_failure_is_kept(tmp_path) -> None:
    made = controller(tmp_path, failed_at=12, listing_height=13)
    Controller._follow_txs(made)
    assert made._listing is not None and made._listing[0] == 13
