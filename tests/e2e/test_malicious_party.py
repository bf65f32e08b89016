"""One malicious party against running daemons (issue 11): both key-extraction strategies, end to end.

Party 2 runs the real daemon with its DKLs23 behaviour changed (tests/e2e/evil_party.py). Parties 1 and
3 and every controller are the shipped code. The honest parties must keep every share secret, fulfil
every request (or reject it cleanly), and re-set-up a burned pair without an operator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import CHAIN_ID, ROOT, LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import JobFailed, PartyClient, SignJob
from appliance.rules.attempts import quorum, session_id

pytestmark = pytest.mark.slow
EVIL = 2
HONEST = (1, 3)

# Runs in an honest party's own environment after its daemon stopped: its current Delta toward party 2
# for every ECDSA key (test-only; production never prints key material).
DELTAS = """
import json, sys
from appliance.hsm import Hsm, load_hsm_config
from appliance.hsm.store import ShareStore, open_share
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23.keyshare import delta_bits
hsm = Hsm.open(load_hsm_config(sys.argv[1]))
store = ShareStore(sys.argv[2], hsm)
out = {}
for record in store.all_active():
    if record.meta.key_type != "KEY_TYPE_EDDSA_ED25519":
        key = dispatch.import_share(record.meta.key_type, open_share(hsm, record))
        out[key.public_key.hex()] = {"delta": delta_bits(key.pairs[2].delta), "secret": key.secret}
print(json.dumps(out))
hsm.close()
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("malicious")
    keyring = LocalKeyring(root, LocalSettings(attempt_blocks=30, default_btl=200)).setup()
    keyring.evil_log = root / "evil.jsonl"
    keyring.start({EVIL: ("tests.e2e.evil_party",
                          {"ZRKEYRING_EVIL": "bitflip", "ZRKEYRING_EVIL_LOG": str(keyring.evil_log)})})
    yield keyring
    keyring.close()


def _evil_entries(net) -> list[dict]:
    if not net.evil_log.exists():
        return []
    return [json.loads(line) for line in net.evil_log.read_text().splitlines() if line.strip()]


def _log(net, index: int, role: str = "party") -> str:
    return net.host(index).log(role).read_text()


def _sign_and_verify(net, key, data: bytes) -> None:
    request_id = net.request_signature(key.id, data)
    req = net.wait_request("sign", request_id, timeout_s=120)
    verify_independently("ecdsa", bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))


def _knowledge(entries: list[dict], public_key: str, honest: int) -> dict[int, int]:
    """What the adversary knows of the honest party's Delta now in use: the columns of sessions with
    that party that completed since the last re-setup of the pair (each says Delta_l = 0)."""
    known: dict[int, int] = {}
    for e in entries:
        if e.get("resetup") == honest and e.get("public_key") == public_key:
            known = {}
        elif "column" in e and e["public_key"] == public_key and honest in e["signers"] and e["ok"]:
            known[e["column"]] = 0
    return known


