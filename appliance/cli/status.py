"""`zrkeyring status --config FILE`: one line per thing a party host needs, and an exit code for scripts.

Given the party daemon's or the controller's config (told apart by its `[party]` / `[controller]`
table) it checks, in the order an operator would: the daemon's drain switch (on: no new work taken),
the HSM (login, token, keys), the local party daemon (its unix socket answers `status`), every peer in
the roster (a connection, with the party's mTLS credential when the config names its TLS bundle, else
plain TCP), the chain (height and chain id, which must match the config), and the pending work
(requests for this keyring open on chain, and the controller journal's entries not done, if its data
directory is readable here), and the funds (this party's chain account balance against the keyring's
fees: how many answers it pays for).

Exit 0 when every check is ok, 3 otherwise. Nothing here writes: the journal is opened read-only.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from appliance.cli.output import HelpFormatter, add_json_flag, emit
from appliance.cluster.ca import party_cn
from appliance.controller.fees import UNLIMITED, Fees
from appliance.controller.service import MAX_ANSWERS_PER_TX
from appliance.hsm import Hsm, HsmConfig
from appliance.mpc_party.local_api import JobFailed, PartyClient
from appliance.mpc_party.transport import TlsCredentials
from appliance.rules.roster import Roster, split_address
from appliance.runtime.chain import ChainSection
from appliance.runtime.config import load_section, read_toml
from appliance.runtime.drain import Drain
from appliance.runtime.errors import ConfigError, UserError
from chain_client.client import ChainClient

EXIT_OK, EXIT_PROBLEM = 0, 3
PROBE_TIMEOUT_S = 2.0
OPEN_STATUSES = ("PENDING", "PARTIAL")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name + ':':<15} {self.detail}"


@dataclass(frozen=True)
class HostView:
    """What both config kinds tell us about the host (the fields `status` needs)."""

    role: str
    index: int
    roster: str
    socket: str
    data_dir: str
    tls_dir: str
    hsm: HsmConfig
    chain: ChainSection

    @classmethod
    def load(cls, path: str | Path) -> HostView:
        data = read_toml(path)
        hsm, chain = load_section(data, "hsm", HsmConfig), load_section(data, "chain", ChainSection)
        if isinstance(data.get("party"), dict):
            p = data["party"]
            return cls("party", _int(p, "party.index"), _str(p, "party.roster"), _str(p, "party.local_socket"),
                       _str(p, "party.data_dir"), _str(p, "party.tls_dir"), hsm, chain)
        if isinstance(data.get("controller"), dict):
            c = data["controller"]
            return cls("controller", _int(c, "controller.index"), _str(c, "controller.roster"),
                       _str(c, "controller.party_socket"), _str(c, "controller.data_dir"), "", hsm, chain)
        raise ConfigError(f"{path}: neither a [party] nor a [controller] table: not a zrkeyring daemon config")


def _str(table: dict[str, Any], key: str) -> str:
    value = table.get(key.split(".", 1)[1])
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a string")
    return value


def _int(table: dict[str, Any], key: str) -> int:
    value = table.get(key.split(".", 1)[1])
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer")
    return value


def _guarded(name: str, probe: Callable[[], Check]) -> Check:
    """Run one probe; any failure becomes a FAIL line instead of ending the report."""
    try:
        return probe()
    except (UserError, JobFailed, OSError, grpc.RpcError, grpc.FutureTimeoutError, sqlite3.Error) as exc:
        return Check(name, False, _one_line(exc))
    except Exception as exc:  # a status report must report, not crash
        return Check(name, False, f"{type(exc).__name__}: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    return " ".join(str(exc).split()) or type(exc).__name__


def check_hsm(hsm: Hsm) -> Check:
    status = hsm.status()
    missing = [label for label, present in status.keys.items() if not present]
    keys = f"keys present: {', '.join(sorted(status.keys))}" if not missing else f"keys MISSING: {', '.join(missing)}"
    mechs = f"; mechanisms missing: {', '.join(status.mechanisms_missing)}" if status.mechanisms_missing else ""
    return Check("hsm", status.ready, f"token {status.token_label!r} logged in, {keys}{mechs}")


def check_party(socket_path: str) -> Check:
    client = PartyClient(socket_path)
    try:
        body = client.status(timeout=PROBE_TIMEOUT_S)
    finally:
        client.close()
    live = body.get("live")
    seen = f"; sees live: {', '.join(str(p) for p in live)}" if isinstance(live, list) else ""
    return Check("party daemon", True, f"party {body.get('party')} answers on {socket_path} "
                 f"({body.get('sessions', 0)} sessions run{seen}; {_keys_line(body)})")


def _keys_line(body: dict[str, Any]) -> str:
    """Shares held, and the key requests whose share here is pending or missing (being repaired)."""
    line = f"{len(body.get('committed_keys', []))} keys"
    if body.get("pending_keys"):
        line += f", pending share of key requests {body['pending_keys']}"
    if body.get("missing_keys"):
        line += f", missing key requests {sorted(int(k) for k in body['missing_keys'])} (repair runs by itself)"
    return line


def probe_peer(address: str, index: int, tls: TlsCredentials | None, timeout: float = PROBE_TIMEOUT_S) -> str:
    """'' when party `index` at `address` accepts a connection (an mTLS handshake with `tls`), else why not."""
    if tls is None:
        host, port = split_address(address)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            return exc.strerror or str(exc)
        return ""
    creds = grpc.ssl_channel_credentials(root_certificates=tls.ca_pem, private_key=tls.key_pem,
                                         certificate_chain=tls.cert_pem)
    channel = grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", party_cn(index))])
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return ""
    except grpc.FutureTimeoutError:
        return f"no mTLS connection within {timeout:.0f} s"
    finally:
        channel.close()


def check_peers(roster: Roster, me: int, tls: TlsCredentials | None) -> Check:
    peers = [p for p in roster.parties if p.index != me]
    problems = {p.index: why for p in peers if (why := probe_peer(p.address, p.index, tls))}
    how = "mTLS" if tls is not None else "TCP"
    if problems:
        detail = "; ".join(f"party {i} unreachable: {why}" for i, why in sorted(problems.items()))
        return Check("peers", False, f"{detail} ({how})")
    return Check("peers", True, f"{len(peers)} reachable over {how}: " +
                 ", ".join(f"party {p.index} {p.address}" for p in peers))


def check_chain(chain: ChainClient, expected_chain_id: str) -> Check:
    chain_id, height, _when = chain.latest_block()
    if chain_id != expected_chain_id:
        return Check("chain", False, f"node reports chain id {chain_id!r}, config says {expected_chain_id!r}")
    return Check("chain", True, f"height {height}, chain id {chain_id}")


def open_on_chain(chain: ChainClient, keyring: str) -> dict[str, int]:
    counts = {"key": 0, "sign": 0}
    for status in OPEN_STATUSES:
        counts["key"] += len(chain.key_requests(keyring, f"KEY_REQUEST_STATUS_{status}"))
        counts["sign"] += len(chain.sign_requests(keyring, f"SIGN_REQUEST_STATUS_{status}"))
    return counts


def journal_not_done(data_dir: str) -> dict[str, int] | None:
    """Controller journal entries not done, by kind; None when there is no journal here."""
    path = Path(data_dir) / "journal.sqlite"
    if not path.exists():
        return None
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=PROBE_TIMEOUT_S)
    try:
        rows = db.execute("SELECT kind, COUNT(*) FROM requests WHERE state != 'done' GROUP BY kind").fetchall()
    finally:
        db.close()
    return {"key": 0, "sign": 0, **{kind: int(n) for kind, n in rows}}


def check_pending(chain: ChainClient, keyring: str, data_dir: str) -> Check:
    on_chain = open_on_chain(chain, keyring)
    detail = f"open on chain for {keyring}: {on_chain['key']} key, {on_chain['sign']} sign request(s)"
    try:
        journal = journal_not_done(data_dir)
    except (OSError, sqlite3.Error) as exc:
        journal, detail = None, f"{detail}; journal not readable: {_one_line(exc)}"
    if journal is not None:
        detail += f"; journal not done: {journal['key']} key, {journal['sign']} sign"
    return Check("pending work", True, detail)


def check_funds(chain: ChainClient, keyring: str, address: str) -> Check:
    """Can this party's chain account pay for its answers? zrChain charges every fulfilment to its poster."""
    found = chain.keyring(keyring)
    if found is None:
        return Check("funds", False, f"keyring {keyring} not found on chain")
    config = chain.config
    fees = Fees(found.key_req_fee, found.sig_req_fee, config.fee_amount)
    balance = chain.balance(address)
    answers = fees.answers_affordable(balance, MAX_ANSWERS_PER_TX)
    pays = "any number of" if answers >= UNLIMITED else f"~{answers}"
    detail = (f"account {address} holds {balance} urock: pays for {pays} answers (key_req_fee "
              f"{fees.key_req_fee}, sig_req_fee {fees.sig_req_fee}, tx fee {fees.tx_fee})")
    if answers < 1:
        detail += "; cannot pay the next one: fund it (docs/operations.md, Funding a party)"
    return Check("funds", answers >= 1, detail)


