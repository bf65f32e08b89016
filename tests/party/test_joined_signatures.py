"""A party's joined-session signatures reach its own controller, which posts them as the session's
partner (mpc_party/joined.py, controller `_read_joined` / `_post_joined`): under overload most
requests that got a session and still timed out had only their opener's post, because the joiner's
controller never queued the request (docs/performance.md, "Joined sessions post at once")."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import nacl.signing

from appliance.controller.journal import Journal, State
from appliance.controller.service import JOINED_KEPT, Controller
from appliance.mpc_party.joined import JoinedSignatures
from appliance.mpc_party.local_api import LocalServer, PartyClient

DATA = b"message to sign"
ED25519 = "KEY_TYPE_EDDSA_ED25519"


def test_the_log_hands_out_each_entry_once_by_cursor_and_forgets_the_oldest() -> None:
    log = JoinedSignatures(kept=3)
    boot, cursor, found = log.since(0)
    assert (cursor, found) == (0, []) and len(boot) == 16
    for request_id in (10, 11):
        log.add(request_id, bytes([request_id]) * 64)
    _, cursor, found = log.since(0)
    assert cursor == 2 and [rid for rid, _ in found] == [10, 11]
    assert log.since(cursor)[1:] == (2, [])
    for request_id in (12, 13, 14):
        log.add(request_id, bytes([request_id]) * 64)
    _, cursor, found = log.since(2)  # 12 is still kept
    assert [rid for rid, _ in found] == [12, 13, 14] and cursor == 5
    _, cursor, found = log.since(0)  # a reader that fell behind gets what is left, from the oldest kept
    assert [rid for rid, _ in found] == [12, 13, 14] and cursor == 5
    assert log.since(99)[1:] == (5, [])  # a cursor from the future (a bogus one) is pulled back
    assert log.since(0, limit=2)[1:] == (4, found[:2])
    assert JoinedSignatures().boot != log.boot  # a restarted daemon is a new run


def test_the_controller_reads_joined_signatures_over_the_local_socket(tmp_path) -> None:
    log = JoinedSignatures()
    log.add(7, b"\x01" * 64)
    server = LocalServer(tmp_path / "party.sock", lambda job: b"", lambda: {}, joined=log.since).start()
    client = PartyClient(tmp_path / "party.sock")
    try:
        assert client.joined(0) == (log.boot, 1, [(7, b"\x01" * 64)])
        assert client.joined(1) == (log.boot, 1, [])
    finally:
        client.close()
        server.stop()
    down = PartyClient(tmp_path / "party.sock")
    assert down.joined(0, timeout=0.5) is None  # unreachable: the controller asks again next tick
    down.close()


class _Party:
    """The controller's local API: a JoinedSignatures log that a test can restart or take down."""

    def __init__(self) -> None:
        self.log, self.up, self.asked = JoinedSignatures(), True, []

    def joined(self, cursor: int):
        self.asked.append(cursor)
        return self.log.since(cursor) if self.up else None


def controller(tmp_path, party: _Party):
    journal = Journal(tmp_path / "journal.sqlite")
    return SimpleNamespace(party=party, journal=journal, _joined_boot="", _joined_next=0, _joined=OrderedDict(),
                           _settled={}, _doomed={}, _eager=set())


def read(c) -> None:
    Controller._read_joined(c)


def test_the_cursor_moves_on_and_restarts_from_zero_when_the_daemon_restarts(tmp_path) -> None:
    party = _Party()
    c = controller(tmp_path, party)
    party.log.add(5, b"a" * 64)
    read(c)
    assert c._joined == {5: b"a" * 64} and c._joined_next == 1
    party.up = False
    read(c)  # unreachable: nothing lost, the same cursor next time
    assert c._joined_next == 1
    party.up = True
    party.log = JoinedSignatures()  # the daemon restarted: its numbering starts again
    party.log.add(6, b"b" * 64)
    party.asked.clear()
    read(c)
    assert party.asked == [1, 0] and c._joined_next == 1 and set(c._joined) == {5, 6}


def test_the_held_signatures_are_bounded(tmp_path) -> None:
    party = _Party()
    party.log = JoinedSignatures(kept=JOINED_KEPT + 10)
    c = controller(tmp_path, party)
    for request_id in range(JOINED_KEPT + 10):
        party.log.add(request_id, b"s" * 64)
    while True:
        before = c._joined_next
        read(c)
        if c._joined_next == before:
            break
    assert len(c._joined) == JOINED_KEPT and 0 not in c._joined and JOINED_KEPT + 9 in c._joined


def request(request_id: int = 5):
    return SimpleNamespace(id=request_id, key_type=ED25519)


def test_a_joined_signature_that_verifies_is_journalled_and_posted_at_once(tmp_path) -> None:
    signing = nacl.signing.SigningKey.generate()
    c = controller(tmp_path, _Party())
    c.journal.observe("sign", 5)
    c._joined[5] = signing.sign(DATA).signature
    assert Controller._post_joined(c, request(), bytes(signing.verify_key), DATA)
    entry = c.journal.get("sign", 5)
    assert entry.state is State.RESULT and entry.result == signing.sign(DATA).signature
    assert ("sign", 5) in c._eager  # the session's partner: no late-poster wait
    assert 5 not in c._joined
    assert not Controller._post_joined(c, request(6), bytes(signing.verify_key), DATA)  # none held


def test_a_joined_signature_that_does_not_verify_is_never_posted(tmp_path, caplog) -> None:
    signing = nacl.signing.SigningKey.generate()
    c = controller(tmp_path, _Party())
    c.journal.observe("sign", 5)
    c._joined[5] = nacl.signing.SigningKey.generate().sign(DATA).signature  # another key's
    assert not Controller._post_joined(c, request(), bytes(signing.verify_key), DATA)
    assert c.journal.get("sign", 5).state is State.SEEN and not c._eager
    assert "joined session is invalid" in caplog.text
