"""`zrkeyring keys --config FILE [--json]`: every key of the keyring on chain against this party's share.

One row per key the chain lists for the keyring (and one per share this party holds that the chain
does not list): the chain key id, type and public key; this party's share version, whether a newer
version waits pending (a refresh not yet committed), when the active version was stored (the last
keygen or refresh), and a state:

    ok        the party holds an active share of the chain's key
    pending   it also holds a newer version, not committed yet (a refresh waiting for every party)
    missing   the chain lists the key but this party holds no share (a lost host, or a key made while
              this party was away): the threshold of that key is one party short here
    orphan    a share of a key the chain does not list (a keygen whose answer never landed)

Reads the chain (the config's [chain] table) and asks the local party daemon over its socket (the
daemon owns the share store and the HSM). Exit 0 when nothing is missing, 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from appliance.cli.output import HelpFormatter
from appliance.mpc_party.local_api import PartyClient
from appliance.rules.roster import Roster
from chain_client.client import ChainClient

EXIT_OK, EXIT_PROBLEM = 0, 3


@dataclass(frozen=True)
class KeyRow:
    """One line of the report (also its --json object)."""

    key_id: int | None  # the chain's key id (None for an orphan share)
    key_type: str
    public_key: str
    state: str
    version: int = 0
    pending_version: int = 0
    stored_at: float | None = None

    def line(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.stored_at)) if self.stored_at else "-"
        version = f"v{self.version}" + (f" (v{self.pending_version} pending)" if self.pending_version else "")
        key = str(self.key_id) if self.key_id is not None else "-"
        return f"{key:>6}  {self.key_type:<28} {self.public_key[:20]}…  {version:<18} {when:<19}  {self.state}"


def key_rows(chain_keys: list[Any], held: list[dict[str, Any]]) -> list[KeyRow]:
    """Join the chain's keys with the party's shares by public key (pure: the tests call it)."""
    by_key = {h["public_key"]: h for h in held}
    rows = []
    for key in sorted(chain_keys, key=lambda k: k.id):
        public = bytes(key.public_key).hex()
        share = by_key.pop(public, None)
        if share is None:
            rows.append(KeyRow(key.id, key.type, public, "missing"))
            continue
        state = "pending" if share["pending_version"] else "ok"
        rows.append(KeyRow(key.id, key.type, public, state, share["version"], share["pending_version"],
                           share["stored_at"]))
    for public, share in sorted(by_key.items()):
        rows.append(KeyRow(None, share["key_type"], public, "orphan", share["version"], share["pending_version"],
                           share["stored_at"]))
    return rows


def summary(rows: list[KeyRow]) -> str:
    """One line for `zrkeyring status`."""
    on_chain = [r for r in rows if r.key_id is not None]
    counts = {s: sum(1 for r in rows if r.state == s) for s in ("ok", "pending", "missing", "orphan")}
    return (f"{len(on_chain)} on chain: {counts['ok'] + counts['pending']} held ({counts['pending']} with a "
            f"refresh pending), {counts['missing']} missing, {counts['orphan']} orphan share(s)")


def collect(config_path: str) -> list[KeyRow]:
    """The report's rows for the host whose party or controller config is `config_path`."""
    from appliance.cli.status import HostView  # status imports the controller; keep `keys --help` light

    view = HostView.load(config_path)
    keyring = view.chain.keyring or Roster.load(view.roster).cluster.keyring
    chain = ChainClient(view.chain.client_config())
    party = PartyClient(view.socket)
    try:
        chain_keys = [k for k in chain.keys() if k.keyring_addr == keyring]
        held = party.keys()
    finally:
        party.close()
        chain.close()
    return key_rows(chain_keys, held)


def keys_command(args: argparse.Namespace) -> int:
    rows = collect(args.config)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(f"{'key':>6}  {'type':<28} {'public key':<21}  {'share':<18} {'stored (UTC)':<19}  state")
        for row in rows:
            print(row.line())
        print(summary(rows))
    return EXIT_PROBLEM if any(r.state == "missing" for r in rows) else EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="every key of the keyring on chain against this party's share",
                                   description=__doc__, formatter_class=HelpFormatter,
                                   epilog="examples:\n  zrkeyring keys --config /etc/zrkeyring/party.toml\n"
                                   "  zrkeyring keys --config /etc/zrkeyring/party.toml --json")
    parser.add_argument("--config", required=True, help="the party or controller TOML file")
    parser.add_argument("--json", action="store_true", help="one JSON object per key instead of the table")
    parser.set_defaults(handler=keys_command)
