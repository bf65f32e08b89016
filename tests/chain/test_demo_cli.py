"""The demo step and the `zrkeyring-chain` command line, run as an operator would."""

from __future__ import annotations

import json
import subprocess
import sys

from chain_node.demo import demo_step
from chain_node.local import ROOT, free_port


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chain_node.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_demo_step_reports_a_fulfilled_key_and_signature():
    lines = demo_step()
    text = "\n".join(lines)
    assert "KEY_REQUEST_STATUS_PARTIAL" in text and "KEY_REQUEST_STATUS_FULFILLED" in text
    assert "signature verifies" in text and lines[-1] == "chain node stopped"


def test_cli_help_lists_the_operator_commands(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("init", "start", "workspace-create", "keyring-create", "keyring-add-party", "key-request",
                    "sign-request", "show", "keyring-remove-party", "keyring-update", "keyring-admin"):  # fmt: skip
        assert command in result.stdout


def test_cli_owner_and_admin_flow(tmp_path):
    out = run_cli("init", "--chain-id", "cli-1", "--key", "owner", "--key", "party", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    keys = json.loads((tmp_path / "keys.json").read_text())
    assert set(keys["keys"]) == {"owner", "party"} and (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    endpoint = f"127.0.0.1:{free_port()}"
    node = subprocess.Popen(
        [sys.executable, "-m", "chain_node.cli", "start", "--genesis", "genesis.json", "--data-dir", "data",
         "--listen", endpoint, "--block-time", "0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert "listening" in node.stdout.readline() + node.stdout.readline()
        common = ["--node", endpoint, "--key", "owner"]
        workspace = run_cli("workspace-create", *common, cwd=tmp_path).stdout.split("workspace: ")[1].strip()
        keyring = run_cli("keyring-create", *common, cwd=tmp_path).stdout.split("keyring: ")[1].strip()
        added = run_cli("keyring-add-party", *common, "--keyring", keyring, "--party", "party", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        updated = run_cli("keyring-update", *common, "--keyring", keyring, "--threshold", "1", cwd=tmp_path)
        assert "threshold 1 of 1, active True" in updated.stdout, updated.stderr
        removed = run_cli("keyring-remove-party", *common, "--keyring", keyring, "--party", "party", cwd=tmp_path)
        assert removed.returncode == 0 and "removed from" in removed.stdout, removed.stderr
        shown = json.loads(run_cli("show", "--node", endpoint, "keyring", keyring, cwd=tmp_path).stdout)
        assert "parties" not in shown and "party_threshold" not in shown  # as upstream: 0 of 0
        again = run_cli("keyring-add-party", *common, "--keyring", keyring, "--party", "party", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        last = run_cli("keyring-admin", "remove", *common, "--keyring", keyring, "--admin", "owner", cwd=tmp_path)
        assert last.returncode == 1 and "is the last admin in keyring" in last.stderr
        # 600 blocks (a minute): each CLI call is a fresh Python process, on a slow host seconds, and the
        # chain's default 20 blocks of 0.1 s timed the request out before `show` read it (CI, 2 December)
        asked = run_cli("key-request", *common, "--workspace", workspace, "--keyring", keyring, "--btl", "600",
                        cwd=tmp_path)
        assert "key request: 1" in asked.stdout, asked.stderr
        shown = json.loads(run_cli("show", "--node", endpoint, "key-request", "1", cwd=tmp_path).stdout)
        assert shown["status"] == "KEY_REQUEST_STATUS_PENDING" and shown["keyring_addr"] == keyring
        refused = run_cli("key-request", "--node", endpoint, "--key", "party", "--workspace", workspace,
                          "--keyring", keyring, cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 1 and "is not an owner of workspace" in refused.stderr
        missing = run_cli("show", "--node", endpoint, "sign-request", "9", cwd=tmp_path)
        assert missing.returncode == 1 and "sign-request 9 not found" in missing.stderr
    finally:
        node.terminate()
        log = node.communicate(timeout=10)[0]
    assert "new_key_request" in log and "node stopped" in log
