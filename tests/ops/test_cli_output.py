"""`--json` on the commands that print keys or state, the cluster digest over certificate and CA
contents, risky thresholds warned about, and help texts with defaults and examples."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli.main import build_parser
from appliance.hsm.softhsm import write_hsm_config
from appliance.rules.roster import Roster

ROOT = Path(__file__).resolve().parents[2]


def zrkeyring(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_hsm_init_and_status_json_feed_cluster_roster(softhsm_token, tmp_path: Path) -> None:
    """The keys `hsm init --json` prints go straight into `cluster roster`: nothing copied by hand."""
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    init = zrkeyring("hsm", "init", "--config", str(config), "--json", env=softhsm_token.env)
    assert init.returncode == 0, init.stderr
    keys = json.loads(init.stdout)
    assert set(keys["keys"].values()) == {"created"}
    assert len(bytes.fromhex(keys["identity_key"])) == 32 and keys["chain_address"].startswith("zen1")
    status = zrkeyring("hsm", "status", "--config", str(config), "--json", env=softhsm_token.env)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["ready"] is True and all(state["keys"].values()) and state["note"] == ""
    assert state["chain_address"] == keys["chain_address"]

    cluster = zrkeyring("cluster", "init", "--parties", "2", "--threshold", "2", "--out", str(tmp_path / "c"),
                        "--base-port", "7401", "--json")
    assert cluster.returncode == 0, cluster.stderr
    made = json.loads(cluster.stdout)
    assert [p["index"] for p in made["parties"]] == [1, 2] and made["threshold"] == 2
    filled = zrkeyring("cluster", "roster", "--bundle", made["out"], "--party", "1", "--identity-key",
                       keys["identity_key"], "--chain-address", keys["chain_address"], "--json")
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout) == {"party": 1, "roster": made["roster"], "missing": ["party-2"],
                                         "complete": False, "digest": ""}
    shown = zrkeyring("cluster", "show", "--roster", made["out"], "--json")
    assert shown.returncode == 3  # incomplete
    document = json.loads(shown.stdout)
    assert document["parties"][0]["identity_key"] == keys["identity_key"] and document["complete"] is False


def test_cluster_show_digest_covers_certificate_and_ca_contents(tmp_path: Path) -> None:
    """Two hosts with the same roster text but bundles from different `cluster init` runs (the
    certificate mismatch the troubleshooting table sends operators to digests for) now differ."""
    for name in ("a", "b"):
        made = zrkeyring("cluster", "init", "--parties", "3", "--threshold", "2", "--out", str(tmp_path / name))
        assert made.returncode == 0, made.stderr
    a, b = Roster.load(tmp_path / "a" / "roster.toml"), Roster.load(tmp_path / "b" / "roster.toml")
    assert a.to_toml() == b.to_toml()  # same text: paths, names, addresses
    assert a.digest() != b.digest()
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "a" / "party-1", copy)
    shutil.copy(copy / "roster-template.toml", copy / "roster.toml")  # what `cluster roster` puts there
    assert Roster.load(copy / "roster.toml").digest() == a.digest()  # a bundle copy equals the master
    shutil.copy(tmp_path / "b" / "certs" / "party-2.pem", copy / "certs" / "party-2.pem")
    assert Roster.load(copy / "roster.toml").digest() != a.digest()
    shutil.copy(tmp_path / "a" / "certs" / "party-2.pem", copy / "certs" / "party-2.pem")
    shutil.copy(tmp_path / "b" / "ca.pem", copy / "ca.pem")
    assert Roster.load(copy / "roster.toml").digest() != a.digest()


@pytest.mark.parametrize("parties, threshold, warning", [
    (3, 1, "threshold 1 of 3: any single party signs alone"),
    (3, 3, "threshold 3 of 3: every party must take part"),
    (3, 2, None),
])
def test_risky_thresholds_are_warned_about(tmp_path: Path, parties: int, threshold: int, warning: str | None) -> None:
    made = zrkeyring("cluster", "init", "--parties", str(parties), "--threshold", str(threshold), "--out",
                     str(tmp_path / "c"), "--json")
    assert made.returncode == 0, made.stderr
    json.loads(made.stdout)  # the warning stays on stderr
    if warning is None:
        assert made.stderr == ""
    else:
        assert f"zrkeyring: warning: {warning}" in made.stderr
        shown = zrkeyring("cluster", "show", "--roster", str(tmp_path / "c"))
        assert warning in shown.stderr


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaf_parsers(child, (*path, name))


def test_help_shows_defaults_and_examples_not_developer_docstrings() -> None:
    leaves = dict(_leaf_parsers(build_parser()))
    assert ("party", "run") in leaves and ("controller", "run") in leaves
    for path, parser in leaves.items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, path
        if path[0] != "demo":
            assert "example" in text, f"zrkeyring {' '.join(path)} --help has no example"
    party = leaves[("party", "run")].format_help()
    assert "`zrkeyring party run`:" not in party and "READY=1" in party
    init = leaves[("cluster", "init")].format_help()
    assert "(default: 7001)" in init and "(default: 3650)" in init
