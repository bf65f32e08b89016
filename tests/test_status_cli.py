"""`zrkeyring status` and the `[metrics]` table without a running keyring: config detection, failures as lines.

The healthy path (every check ok against real processes) is in tests/e2e/test_metrics.py.
"""

from __future__ import annotations

import argparse
import sqlite3

import pytest
from prometheus_client import CollectorRegistry

from appliance.cli.status import Check, HostView, check_drain, journal_not_done, probe_peer, register
from appliance.controller.service import ControllerMetricsSection, reject_label
from appliance.mpc_party.daemon import PartyMetricsSection
from appliance.runtime.drain import Drain
from appliance.runtime.errors import ConfigError
from appliance.runtime.metrics_http import load_metrics_section, serve_configured

HSM = '[hsm]\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\ntoken_label = "t"\npin_env = "NO_SUCH_PIN_VAR"\n'
CHAIN = '[chain]\nchain_id = "c-1"\nendpoints = ["127.0.0.1:1"]\nplaintext_loopback_ok = true\n'


def test_config_kind_is_told_by_its_table(tmp_path) -> None:
    party = tmp_path / "party.toml"
    party.write_text(f'[party]\nindex = 2\nroster = "r.toml"\ntls_dir = "tls"\ndata_dir = "d"\n'
                     f'local_socket = "p.sock"\n{HSM}{CHAIN}')
    controller = tmp_path / "controller.toml"
    controller.write_text(f'[controller]\nindex = 3\nroster = "r.toml"\nparty_socket = "p.sock"\ndata_dir = "d"\n'
                          f"{HSM}{CHAIN}")
    view = HostView.load(party)
    assert (view.role, view.index, view.socket, view.tls_dir) == ("party", 2, "p.sock", "tls")
    view = HostView.load(controller)
    assert (view.role, view.index, view.socket, view.tls_dir) == ("controller", 3, "p.sock", "")
    other = tmp_path / "other.toml"
    other.write_text(HSM + CHAIN)
    with pytest.raises(ConfigError, match="neither a \\[party\\] nor a \\[controller\\]"):
        HostView.load(other)


def test_subcommand_registers_its_handler() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["status", "--config", "x.toml"])
    assert args.config == "x.toml" and callable(args.handler)


def test_lines_and_unreachable_peer() -> None:
    assert Check("hsm", True, "fine").line().startswith("ok    hsm:")
    assert Check("peers", False, "down").line().startswith("FAIL  peers:")
    assert probe_peer("127.0.0.1:1", 2, None, timeout=0.5) != ""  # nothing listens on port 1


def test_journal_counts_entries_not_done(tmp_path) -> None:
    assert journal_not_done(str(tmp_path)) is None
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.execute("CREATE TABLE requests (kind TEXT, request_id INTEGER, state TEXT)")
    db.executemany("INSERT INTO requests VALUES (?, ?, ?)",
                   [("key", 1, "done"), ("key", 2, "seen"), ("sign", 3, "posting"), ("sign", 4, "result")])
    db.commit()
    db.close()
    assert journal_not_done(str(tmp_path)) == {"key": 1, "sign": 2}


def test_metrics_table_optional_with_per_daemon_defaults() -> None:
    assert load_metrics_section({}, PartyMetricsSection).address == ""
    assert serve_configured(load_metrics_section({}, PartyMetricsSection), CollectorRegistry()) is None
    assert load_metrics_section({"metrics": {}}, PartyMetricsSection).address == "127.0.0.1:9810"
    assert load_metrics_section({"metrics": {}}, ControllerMetricsSection).address == "127.0.0.1:9811"
    with pytest.raises(ConfigError, match="metrics.address"):
        load_metrics_section({"metrics": {"address": "nowhere"}}, PartyMetricsSection)


def test_reject_reason_labels() -> None:
    assert reject_label("unsupported key type 'KEY_TYPE_X'") == "unsupported_key_type"
    assert reject_label("unknown key 7") == "unknown_key"
    assert reject_label("data_for_signing must be a 32-byte digest for ECDSA, got 16") == "invalid_request"


def test_drain_line_says_the_switch_and_how_to_resume(tmp_path) -> None:
    """A drained daemon takes no work: `status` must not say every line is ok while it is on."""
    assert check_drain("party", str(tmp_path)) == Check("drain", True, "off: taking new work")
    Drain(tmp_path).set(True)
    check = check_drain("controller", str(tmp_path))
    assert not check.ok and "the controller takes no new work" in check.detail
    assert "zrkeyring drain off" in check.detail and str(tmp_path / "drain") in check.detail
