"""The `party` and `controller` command groups share one shape: `NAME run --config FILE`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from appliance.cli.output import HelpFormatter


def register_run_group(subparsers: argparse._SubParsersAction, name: str, help_: str, run_help: str,
                       description: str, config_help: str, handler: Callable[[argparse.Namespace], int]) -> None:
    """Add `zrkeyring NAME run --config FILE`; `zrkeyring NAME` alone prints the group's help."""
    parser = subparsers.add_parser(name, help=help_)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    run = sub.add_parser("run", help=run_help, description=description, formatter_class=HelpFormatter)
    run.add_argument("--config", required=True, help=config_help)
    run.set_defaults(handler=handler)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)
