"""`zrkeyring cluster init|roster|show`: make the TLS bundles, fill the roster, check it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.cluster.bundle import ROSTER, fill_roster, init_cluster
from appliance.cluster.sealkey import seal_tls_key
from appliance.rules.roster import Roster


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("cluster", help="create the cluster CA, party bundles and roster")
    commands = group.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND", required=True)

    init = commands.add_parser(
        "init",
        help="create a CA, per-party TLS certificates and bundles (the CA key is not kept)",
        description="Write OUT/party-<i>/ for every party (CA, certificate, key, roster template) and "
        "OUT/roster.toml. The CA private key is discarded: to add a party, re-run into a new directory.",
    )
    init.add_argument("--parties", type=int, required=True, help="number of parties n")
    init.add_argument("--threshold", type=int, required=True, help="parties needed to sign, t")
    init.add_argument("--out", required=True, help="new or empty directory for the bundles")
    init.add_argument(
        "--host", default="127.0.0.1", help="host (IP or DNS) of every party, or n comma-separated hosts"
    )
    init.add_argument("--base-port", type=int, default=7001, help="party i listens on base-port + i - 1")
    init.add_argument("--name", default="zrkeyring", help="cluster name")
    init.add_argument("--days", type=int, default=3650, help="certificate validity in days")
    init.set_defaults(handler=run_init)

    roster = commands.add_parser(
        "roster",
        help="record a party's HSM identity key and chain address in the roster",
        description="Fill one roster entry from that party's `zrkeyring hsm init` output. When every "
        "party is filled, the roster is copied into each OUT/party-<i>/roster.toml.",
    )
    roster.add_argument("--bundle", required=True, help="directory written by `cluster init`")
    roster.add_argument("--party", type=int, required=True, help="party index i")
    roster.add_argument("--identity-key", required=True, help="Ed25519 identity public key, 64 hex chars")
    roster.add_argument("--chain-address", required=True, help="the party's chain account address (zen1…)")
    roster.set_defaults(handler=run_roster)

    seal = commands.add_parser(
        "seal-key",
        help="seal this party's TLS key with its HSM and delete the plaintext party.key",
        description="Run once on each party host after copying its bundle there. The party daemon then "
        "unseals the key into memory at start; no private key stays on disk in plaintext.",
    )
    seal.add_argument("--bundle-dir", required=True, help="this party's bundle directory (party-<i>)")
    seal.add_argument("--config", required=True, help="TOML file with this party's [hsm] section")
    seal.set_defaults(handler=run_seal_key)

    show = commands.add_parser("show", help="print a roster and its digest (compare it across hosts)")
    show.add_argument("--roster", required=True, help="roster TOML file (or a bundle directory)")
    show.set_defaults(handler=run_show)


def run_init(args: argparse.Namespace) -> int:
    hosts = [h.strip() for h in args.host.split(",") if h.strip()]
    bundle = init_cluster(args.out, args.parties, args.threshold, hosts, args.base_port, args.name, args.days)
    print(f"cluster {args.name!r}: {args.threshold}-of-{args.parties}, bundles in {bundle.out}")
    for p in bundle.roster.parties:
        print(f"  {p.name}: {p.address} -> {bundle.party_dir(p.index)}/")
    print("The CA private key was NOT stored anywhere: to add or replace a party, run `cluster init` again")
    print("into a new directory and redistribute every bundle.")
    print("Next: on each party host run `zrkeyring hsm init`, then `zrkeyring cluster roster --bundle "
          f"{bundle.out} --party I --identity-key HEX --chain-address ADDR` for each party.")
    return 0


def run_roster(args: argparse.Namespace) -> int:
    roster = fill_roster(args.bundle, args.party, args.identity_key, args.chain_address)
    todo = [p.name for p in roster.parties if not p.complete]
    print(f"party {args.party} recorded in {Path(args.bundle) / ROSTER}")
    if todo:
        print(f"still missing: {', '.join(todo)}")
    else:
        print(f"roster complete, copied to every party bundle; digest {roster.digest()}")
    return 0


def run_seal_key(args: argparse.Namespace) -> int:
    from appliance.hsm import Hsm, load_hsm_config

    with Hsm.open(load_hsm_config(args.config)) as hsm:
        sealed = seal_tls_key(args.bundle_dir, hsm)
    print(f"TLS key sealed by the HSM into {sealed.path} (owner {sealed.owner}, mode 0600); the plaintext "
          "party.key was overwritten and removed")
    if sealed.warning:
        print(f"zrkeyring: warning: {sealed.warning}", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    path = Path(args.roster)
    roster = Roster.load(path / ROSTER if path.is_dir() else path)
    c = roster.cluster
    print(f"cluster {c.name!r}: threshold {c.threshold} of {len(roster.parties)}, keyring {c.keyring or '-'}")
    for p in roster.parties:
        identity, chain = p.identity_key or "-", p.chain_address or "-"
        print(f"  {p.index} {p.name} {p.address} identity {identity} chain {chain}")
    state = "complete" if all(p.complete for p in roster.parties) else "INCOMPLETE"
    print(f"{state}; digest {roster.digest()}")
    return 0 if state == "complete" else 3
