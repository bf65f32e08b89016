"""The journal's cheap paths: held-back "seen" rows and attempts, one fsync per included tx.

Real SQLite files; a second Journal on the same file shows what is on disk.
"""

from __future__ import annotations

from appliance.controller.journal import Journal, State


def test_seen_rows_and_attempts_are_held_until_the_next_durable_write(tmp_path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    assert journal.observe("sign", 1).state is State.SEEN
    journal.set_attempt("sign", 1, 2)
    assert journal.get("sign", 1).state is State.SEEN and journal.get("sign", 1).attempt == 2
    other = Journal(path)
    assert other.get("sign", 1) is None  # not on disk yet: losing it in a crash only means seeing it again
    journal.record_result("sign", 1, b"sig")  # the held row is written first, in the same transaction
    fresh = Journal(path)
    entry = fresh.get("sign", 1)
    assert entry.state is State.RESULT and entry.result == b"sig" and entry.attempt == 2
    journal.observe("key", 7)
    journal.flush()
    assert Journal(path).get("key", 7).state is State.SEEN
    for j in (journal, other, fresh):
        j.close()


def test_a_whole_tx_is_marked_done_in_one_write(tmp_path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    items = [("sign", i) for i in range(1, 21)]
    for kind, request_id in items:
        journal.observe(kind, request_id)
        journal.record_result(kind, request_id, b"s%d" % request_id)
    journal.record_tx("EF", b"bytes", 4, 60, items)
    journal.mark_all_done(items, "included at height 9")
    assert all(journal.get(k, i).state is State.DONE for k, i in items)
    reread = Journal(tmp_path / "journal.sqlite")
    assert {reread.get(k, i).note for k, i in items} == {"included at height 9"}
    assert reread.entries(State.RESULT) == []
    journal.close()
    reread.close()
