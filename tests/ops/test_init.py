"""`zrkeyring init`: both configs of a host from one command, commented like the templates, loaded by
the daemons' own config classes before they are written, never over local edits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.cli.init import template
from appliance.controller.service import ControllerConfig
from appliance.mpc_party.daemon import PartyConfig

ROOT = Path(__file__).resolve().parents[2]


def init(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", "init", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_init_writes_both_configs_that_load_and_keep_every_comment(tmp_path: Path) -> None:
    result = init("--index", "3", "--chain-id", "zrkeyring-dev-1", "--endpoint", "127.0.0.1:9090",
                  "--endpoint", "127.0.0.2:9090", "--agree", "2", "--plaintext-loopback", "--dir", str(tmp_path),
                  "--data-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "party.sock"),
                  "--pin-file", str(tmp_path / "pin"), "--metrics-host", "127.0.0.13")
    assert result.returncode == 0, result.stderr
    party, controller = PartyConfig.load(tmp_path / "party.toml"), ControllerConfig.load(tmp_path / "controller.toml")
    assert party.party.index == controller.controller.index == 3
    assert party.party.local_socket == controller.controller.party_socket == str(tmp_path / "party.sock")
    assert party.party.data_dir == str(tmp_path / "state" / "party")
    assert (party.metrics.address, controller.metrics.address) == ("127.0.0.13:9810", "127.0.0.13:9811")
    assert controller.controller.data_dir == str(tmp_path / "state" / "controller")
    for config in (party, controller):
        assert config.chain.chain_id == "zrkeyring-dev-1" and config.chain.agree == 2
        assert config.chain.endpoints == ["127.0.0.1:9090", "127.0.0.2:9090"]
        assert config.chain.plaintext_loopback_ok and not config.chain.tls_ca
        assert config.hsm.pin_file == str(tmp_path / "pin") and config.hsm.pin_credential is None
    for name in ("party.toml", "controller.toml"):
        written, shipped = (tmp_path / name).read_text().splitlines(), template(name).splitlines()
        assert len(written) == len(shipped)
        changed = {w.removeprefix("# ").split(" = ")[0] for w, s in zip(written, shipped, strict=True) if w != s}
        assert changed <= {"index", "roster", "tls_dir", "data_dir", "local_socket", "party_socket", "chain_id",
                           "endpoints", "agree", "tls_ca", "plaintext_loopback_ok", "pin_credential", "pin_file",
                           "token_label", "address"}, changed
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640


def test_init_never_overwrites_local_edits(tmp_path: Path) -> None:
    (tmp_path / "party.toml").write_text(template("party.toml"))  # what the .deb installed: replaced
    assert init("--index", "1", "--chain-id", "diamond-1", "--dir", str(tmp_path)).returncode == 0
    edited = (tmp_path / "party.toml").read_text() + "# my note\n"
    (tmp_path / "party.toml").write_text(edited)
    result = init("--index", "2", "--chain-id", "diamond-1", "--dir", str(tmp_path))
    assert result.returncode == 1 and "not the shipped template" in result.stderr and "--force" in result.stderr
    assert (tmp_path / "party.toml").read_text() == edited
    assert init("--index", "2", "--chain-id", "diamond-1", "--dir", str(tmp_path), "--force").returncode == 0
    assert PartyConfig.load(tmp_path / "party.toml").party.index == 2


def test_init_refuses_values_the_daemons_would_refuse(tmp_path: Path) -> None:
    for args, field in ((["--index", "0"], "party.index"),
                        (["--index", "1", "--endpoint", "node-without-port"], "chain.endpoints[0]"),
                        (["--index", "1", "--endpoint", "10.0.0.5:9090", "--plaintext-loopback"],
                         "chain.endpoints[0]")):
        result = init(*args, "--chain-id", "diamond-1", "--dir", str(tmp_path))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert field in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.iterdir())  # nothing written
