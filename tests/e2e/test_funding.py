"""An unfunded party (issue 13, Fees): zrChain charges each fulfilment to its poster, and a party that
cannot pay fails its whole tx. The controller must instead hold its answers, say so once per interval,
show it in /metrics, let the funded parties fulfil where the threshold allows, and post what it owes
once an operator funds it. Real processes: chain node, three SoftHSM parties, three controllers."""

from __future__ import annotations

import secrets
import time

import pytest

from appliance.cli.status import EXIT_PROBLEM
from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.rules.attempts import quorum
from tests.e2e.test_metrics import metrics_url, run_status, scrape, total

POOR = 3  # the party left out of genesis
FEE = 1_000  # key_req_fee and sig_req_fee of the keyring


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    settings = LocalSettings(unfunded=(POOR,), key_req_fee=FEE, sig_req_fee=FEE)
    keyring = LocalKeyring(tmp_path_factory.mktemp("funding"), settings).setup().start()
    yield keyring
    keyring.close()


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _log_with(host, text: str) -> str:
    log = host.log("controller").read_text()
    return log if text in log else ""


def test_unfunded_party_waits_warns_and_posts_once_funded(net: LocalKeyring) -> None:
    poor = net.host(POOR)
    poor_url = metrics_url(poor, "controller")

    # The funded parties fulfil where the threshold (2 of 3) allows; the poor one posts nothing.
    key = net.key_for_request(net.wait_request("key", net.request_key("ecdsa"), timeout_s=40).id)
    sign_id = net.request_signature(key.id, secrets.token_bytes(32))
    req = net.wait_request("sign", sign_id, timeout_s=30)
    assert poor.chain_address not in {s.creator for s in req.keyring_party_sigs}

    log = _wait(lambda: _log_with(poor, "fund it"), 10, "the funds warning")
    assert f"account {poor.chain_address} holds 0 urock, needs" in log and "fund it (docs/operations.md)" in log
    samples = scrape(poor_url)
    assert total(samples, "zrkeyring_controller_balance_urock") == 0
    assert total(samples, "zrkeyring_controller_answers_affordable") == 0  # the critical alert's condition

    # A request that needs the poor party: the funded party outside the quorum is stopped.
    while POOR not in quorum([1, 2, 3], 2, sign_id + 1, 0):  # 2 of 3 windows hold party 3
        sign_id = net.request_signature(key.id, secrets.token_bytes(32))
        net.wait_request("sign", sign_id, timeout_s=30)
    signers = quorum([1, 2, 3], 2, sign_id + 1, 0)
    (idle,) = {1, 2} - set(signers)
    net.stop_role(idle, "controller")
    try:
        waiting_id = net.request_signature(key.id, secrets.token_bytes(32))
        assert waiting_id == sign_id + 1
        _wait(lambda: total(scrape(poor_url), "zrkeyring_controller_answers_waiting_for_funds") >= 1, 20,
              "the poor party's answer to wait for funds")
        samples = scrape(poor_url)
        assert total(samples, "zrkeyring_controller_fees_owed_urock") >= FEE
        held = _wait(lambda: (r := net.client.sign_request(waiting_id)).status == "SIGN_REQUEST_STATUS_PARTIAL"
                     and r, 10, "the funded signer's post")  # it may land a block after the poor one is ready
        assert len(held.keyring_party_sigs) == 1

        code, out = run_status(poor, poor.config("controller"))  # `zrkeyring status` names the problem
        assert code == EXIT_PROBLEM and f"FAIL  funds:          account {poor.chain_address} holds 0 urock" in out, out
        assert "cannot pay the next one: fund it" in out

        net.fund(POOR, 10_000_000)  # an operator's bank send; nothing was lost while it waited
        done = net.wait_request("sign", waiting_id, timeout_s=20)
        assert poor.chain_address in {s.creator for s in done.keyring_party_sigs}
        assert _wait(lambda: total(scrape(poor_url), "zrkeyring_controller_balance_urock") > 0, 10, "balance")
        assert "ok    funds:" in run_status(poor, poor.config("controller"))[1]
    finally:
        net.start_role(idle, "controller")

    # No failed-tx storm: the poor party never broadcast a tx the chain refused or failed.
    broadcasts = "zrkeyring_controller_tx_broadcasts_total"
    samples = _wait(lambda: (s := scrape(poor_url)) and total(s, broadcasts, result="committed") >= 1 and s,
                    10, "its tx")
    assert total(samples, broadcasts, result="rejected") == 0
    log = poor.log("controller").read_text()
    assert "refused by the node" not in log and "failed in block" not in log and "cannot prepare" not in log
    assert log.count("fund it (docs/operations.md)") <= 2  # one warning per 60 s interval, not per tick
    assert "answers that waited for funds" in log
