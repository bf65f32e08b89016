"""`zrkeyring hsm init/status --config FILE` as an operator runs them: a real subprocess per command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import coincurve

from appliance.hsm.softhsm import write_hsm_config
from chain_client.address import account_address

ROOT = Path(__file__).resolve().parents[2]


def zrkeyring(token, *args, env_extra=None):
    env = {**token.env, **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert token.user_pin not in proc.stdout + proc.stderr
    return proc


def test_status_init_status(softhsm_token, tmp_path):
    config = str(write_hsm_config(softhsm_token, tmp_path))

    before = zrkeyring(softhsm_token, "hsm", "status", "--config", config)
    assert before.returncode == 3, before.stderr
    assert "zrkeyring-seal-v1: MISSING" in before.stdout and "missing none" in before.stdout

    init = zrkeyring(softhsm_token, "hsm", "init", "--config", config)
    assert init.returncode == 0, init.stderr
    assert init.stdout.count(": created") == 3
    lines = dict(line.split(":", 1) for line in init.stdout.splitlines() if ":" in line)
    chain_pub = bytes.fromhex(lines["chain public key (secp256k1)"].strip())
    coincurve.PublicKey(chain_pub)  # a valid curve point
    assert lines["chain address"].strip() == account_address(chain_pub)
    assert len(bytes.fromhex(lines["identity public key (Ed25519)"].strip())) == 32

    again = zrkeyring(softhsm_token, "hsm", "init", "--config", config)
    assert again.returncode == 0 and again.stdout.count(": present") == 3
    assert account_address(chain_pub) in again.stdout

    after = zrkeyring(softhsm_token, "hsm", "status", "--config", config)
    assert after.returncode == 0, after.stderr
    assert "ready:       yes" in after.stdout and softhsm_token.label in after.stdout
    assert "CKM_AES_GCM" in after.stdout and account_address(chain_pub) in after.stdout


def test_cli_errors_are_one_line(softhsm_token, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[hsm]\ntoken_label = "nope"\npin_env = "ZRK_PIN"\nmodule = "{softhsm_token.module}"\n'
    )
    proc = zrkeyring(softhsm_token, "hsm", "status", "--config", str(config), env_extra={"ZRK_PIN": "1234"})
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("zrkeyring: error: hsm.token_label: no token labelled 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1

    env_config = write_hsm_config(softhsm_token, tmp_path / "env", pin_via="env")
    wrong = zrkeyring(
        softhsm_token, "hsm", "init", "--config", str(env_config), env_extra={"ZRKEYRING_HSM_PIN": "0000"}
    )
    assert wrong.returncode == 1 and "wrong PIN" in wrong.stderr

    missing = zrkeyring(softhsm_token, "hsm", "init", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 1 and "config file not found" in missing.stderr
