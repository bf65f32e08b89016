"""`zrkeyring hsm change-pin` on a real SoftHSM token: the new PIN comes from a file, works at once,
the old one stops working, the keys stay; mistakes are one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.hsm import Hsm
from appliance.hsm.softhsm import write_hsm_config

ROOT = Path(__file__).resolve().parents[2]


def change_pin(env: dict[str, str], config: Path, new_pin_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", "hsm", "change-pin", "--config", str(config),
                           "--new-pin-file", str(new_pin_file)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def hsm_status(env: dict[str, str], config: Path) -> subprocess.CompletedProcess:
    """A fresh process, as the daemons are after a restart (a running one keeps its session)."""
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", "hsm", "status", "--config", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_change_pin(softhsm_token, tmp_path: Path) -> None:
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    with Hsm.connect(softhsm_token.module, softhsm_token.label, softhsm_token.user_pin) as hsm:
        hsm.provision()
        identity = hsm.identity_public_key().hex()
    new_pin = tmp_path / "new-pin"
    new_pin.write_text("a-new-user-pin-4711\n")
    result = change_pin(softhsm_token.env, config, new_pin)
    assert result.returncode == 0, result.stderr
    assert "changed" in result.stdout and "a-new-user-pin-4711" not in result.stdout + result.stderr

    old = hsm_status(softhsm_token.env, config)  # the config's PIN file still holds the old PIN
    assert old.returncode == 1 and "user PIN was rejected" in old.stderr and "Traceback" not in old.stderr
    pin_file = Path(config.read_text().split('pin_file = "')[1].split('"')[0])
    pin_file.write_text("a-new-user-pin-4711\n")  # what the operator does next
    now = hsm_status(softhsm_token.env, config)
    assert now.returncode == 0, now.stdout + now.stderr  # every key still there
    init = subprocess.run([sys.executable, "-m", "appliance.cli.main", "hsm", "init", "--config", str(config)],
                          cwd=ROOT, env=softhsm_token.env, capture_output=True, text=True, timeout=120)
    assert identity in init.stdout and "created" not in init.stdout  # the same keys, nothing new

    same = change_pin(softhsm_token.env, config, new_pin)
    assert same.returncode == 1 and "equals the current one" in same.stderr
    new_pin.write_text("\n")
    empty = change_pin(softhsm_token.env, config, new_pin)
    assert empty.returncode == 1 and "expected one line" in empty.stderr
