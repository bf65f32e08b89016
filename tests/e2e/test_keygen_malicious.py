"""A malicious party that sends bad or no keygen messages to only one honest party (issue 14).

Party 2 runs the real daemon with its keygen messages to one victim corrupted or dropped, round by
round (tests/e2e/evil_party.py, `keygen-one`). For each case a key request must end either FULFILLED
with every honest party holding a committed share, or REJECTED (cleanly retried until it expired) with
no share left anywhere after the sweep; never one honest party holding a share the other lacks. Every
culprit an honest party names is party 2.
"""

from __future__ import annotations

import re
import time

import pytest

from appliance.local.localnet import LocalKeyring, LocalSettings
from tests.e2e.test_party_down_keygen import status

pytestmark = pytest.mark.slow
EVIL = 2
HONEST = (1, 3)

CASES = [  # (key type, mode, victim, protocol, round)
    ("ecdsa", "bad", 1, "dkls23-keygen", 1),
    ("ecdsa", "bad", 3, "dkls23-keygen", 2),
    ("ecdsa", "bad", 1, "dkls23-keygen", 3),
    ("ecdsa", "none", 3, "dkls23-keygen", 4),
    ("ecdsa", "bad", 1, "dkls23-keygen", 5),
    ("ed25519", "bad", 3, "dkg-ed25519", 1),
    ("ed25519", "none", 1, "dkg-ed25519", 2),
    ("ed25519", "bad", 1, "keygen-confirm", 1),
    ("ecdsa", "none", 3, "keygen-confirm", 1),
    ("ed25519", "none", 1, "keygen-holdings", 1),
    ("ed25519", "twin", 3, "dkg-ed25519", 1),  # equivocation: named from its two signed broadcasts
]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("keygen-malicious")
    keyring = LocalKeyring(root, LocalSettings(default_btl=60, attempt_blocks=10)).setup()
    keyring.control = root / "evil-control"
    keyring.control.write_text("")
    keyring.start({EVIL: ("tests.e2e.evil_party", {"ZRKEYRING_EVIL": "keygen-one",
                                                   "ZRKEYRING_EVIL_LOG": str(root / "evil.jsonl"),
                                                   "ZRKEYRING_EVIL_CONTROL": str(keyring.control)})})
    yield keyring
    keyring.close()


def end_of(net, request_id: int, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status_ = net.client.key_request(request_id).status
        if status_.endswith(("FULFILLED", "REJECTED")):
            return status_
        assert time.monotonic() < deadline, status_
        time.sleep(0.2)


def logs(net) -> dict[tuple[int, str], str]:
    return {(i, role): net.host(i).log(role).read_text() for i in HONEST for role in ("party", "controller")}


def culprits(net, before: dict[tuple[int, str], str]) -> set[int]:
    """Every party an honest daemon or controller named as a culprit since `before`."""
    text = "".join(now[len(before[key]):] for key, now in logs(net).items())
    return {int(m) for m in re.findall(r"culprit: party (\d+)", text)}


@pytest.mark.parametrize(("key_type", "mode", "victim", "protocol", "round_"), CASES,
                         ids=[f"{c[1]}-to-{c[2]}-{c[3]}-r{c[4]}" for c in CASES])
def test_one_victim_never_splits_the_honest_parties(net, key_type, mode, victim, protocol, round_) -> None:
    before = logs(net)
    net.control.write_text(f"{mode} {victim} {protocol} {round_}")
    request_id = net.request_key(key_type)
    outcome = end_of(net, request_id)
    net.control.write_text("")
    deadline = time.monotonic() + 60
    while True:  # the sweep (rejected: destroy) or the repair (fulfilled: missing share) settles it
        states = {i: status(net, i) for i in HONEST}
        holders = {i for i, s in states.items() if request_id in s["committed_keys"]}
        pending = {i for i, s in states.items() if request_id in s["pending_keys"]}
        settled = not pending and (holders == set(HONEST) if outcome.endswith("FULFILLED") else not holders)
        if settled:
            break
        assert time.monotonic() < deadline, (outcome, states)
        time.sleep(1)
    named = culprits(net, before)
    assert named <= {EVIL}, named
    if mode == "twin":
        text = "".join(now[len(before[key]):] for key, now in logs(net).items())
        assert f"party {EVIL} equivocated in keygen round 1" in text and named == {EVIL}
