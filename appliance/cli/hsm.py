"""`zrkeyring hsm init|status --config FILE`: provision a party's token and inspect it."""

from __future__ import annotations

import argparse

from appliance.hsm.config import load_hsm_config
from appliance.hsm.facade import Hsm


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("hsm", help="provision and inspect the party's HSM token")
    commands = group.add_subparsers(dest="hsm_command", metavar="SUBCOMMAND", required=True)

    for name, handler, help_text, description in (
        (
            "init",
            run_init,
            "create the sealing, identity and chain keys on the token (idempotent)",
            "Create any missing key on the token; print the public keys and the chain address.",
        ),
        (
            "status",
            run_status,
            "show token info, mechanisms present/missing and keys present",
            "Log in to the token and report what is there; changes nothing. Exits 3 if not ready.",
        ),
    ):
        command = commands.add_parser(name, help=help_text, description=description)
        command.add_argument("--config", required=True, help="TOML file with an [hsm] section")
        command.set_defaults(handler=handler)


def run_init(args: argparse.Namespace) -> int:
    with Hsm.open(load_hsm_config(args.config)) as hsm:
        for label, outcome in hsm.provision().items():
            print(f"key {label}: {outcome}")
        print(f"identity public key (Ed25519): {hsm.identity_public_key().hex()}")
        print(f"chain public key (secp256k1):  {hsm.chain_public_key().hex()}")
        print(f"chain address:                 {hsm.chain_address()}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    # Open without the mechanism check, so a token lacking one is reported rather than refused.
    with Hsm.open(load_hsm_config(args.config), required_mechanisms=()) as hsm:
        status = hsm.status()
        for line in status.lines():
            print(line)
        if all(status.keys.values()):
            print(f"chain address: {hsm.chain_address()}")
    return 0 if status.ready else 3