def test_bit_flip_peer_is_contained_and_every_request_fulfilled(net) -> None:
    key_request = net.request_key("ecdsa")
    net.wait_request("key", key_request, timeout_s=60)
    key = net.key_for_request(key_request)
    for n in range(40):
        _sign_and_verify(net, key, f"bit flip {n}".encode().ljust(32, b".")[:32])
        burned = [i for i in HONEST if "BURNED" in _log(net, i)]
        if burned and n >= 7:
            break
    assert burned, "40 sessions and no honest party's check ever failed: the attack did not run"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the re-setup runs by itself, no operator
        if all(_log(net, i).count("BURNED") <= _log(net, i).count("re-set up") for i in HONEST):
            break
        time.sleep(0.5)
    for i in burned:
        log = _log(net, i)
        assert "with party 2 BURNED" in log and "re-set up" in log
    for i in HONEST:
        status = PartyClient(net.host(i).socket)
        try:
            assert status.status(timeout=5)["burned_pairs"] == []
        finally:
            status.close()
    _sign_and_verify(net, key, b"after the re-setup".ljust(32, b"."))
    net.stop_role(EVIL, "party")  # the adversary's log is complete
    entries = _evil_entries(net)
    assert any("resetup" in e for e in entries)
    for i in HONEST:
        net.stop_role(i, "controller")
        net.stop_role(i, "party")
        host = net.host(i)
        hsm_toml = next((host.directory / "secrets").glob("*.toml"))
        store = host.directory / "data" / "shares.sqlite"
        out = subprocess.run([sys.executable, "-c", DELTAS, str(hsm_toml), str(store)],
                             cwd=ROOT, env=host.env, capture_output=True, text=True, timeout=60, check=True)
        real = json.loads(out.stdout)[bytes(key.public_key).hex()]
        known = _knowledge(entries, bytes(key.public_key).hex(), i)
        assert all(real["delta"][col] == bit for col, bit in known.items())
        assert len(known) < 30, f"the adversary knows {len(known)} bits of party {i}'s Delta"
        best_guess = [known.get(col, 0) for col in range(128)]
        assert best_guess != real["delta"]
    for i in HONEST:
        net.start_role(i, "party")
        net.wait_party_ready(i)
        net.start_role(i, "controller")


def test_withholding_peer_cannot_make_a_restarted_party_rerun_a_session(net) -> None:
    net.stop_role(EVIL, "party")
    net.start_role(EVIL, "party", module="tests.e2e.evil_party",
                   env={"ZRKEYRING_EVIL": "withhold", "ZRKEYRING_EVIL_LOG": str(net.evil_log)})
    net.wait_party_ready(EVIL)
    key_request = net.request_key("ecdsa")
    net.wait_request("key", key_request, timeout_s=60)
    key = net.key_for_request(key_request)
    for _ in range(12):  # a request whose first quorum pairs the withholder with an honest party
        data = bytes(32)
        request_id = net.request_signature(key.id, data)
        signers = quorum([1, 2, 3], 2, request_id, 0)
        if EVIL in signers:
            break
        net.wait_request("sign", request_id, timeout_s=60)
    honest = next(j for j in signers if j != EVIL)
    sid = session_id(CHAIN_ID, net.keyring, "sign", request_id, 0, signers)
    deadline = time.monotonic() + 30
    while not any(e.get("withheld") == sid.hex() for e in _evil_entries(net)):
        assert time.monotonic() < deadline, "the adversary never reached its round-3 share"
        time.sleep(0.1)
    # the honest party now waits for the withheld share; it is restarted inside the attempt window
    net.stop_role(honest, "party", kill=True)  # an upgrade, `systemctl restart`, an OOM kill
    net.start_role(honest, "party")
    net.wait_party_ready(honest)
    job = SignJob(request_id, "KEY_TYPE_ECDSA_SECP256K1", key.id, bytes(key.public_key), data, tuple(signers), 0)
    client = PartyClient(net.host(honest).socket)
    try:
        with pytest.raises(JobFailed, match="already ran"):
            client.run(job, timeout=30)
        # the local socket cannot choose a signer set of another size or mint attempts either
        with pytest.raises(JobFailed, match="distinct parties"):
            client.run(SignJob(request_id, job.key_type, key.id, job.public_key, data, (1, 2, 3), 1), timeout=30)
        future = next(a for a in range(10_000, 10_010) if honest in quorum([1, 2, 3], 2, request_id, a))
        with pytest.raises(JobFailed, match="not current"):
            client.run(SignJob(request_id, job.key_type, key.id, job.public_key, data,
                               tuple(quorum([1, 2, 3], 2, request_id, future)), future), timeout=30)
    finally:
        client.close()
    assert f"session {sid.hex()[:12]} already ran" in _log(net, honest)
    # the request is still answered: the attempt clock rotates the quorum away from the withholder
    req = net.wait_request("sign", request_id, timeout_s=120)
    verify_independently("ecdsa", bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))
