"""`--json` for every command that prints keys or state, and the help formatter all commands share.

Why: operators copied identity keys and chain addresses from `hsm init`'s text into `cluster roster`
by hand. With `--json` a command prints exactly one JSON object on stdout (progress and warnings stay
on stderr), so `jq -r .identity_key` feeds the next step. Text output is unchanged without the flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterable
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """Prose paragraphs are wrapped, example paragraphs (indented lines) kept as written; every option
    with a real default shows it (not the `None`/`False` of a required option or a flag)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith("  ") for line in lines[1:]) or lines[0].startswith("  "):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS, "", []) or action.required:
            return text
        return f"{text} (default: %(default)s)"


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")


def emit(args: argparse.Namespace, document: dict[str, Any], text: Iterable[str]) -> None:
    """Print `document` as JSON with --json, else the text lines."""
    if getattr(args, "json", False):
        json.dump(document, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return
    for line in text:
        print(line)


def warn(text: str) -> None:
    """A warning on stderr (never mixed into --json output)."""
    print(f"zrkeyring: warning: {text}", file=sys.stderr)
