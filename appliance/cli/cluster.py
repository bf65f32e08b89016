"""`zrkeyring cluster init|roster|show`: make the TLS bundles, fill the roster, check it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from appliance.cli.output import HelpFormatter, add_json_flag, emit, warn
from appliance.cluster.bundle import ROSTER, add_party, fill_roster, init_cluster
from appliance.cluster.rotate import PHASES, rotate_cluster
from appliance.cluster.sealkey import seal_tls_key
from appliance.rules.roster import Roster


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("cluster", help="create the cluster CA, party bundles and roster")
    commands = group.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND", required=True)

    init = commands.add_parser(
        "init", formatter_class=HelpFormatter,
        epilog="example:\n  zrkeyring cluster init --parties 3 --threshold 2 "
        "--host 10.0.0.11,10.0.0.12,10.0.0.13 --out ./cluster",
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
    add_json_flag(init)
    init.set_defaults(handler=run_init)

    roster = commands.add_parser(
        "roster", formatter_class=HelpFormatter,
        epilog="example (on the machine holding ./cluster, with host 1's `hsm init --json` in h1.json):\n"
        "  zrkeyring cluster roster --bundle ./cluster --party 1 \\\n"
        "      --identity-key $(jq -r .identity_key h1.json) --chain-address $(jq -r .chain_address h1.json)",
        help="record a party's HSM identity key and chain address in the roster",
        description="Fill one roster entry from that party's `zrkeyring hsm init` output. When every "
        "party is filled, the roster is copied into each OUT/party-<i>/roster.toml.",
    )
    roster.add_argument("--bundle", required=True, help="directory written by `cluster init`")
    roster.add_argument("--party", type=int, required=True, help="party index i")
    roster.add_argument("--identity-key", required=True, help="Ed25519 identity public key, 64 hex chars")
    roster.add_argument("--chain-address", required=True, help="the party's chain account address (zen1…)")
    add_json_flag(roster)
    roster.set_defaults(handler=run_roster)

    add = commands.add_parser(
        "add-party", formatter_class=HelpFormatter,
        epilog="example (on the machine holding ./cluster; then `cluster roster` for the new party):\n"
        "  zrkeyring cluster add-party --bundle ./cluster --party 4 --host 10.0.0.14 --port 7004",
        help="add a party (a new host) to the cluster: its certificate, the CA it comes from, the roster entry",
        description="For a party joining the keyring after set-up (docs/operations.md, runbooks). The new "
        "party's certificate comes from a new CA whose key is discarded; every party directory gains that "
        "CA and the certificate (peers are pinned by the roster, so the CA vouches for this party only). "
        "Fill the entry with `cluster roster`, copy party-<i>/ to every host and restart its daemons.",
    )
    add.add_argument("--bundle", required=True, help="directory written by `cluster init`")
    add.add_argument("--party", type=int, required=True, help="the new party's index (not in the roster)")
    add.add_argument("--host", required=True, help="the new host's IP or DNS name")
    add.add_argument("--port", type=int, required=True, help="the port the new party listens on")
    add.add_argument("--days", type=int, default=3650, help="certificate validity in days")
    add_json_flag(add)
    add.set_defaults(handler=run_add_party)

    seal = commands.add_parser(
        "seal-key", formatter_class=HelpFormatter,
        epilog="example:\n  zrkeyring cluster seal-key --bundle-dir /etc/zrkeyring/cluster "
        "--config /etc/zrkeyring/party.toml",
        help="seal this party's TLS key with its HSM and delete the plaintext party.key",
        description="Run once on each party host after copying its bundle there. The party daemon then "
        "unseals the key into memory at start; no private key stays on disk in plaintext.",
    )
    seal.add_argument("--bundle-dir", required=True, help="this party's bundle directory (party-<i>)")
    seal.add_argument("--config", required=True, help="TOML file with this party's [hsm] section")
    seal.set_defaults(handler=run_seal_key)

    rotate = commands.add_parser(
        "rotate", formatter_class=HelpFormatter,
        help="new CA and party certificates, rolled out in three phases without an outage",
        description="Read the master bundle `cluster init` wrote and write OUT/phase1-trust (trust the old "
        "and the new CA), OUT/phase2-switch (each party's new certificate and key) and OUT/phase3-final (the "
        "new CA only) for every party. Roll each phase out one host at a time (docs/operations.md, "
        "Certificate rotation). Identity keys, chain addresses and the keyring do not change.",
        epilog="example:\n  zrkeyring cluster rotate --bundle ./cluster --out ./cluster-2027")
    rotate.add_argument("--bundle", required=True, help="the directory `cluster init` wrote (its roster complete)")
    rotate.add_argument("--out", required=True, help="new or empty directory for the three phases")
    rotate.add_argument("--days", type=int, default=3650, help="validity of the new certificates in days")
    add_json_flag(rotate)
    rotate.set_defaults(handler=run_rotate)

    show = commands.add_parser(
        "show", help="print a roster and its digest (compare it across hosts)", formatter_class=HelpFormatter,
        description="Print the roster and one digest over it, the CA and every party certificate it names: "
        "equal digests on two hosts mean they trust the same parties with the same certificates.",
        epilog="example:\n  zrkeyring cluster show --roster /etc/zrkeyring/cluster --json | jq -r .digest")
    show.add_argument("--roster", required=True, help="roster TOML file (or a bundle directory)")
    add_json_flag(show)
    show.set_defaults(handler=run_show)


def run_init(args: argparse.Namespace) -> int:
    hosts = [h.strip() for h in args.host.split(",") if h.strip()]
    bundle = init_cluster(args.out, args.parties, args.threshold, hosts, args.base_port, args.name, args.days)
    for warning in threshold_warnings(args.threshold, args.parties):
        warn(warning)
    parties = bundle.roster.parties
    emit(args, {"name": args.name, "threshold": args.threshold, "out": str(bundle.out),
                "roster": str(bundle.out / ROSTER),
                "parties": [{"index": p.index, "name": p.name, "address": p.address,
                             "bundle": str(bundle.party_dir(p.index))} for p in parties]},
         [f"cluster {args.name!r}: {args.threshold}-of-{args.parties}, bundles in {bundle.out}",
          *(f"  {p.name}: {p.address} -> {bundle.party_dir(p.index)}/" for p in parties),
          "The CA private key was NOT stored anywhere: to add or replace a party, run `cluster init` again",
          "into a new directory and redistribute every bundle.",
          "Next: on each party host run `zrkeyring hsm init --json`, then `zrkeyring cluster roster --bundle "
          f"{bundle.out} --party I --identity-key HEX --chain-address ADDR` for each party."])
    return 0


def threshold_warnings(threshold: int, parties: int) -> list[str]:
    """What a legal but risky t-of-n means for the operator (cluster init accepts it, and says so)."""
    if parties > 1 and threshold == 1:
        return [f"threshold 1 of {parties}: any single party signs alone, so one compromised host (or HSM) "
                "is enough to sign anything; use --threshold 2 or more"]
    if parties > 1 and threshold == parties:
        return [f"threshold {threshold} of {parties}: every party must take part, so one host down stops "
                f"all signing; consider --threshold {parties - 1}"]
    return []


def run_roster(args: argparse.Namespace) -> int:
    roster = fill_roster(args.bundle, args.party, args.identity_key, args.chain_address)
    todo = [p.name for p in roster.parties if not p.complete]
    digest = "" if todo else roster.digest()
    lines = [f"party {args.party} recorded in {Path(args.bundle) / ROSTER}"]
    lines.append(f"still missing: {', '.join(todo)}" if todo else
                 f"roster complete, copied to every party bundle; digest {digest}")
    emit(args, {"party": args.party, "roster": str(Path(args.bundle) / ROSTER), "missing": todo,
                "complete": not todo, "digest": digest}, lines)
    return 0


def run_add_party(args: argparse.Namespace) -> int:
    made = add_party(args.bundle, args.party, args.host, args.port, args.days)
    directory = made.party_dir(args.party)
    emit(args, {"party": args.party, "bundle_dir": str(directory), "roster": str(made.out / ROSTER)},
         [f"party {args.party} added to {made.out / ROSTER}; its bundle is {directory}",
          f"next: zrkeyring cluster roster --bundle {made.out} --party {args.party} --identity-key … "
          "--chain-address …, then copy every party-<i>/ to its host and restart the daemons"])
    return 0


def run_seal_key(args: argparse.Namespace) -> int:
    from appliance.hsm import Hsm, load_hsm_config

    with Hsm.open(load_hsm_config(args.config)) as hsm:
        sealed = seal_tls_key(args.bundle_dir, hsm)
    print(f"TLS key sealed by the HSM into {sealed.path} (owner {sealed.owner}, mode 0600); the plaintext "
          "party.key was overwritten and removed")
    if sealed.warning:
        warn(sealed.warning)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    rotation = rotate_cluster(args.bundle, args.out, args.days)
    parties = [p.index for p in rotation.roster.parties]
    phases = {phase: {i: str(rotation.phase_dir(phase, i)) for i in parties} for phase in PHASES}
    lines = [f"new CA and certificates for {len(parties)} parties in {rotation.out} (the CA key was not kept)"]
    lines += [f"  {phase}: {rotation.out / phase}/party-<i>/" for phase in PHASES]
    lines += ["Roll out one phase at a time on every host, one host at a time (docs/operations.md, Certificate "
              "rotation): 1) copy phase1-trust over /etc/zrkeyring/cluster, restart the party; 2) copy "
              "phase2-switch, `cluster seal-key`, restart; 3) copy phase3-final, restart."]
    emit(args, {"out": str(rotation.out), "phases": phases, "digest": rotation.roster.digest()}, lines)
    return 0


def run_show(args: argparse.Namespace) -> int:
    path = Path(args.roster)
    roster = Roster.load(path / ROSTER if path.is_dir() else path)
    c = roster.cluster
    complete = all(p.complete for p in roster.parties)
    digest = roster.digest()
    lines = [f"cluster {c.name!r}: threshold {c.threshold} of {len(roster.parties)}, keyring {c.keyring or '-'}"]
    lines += [f"  {p.index} {p.name} {p.address} identity {p.identity_key or '-'} chain {p.chain_address or '-'}"
              for p in roster.parties]
    lines.append(f"{'complete' if complete else 'INCOMPLETE'}; digest {digest} (roster, CA and certificates)")
    emit(args, {"cluster": dataclasses.asdict(c), "complete": complete, "digest": digest,
                "parties": [dataclasses.asdict(p) for p in roster.parties]}, lines)
    for warning in threshold_warnings(c.threshold, len(roster.parties)):
        warn(warning)
    return 0 if complete else 3
