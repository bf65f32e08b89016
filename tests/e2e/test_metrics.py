"""/metrics of a real party daemon and controller during an end-to-end run, and `zrkeyring status`."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.cli.status import EXIT_OK, EXIT_PROBLEM
from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import ROOT
from appliance.mpc_party.local_api import JobFailed, PartyClient, SignJob

Samples = dict[tuple[str, frozenset], float]


def metrics_url(host, role: str) -> str:
    with host.config(role).open("rb") as handle:
        return f"http://{tomllib.load(handle)['metrics']['address']}/metrics"


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1 only
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over every series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def present(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


def scrape_until(url: str, ready, timeout_s: float = 30.0) -> Samples:
    """Scrape until `ready(samples)` (e.g. a peer gauge appears once a session has contacted it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def refuse_unknown_request(host, key) -> None:
    """A job for a request the chain does not hold: refused (a `chain_check` abort)."""
    client = PartyClient(host.socket)
    try:
        with pytest.raises(JobFailed, match="refused"):
            client.run(SignJob(10**9, "KEY_TYPE_ECDSA_SECP256K1", key.id, bytes(key.public_key), bytes(32),
                               (1, 2)), timeout=10)
    finally:
        client.close()


def test_sign_sessions_are_timed_on_the_signers(keyring, keys) -> None:
    sign_two(keyring, keys)
    counts = [total(scrape(metrics_url(h, "party")), "zrkeyring_party_session_duration_seconds_count", phase="sign")
              for h in keyring.hosts]
    assert sum(counts) >= 4, counts  # two requests, at least two signers each


def sign_two(keyring, keys) -> None:
    for key_type, data in (("ecdsa", secrets.token_bytes(32)), ("ed25519", b"metrics " + secrets.token_bytes(8))):
        key = keys[key_type]
        req = keyring.wait_request("sign", keyring.request_signature(key.id, data))
        verify_independently(key_type, bytes(key.public_key), data, bytes(req.signed_data[0].signed_data))


def test_party_metrics_after_keygen_and_signing(keyring, keys) -> None:
    sign_two(keyring, keys)
    refuse_unknown_request(keyring.host(1), keys["ecdsa"])
    s = scrape_until(metrics_url(keyring.host(1), "party"),
                     lambda s: total(s, "zrkeyring_party_peer_up") == 2)
    assert total(s, "zrkeyring_build_info") == 1
    for protocol in ("dkls23", "frost-ed25519"):
        assert total(s, "zrkeyring_party_session_duration_seconds_count", protocol=protocol, phase="keygen") >= 1
        assert total(s, "zrkeyring_party_sessions_started_total", protocol=protocol, phase="keygen") >= 1
    assert total(s, "zrkeyring_party_sessions_aborted_total", reason="chain_check", culprit="none") >= 1
    for operation in ("seal", "sign_identity", "random"):
        assert total(s, "zrkeyring_hsm_operation_duration_seconds_count", operation=operation) > 0, operation
        assert total(s, "zrkeyring_hsm_errors_total", operation=operation) == 0
    assert total(s, "zrkeyring_party_peer_up", peer="2") == 1
    assert total(s, "zrkeyring_party_peer_up", peer="3") == 1
    assert total(s, "zrkeyring_party_peer_last_seen_timestamp_seconds", peer="2") > time.time() - 600
    # pools are off on this keyring: the series exist, at 0 (tests/e2e/test_presign_pool.py turns them on)
    assert present(s, "zrkeyring_party_presignature_pool_size")
    assert total(s, "zrkeyring_party_presignature_pool_size") == 0
    assert total(s, "zrkeyring_party_envelopes_total", result="accepted") > 0
    assert total(s, "zrkeyring_party_sessions_active") == 0


def test_controller_metrics_after_keygen_and_signing(keyring, keys) -> None:
    sign_two(keyring, keys)
    urls = [metrics_url(h, "controller") for h in keyring.hosts]

    def answered(kind: str) -> float:
        return sum(total(scrape(u), "zrkeyring_controller_requests_fulfilled_total", kind=kind) for u in urls)

    # A request is FULFILLED once `threshold` parties posted, so a third party may rightly post nothing:
    # count fulfilments over all controllers (3 keys and at least 2 signatures, two parties each).
    deadline = time.monotonic() + 30
    while (answered("key") < 6 or answered("signature") < 4) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answered("key") >= 6 and answered("signature") >= 4
    s = scrape(urls[0])
    assert total(s, "zrkeyring_build_info") == 1
    for key_type in ("ecdsa_secp256k1", "bitcoin_secp256k1", "eddsa_ed25519"):
        # keygen needs all
        assert total(s, "zrkeyring_controller_requests_seen_total", kind="key", key_type=key_type) >= 1
    assert total(s, "zrkeyring_controller_requests_seen_total", kind="signature") >= 1
    # No rejection here: the chain node refuses malformed requests before any controller sees them.
    assert total(s, "zrkeyring_controller_requests_rejected_total") == 0
    assert total(s, "zrkeyring_controller_chain_height") > 0
    assert 0 <= total(s, "zrkeyring_controller_chain_poll_lag_seconds") < 60
    assert total(s, "zrkeyring_controller_chain_last_poll_timestamp_seconds") > time.time() - 60
    assert total(s, "zrkeyring_controller_tx_broadcasts_total", result="committed") >= 1
    assert total(s, "zrkeyring_controller_last_fulfilment_timestamp_seconds") > time.time() - 600
    assert present(s, "zrkeyring_controller_pending_requests")
    for gauge in ("zrkeyring_controller_pending_requests_near_timeout",
                  "zrkeyring_controller_pending_request_oldest_age_seconds"):
        assert present(s, gauge) and 0 <= total(s, gauge) < 600
    assert total(s, "zrkeyring_hsm_operation_duration_seconds_count", operation="sign_chain") > 0
    assert total(s, "zrkeyring_controller_party_up") == 1


STATUS = ("import argparse, sys; from appliance.cli.status import status; "
          "sys.exit(status(argparse.Namespace(config=sys.argv[1])))")


def run_status(host, path) -> tuple[int, str]:
    """In its own process with the host's environment: each host has its own SoftHSM configuration."""
    done = subprocess.run([sys.executable, "-c", STATUS, str(path)], cwd=ROOT, env=host.env, capture_output=True,
                          text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_status_of_a_healthy_host(keyring, keys) -> None:
    host = keyring.host(2)
    for role in ("party", "controller"):
        code, out = run_status(host, host.config(role))
        assert code == EXIT_OK, out
        lines = out.splitlines()
        assert lines[0].startswith(f"zrkeyring {role} 2")
        names = [line.split(":")[0].split(maxsplit=1)[1] for line in lines[1:]]
        assert names == ["drain", "hsm", "party daemon", "peers", "chain", "pending work", "funds", "keys"], out
        assert "3 on chain: 3 held" in out, out
        assert "token 'party-2'" in out and "height " in out and keyring.keyring in out
        assert ("over mTLS" if role == "party" else "over TCP") in out


def test_status_reports_a_missing_party_daemon(keyring, keys, tmp_path) -> None:
    host = keyring.host(2)
    text = host.config("controller").read_text().replace(str(host.socket), str(tmp_path / "nobody.sock"))
    config = tmp_path / "controller.toml"
    config.write_text(text)
    code, out = run_status(host, config)
    assert code == EXIT_PROBLEM, out
    assert any(line.startswith("FAIL  party daemon:") for line in out.splitlines()), out
    assert any(line.startswith("ok    chain:") for line in out.splitlines()), out
