"""`zrkeyring` command line: one subcommand group per operator step.

Each group lives beside the code it drives and registers itself here through a
`register(subparsers)` function, so this file stays a short table of contents.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from appliance.cli.output import HelpFormatter
from appliance.runtime.errors import UserError
from appliance.runtime.logs import setup_logging
from appliance.runtime.version import version

# Modules that provide a subcommand group through `register(subparsers)`. A group whose module is not
# present yet is skipped, so the CLI works while the product is being built.
COMMAND_GROUPS: list[str] = [
    "appliance.cli.init",
    "appliance.cli.hsm",
    "appliance.cli.cluster",
    "appliance.cli.keyring",
    "appliance.cli.party",
    "appliance.cli.controller",
    "appliance.cli.status",
    "appliance.cli.keys",
    "appliance.cli.backup",
    "appliance.cli.drain",
    "appliance.cli.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zrkeyring", formatter_class=HelpFormatter,
        description="HSM-backed MPC keyring for zrChain: threshold keys and signatures for chain requests.",
        epilog="The set-up, in order: docs/operations.md (installed in /usr/share/doc/zrkeyring/).\n\n"
        "examples:\n  zrkeyring hsm init --config /etc/zrkeyring/party.toml --json\n"
        "  zrkeyring status --config /etc/zrkeyring/party.toml\n  zrkeyring COMMAND --help",
    )
    parser.add_argument("--version", action="version", version=f"zrkeyring {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(f"zrkeyring-{args.command or 'cli'}", verbose=args.verbose)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"zrkeyring: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