def check_keys(chain: ChainClient, keyring: str, socket_path: str) -> Check:
    """The keyring's keys on chain against this party's shares (`zrkeyring keys` for the detail)."""
    from appliance.cli.keys import key_rows, summary

    client = PartyClient(socket_path)
    try:
        held = client.keys(timeout=PROBE_TIMEOUT_S * 5)
    finally:
        client.close()
    rows = key_rows([k for k in chain.keys() if k.keyring_addr == keyring], held)
    missing = [r.key_id for r in rows if r.state == "missing"]
    detail = summary(rows) + (f"; missing keys {missing} (zrkeyring keys)" if missing else "")
    return Check("keys", not missing, detail)


def check_drain(role: str, data_dir: str) -> Check:
    """The daemon's drain switch (`zrkeyring drain`): on means it takes no new work, so not ok, though
    deliberate (during a restart or upgrade); the line says how to resume."""
    switch = Drain(data_dir)
    if not switch.on:
        return Check("drain", True, "off: taking new work")
    return Check("drain", False, f"on ({switch.path}): the {role} takes no new work; "
                 "`zrkeyring drain off --config ...` to resume")


def run_checks(view: HostView) -> list[Check]:
    """Every check, in order; a failing one does not stop the others."""
    checks: list[Check] = [check_drain(view.role, view.data_dir)]
    roster = Roster.load(view.roster)
    keyring = view.chain.keyring or roster.cluster.keyring
    hsm: Hsm | None = None
    try:
        hsm = Hsm.open(view.hsm)
    except Exception as exc:  # the PIN source, the module or the token: say which, keep going
        checks.append(Check("hsm", False, _one_line(exc)))
    try:
        if hsm is not None:
            checks.append(_guarded("hsm", lambda: check_hsm(hsm)))
        checks.append(_guarded("party daemon", lambda: check_party(view.socket)))
        tls = TlsCredentials.from_bundle(view.tls_dir, sealer=hsm) if view.tls_dir and hsm else None
        checks.append(_guarded("peers", lambda: check_peers(roster, view.index, tls)))
    finally:
        if hsm is not None:
            hsm.close()
    chain = ChainClient(view.chain.client_config())
    try:
        checks.append(_guarded("chain", lambda: check_chain(chain, view.chain.chain_id)))
        checks.append(_guarded("pending work", lambda: check_pending(chain, keyring, view.data_dir)))
        address = roster.party(view.index).chain_address
        checks.append(_guarded("funds", lambda: check_funds(chain, keyring, address)))
        checks.append(_guarded("keys", lambda: check_keys(chain, keyring, view.socket)))
    finally:
        chain.close()
    return checks


def status(args: argparse.Namespace) -> int:
    view = HostView.load(args.config)
    if not getattr(args, "json", False):
        print(f"zrkeyring {view.role} {view.index} ({args.config})", flush=True)
    checks = run_checks(view)
    ok = all(c.ok for c in checks)
    emit(args, {"role": view.role, "index": view.index, "config": str(args.config), "ok": ok,
                "checks": [asdict(c) for c in checks]}, (c.line() for c in checks))
    return EXIT_OK if ok else EXIT_PROBLEM


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="check this party host: HSM, party daemon, peers, chain, work",
                                   description=__doc__, formatter_class=HelpFormatter,
                                   epilog="examples:\n  zrkeyring status --config /etc/zrkeyring/party.toml\n"
                                   "  zrkeyring status --config /etc/zrkeyring/controller.toml --json")
    parser.add_argument("--config", required=True, help="the party or controller TOML file")
    add_json_flag(parser)
    parser.set_defaults(handler=status)
