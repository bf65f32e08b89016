"""`zrkeyring keyring register`: put the cluster's keyring on chain, with every roster party in it.

    zrkeyring keyring register --roster roster.toml --admin-keys-file keys.json --admin-key admin \\
        --node node-a:9090 --node node-b:9090 --chain-id diamond-1 --write-roster

One MsgNewKeyring (party_threshold = the roster's threshold; the admin becomes the keyring's admin),
then one tx with a MsgAddKeyringParty per party. Running it again is safe: with `--keyring ADDR`, or
a roster whose [cluster] keyring is already set, it only adds the parties the keyring lacks.

The admin key is a software key file (`zrkeyring-chain init` format, see chain_node/keyfile.py),
named by path: a key is never taken on the command line. Progress goes to stderr, the keyring
address alone to stdout (`ADDR=$(zrkeyring keyring register …)`).

Funding: zrChain charges each fulfilment (key_req_fee / sig_req_fee) and each tx fee to the party that
posts it, so every party's chain_address needs urock of its own (a bank send; docs/operations.md,
"Funding a party"). A party that cannot pay holds its answers until it is funded.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.message import Message

from appliance.cli.output import HelpFormatter, add_json_flag, emit
from appliance.rules.roster import Roster
from appliance.runtime.errors import UserError
from chain_client.client import ChainClient, ClientConfig, msg_responses
from chain_client.crypto import SoftwareSigner
from chain_client.errors import ChainError, ChainTxError, ChainUnavailable
from chain_client.proto_gen.cosmos.base.abci.v1beta1.abci_pb2 import TxResponse
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_node.cli import tls_options
from chain_node.keyfile import key_from_file


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("keyring", help="register the cluster's keyring on chain")
    commands = group.add_subparsers(dest="keyring_command", metavar="SUBCOMMAND", required=True)
    reg = commands.add_parser(
        "register", formatter_class=HelpFormatter,
        epilog="example (the dev node of docs/operations.md):\n"
        "  zrkeyring keyring register --roster ./cluster/roster.toml --admin-keys-file dev-keys.json \\\n"
        "      --admin-key owner --node 127.0.0.1:9090 --write-roster",
        help="create the keyring (threshold from the roster) and add every roster party to it",
        description="Create a keyring whose party_threshold is the roster's threshold and add each "
        "party's chain_address to it. With --keyring ADDR (or a roster that already names a keyring) "
        "only the missing parties are added. Prints the keyring address on stdout. Every party's "
        "chain_address then needs urock of its own: the chain charges each fulfilment's fee and each "
        "tx fee to the party posting it (fund with a bank send; docs/operations.md, Funding a party).",
    )
    reg.add_argument("--roster", required=True, help="complete cluster roster (TOML)")
    reg.add_argument("--admin-keys-file", required=True, help="software key file (zrkeyring-chain format)")
    reg.add_argument("--admin-key", required=True, help="name of the admin key in that file")
    reg.add_argument(
        "--node", action="append", default=None, help="chain gRPC endpoint; repeat for failover"
    )
    reg.add_argument("--tls-ca", default="",
                     help="PEM CA (or the node's certificate) to pin for TLS to --node; default plaintext "
                          "(only sensible on loopback)")
    reg.add_argument("--tls-server-name", default="", help="name the node's certificate must carry")
    reg.add_argument("--chain-id", default="", help="chain id (default: the one in the key file)")
    reg.add_argument("--keyring", default="", help="existing keyring: add the parties it lacks")
    reg.add_argument("--description", default="", help="keyring description (default: the cluster name)")
    reg.add_argument("--key-req-fee", type=int, default=0, help="urock each posting party pays per key")
    reg.add_argument("--sig-req-fee", type=int, default=0, help="urock each posting party pays per signature")
    reg.add_argument(
        "--write-roster", action="store_true",
        help="record the keyring address in the roster's [cluster] and in its per-party copies (party-*/roster.toml)"
    )
    add_json_flag(reg)
    reg.set_defaults(handler=run_register)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_register(args: argparse.Namespace) -> int:
    roster_path = Path(args.roster)
    roster = Roster.load(roster_path).require_complete()
    file_chain_id, admin = key_from_file(Path(args.admin_keys_file), args.admin_key)
    chain_id = args.chain_id or file_chain_id
    endpoints = args.node or ["127.0.0.1:9090"]
    existing = _existing_keyring(args.keyring, roster.cluster.keyring)
    config = ClientConfig(endpoints=endpoints, chain_id=chain_id, simulate=True, attempts=3, **tls_options(args))
    with ChainClient(config) as client:
        try:
            address = _register(client, roster, roster_path, admin, existing, args)
        except ChainUnavailable as exc:
            raise UserError(f"chain not reachable: {exc}") from None
        except ChainError as exc:
            raise UserError(f"keyring registration refused by the chain: {exc}") from None
    emit(args, {"keyring": address, "chain_id": chain_id, "parties": [p.chain_address for p in roster.parties],
                "roster_written": [str(p) for p in getattr(args, "rosters_written", [])]}, [address])
    return 0


def _existing_keyring(flag: str, in_roster: str) -> str:
    if flag and in_roster and flag != in_roster:
        raise UserError(
            f"--keyring {flag} differs from the roster's [cluster] keyring {in_roster}; "
            "fix the roster or drop --keyring"
        )
    return flag or in_roster


def _register(
    client: ChainClient,
    roster: Roster,
    roster_path: Path,
    admin: SoftwareSigner,
    existing: str,
    args: argparse.Namespace,
) -> str:
    _check_chain(client, admin)
    if existing:
        keyring = client.keyring(existing)
        if keyring is None:
            raise UserError(f"keyring {existing} not found on chain {client.config.chain_id}")
        if admin.address() not in keyring.admins:
            raise UserError(
                f"{admin.address()} (key {args.admin_key!r}) is not an admin of keyring {existing} "
                f"(admins: {', '.join(keyring.admins)})"
            )
        if keyring.party_threshold != roster.cluster.threshold:
            _say(
                f"warning: keyring {existing} has party_threshold {keyring.party_threshold}, the roster "
                f"says {roster.cluster.threshold} (not changed)"
            )
        present = set(keyring.parties)
        address = existing
    else:
        message = identity_tx.MsgNewKeyring(
            creator=admin.address(),
            description=args.description or roster.cluster.name,
            party_threshold=roster.cluster.threshold,
            key_req_fee=args.key_req_fee,
            sig_req_fee=args.sig_req_fee,
        )
        response = _send(client, admin, [message])
        (created,) = msg_responses(response, [identity_tx.MsgNewKeyringResponse])
        address = created.addr
        present = set()
        _say(f"keyring {address} created (party_threshold {roster.cluster.threshold})")
    if args.write_roster and roster.cluster.keyring != address:
        # Written before the parties are added, so a re-run after a failure completes this keyring.
        args.rosters_written = _write_keyring(roster, roster_path, address)
    _add_parties(client, admin, roster, address, present)
    return address


def _check_chain(client: ChainClient, admin: SoftwareSigner) -> None:
    """The node answers, serves the chain we sign for, and the admin can pay: say which is wrong."""
    served, height, _ = client.latest_block()
    if served != client.config.chain_id:
        endpoints = ", ".join(client.config.endpoints)
        raise UserError(f"node {endpoints} serves chain {served!r}, not {client.config.chain_id!r}")
    if client.account(admin.address()) is None:
        raise UserError(
            f"admin account {admin.address()} does not exist on chain {served} (not funded): "
            "send it some urock for fees first"
        )
    _say(f"chain {served} at height {height}; admin {admin.address()}")


def _add_parties(
    client: ChainClient, admin: SoftwareSigner, roster: Roster, keyring: str, present: set[str]
) -> None:
    adds = []
    for party in roster.parties:
        if party.chain_address in present:
            _say(f"{party.name} ({party.chain_address}) is already a party of {keyring}")
            continue
        adds.append(
            identity_tx.MsgAddKeyringParty(creator=admin.address(), keyring_addr=keyring, party=party.chain_address)
        )
    if not adds:
        _say(f"nothing to add: every roster party is in {keyring}")
        return
    try:
        _send(client, admin, adds)
    except ChainTxError as exc:
        raise UserError(
            f"adding parties to keyring {keyring} failed (none added): {exc.raw_log} "
            f"(code {exc.code}); re-run with --keyring {keyring}"
        ) from None
    _say(f"added {len(adds)} parties to {keyring} in one tx")


def _send(client: ChainClient, admin: SoftwareSigner, messages: Sequence[Message]) -> TxResponse:
    response = client.send(admin, messages)
    _say(f"tx {response.txhash} in block {response.height}")
    return response


def _write_keyring(roster: Roster, path: Path, address: str) -> list[Path]:
    """Record the keyring in `path` and in every per-party copy of the same roster next to it.

    Why the copies: `cluster roster` copies the complete roster into each `party-<i>/` bundle, and an
    operator who ships those bundles after registering would otherwise ship rosters without the
    keyring. A copy is rewritten only if it is the same roster (same parties, same cluster) apart from
    the keyring; anything else is left alone and named. Rosters already on party hosts cannot be
    reached from here: the command says how to update them.
    """
    # Roster has no setter for [cluster] fields (only with_party), so replace the frozen section here.
    updated = dataclasses.replace(roster, cluster=dataclasses.replace(roster.cluster, keyring=address))
    updated.validate()
    updated.write(path)
    written = [path]
    for copy_path in sorted(path.parent.glob(f"party-*/{path.name}")):
        try:
            copy = Roster.load(copy_path)
        except UserError as exc:
            _say(f"warning: {copy_path} not updated: {exc}")
            continue
        if copy.parties != roster.parties or dataclasses.replace(copy.cluster, keyring="") != \
                dataclasses.replace(roster.cluster, keyring=""):
            _say(f"warning: {copy_path} is not a copy of {path}; not updated")
            continue
        dataclasses.replace(copy, cluster=dataclasses.replace(copy.cluster, keyring=address)).write(copy_path)
        written.append(copy_path)
    _say(f"[cluster] keyring = {address} written to {', '.join(str(p) for p in written)}")
    _say("rosters already on party hosts: copy this roster to /etc/zrkeyring/cluster/roster.toml on each "
         f"host (compare `zrkeyring cluster show` digests), or set [chain] keyring = \"{address}\" in "
         "party.toml and controller.toml")
    return written
