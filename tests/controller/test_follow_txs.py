"""A controller looks up each in-flight tx once per chain height, not once per tick: a tx lands only
in a new block and expires by height, so a second GetTx at the same height cannot tell anything new."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.controller.journal import Journal, State
from appliance.controller.service import Controller


class Chain:
    """GetTx answers from `included` (hash -> height), counting lookups."""

    def __init__(self) -> None:
        self.included: dict[str, int] = {}
        self.lookups: list[str] = []

    def get_tx(self, tx_hash: str):
        self.lookups.append(tx_hash)
        height = self.included.get(tx_hash)
        if height is None:
            return None
        return SimpleNamespace(tx_response=SimpleNamespace(code=0, height=height, raw_log=""))

    def resync(self, address: str) -> int:
        return 0


def controller(tmp_path, height: int):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.observe("sign", 1)
    journal.record_result("sign", 1, b"sig")
    ctl = SimpleNamespace(journal=journal, chain=Chain(), height=height, address="zen1me", _tx_checked={},
                          _sent_height={}, inclusion_blocks=1.0, last_fulfilment=0.0,
                          _count_answer=lambda kind, request_id: None)
    ctl._fail_tx = lambda *a: Controller._fail_tx(ctl, *a)
    return ctl


def tick(ctl, height: int) -> None:
    ctl.height = height
    Controller._follow_txs(ctl)


def test_one_lookup_per_height_until_included(tmp_path) -> None:
    ctl = controller(tmp_path, 5)
    ctl.journal.record_tx("AA", b"tx", 3, 15, [("sign", 1)])
    ctl._tx_checked["AA"] = 5  # broadcast after reading height 5: it is in no block up to 5
    tick(ctl, 5)
    assert ctl.chain.lookups == []
    tick(ctl, 6)
    tick(ctl, 6)
    assert ctl.chain.lookups == ["AA"]
    ctl.chain.included["AA"] = 7
    tick(ctl, 7)
    assert ctl.chain.lookups == ["AA", "AA"]
    assert ctl.journal.get("sign", 1).state is State.DONE and not ctl.journal.open_txs()
    assert "AA" not in ctl._tx_checked


def test_a_tx_recovered_after_a_restart_is_looked_up_at_once_and_expires_by_height(tmp_path) -> None:
    ctl = controller(tmp_path, 20)
    ctl.journal.record_tx("BB", b"tx", 3, 18, [("sign", 1)])  # as found in the journal after a restart
    tick(ctl, 20)
    assert ctl.chain.lookups == ["BB"]
    assert not ctl.journal.open_txs()  # past its timeout height and not on chain: expired
    assert ctl.journal.get("sign", 1).state is State.RESULT  # its answer goes back to be posted again
    assert "BB" not in ctl._tx_checked


def test_the_liveness_view_is_read_at_most_every_refresh_interval(monkeypatch) -> None:
    """The party daemon's view changes only with its pings (0.5 s); reading it every 0.1 s tick cost
    the controller and the party a local RPC per tick."""
    from appliance.controller import service

    now = [100.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: now[0])
    reads: list[float] = []
    ctl = SimpleNamespace(_liveness_read=float("-inf"), party=None,
                          quorum=SimpleNamespace(refresh=lambda party: reads.append(now[0])))
    for step in range(6):  # ticks 0.1 s apart
        now[0] = 100.0 + 0.1 * step
        Controller._refresh_liveness(ctl)
    assert reads == [100.0, 100.0 + 0.1 * 3]


def test_a_request_with_a_job_running_is_not_planned_again_unless_a_signature_is_posted(tmp_path) -> None:
    """Planning again could only start a second job, which `_start` refuses; a signature another party
    posted meanwhile is still adopted (verified and repeated) at once."""
    import threading

    from appliance.controller.service import _Open

    planned: list[int] = []
    journal = Journal(tmp_path / "journal.sqlite")
    ctl = SimpleNamespace(journal=journal, _key_types={}, _running={("sign", 4)}, _lock=threading.Lock(),
                          address="zen1me", _consider_sign=lambda req: planned.append(req.id))
    ctl._posted_by_us = lambda req: Controller._posted_by_us(ctl, req)
    ctl._job_running = lambda tag: Controller._job_running(ctl, tag)

    def request(request_id: int, *posted: bytes):
        return SimpleNamespace(id=request_id, key_type="KEY_TYPE_ECDSA_SECP256K1", keyring_party_sigs=[],
                               HasField=lambda name: False,
                               signed_data=[SimpleNamespace(signed_data=p) for p in posted])

    Controller._consider(ctl, _Open("sign", request(4)))
    assert planned == []
    Controller._consider(ctl, _Open("sign", request(5)))
    Controller._consider(ctl, _Open("sign", request(4, b"their signature")))
    assert planned == [5, 4]
