"""`zrkeyring init`: write this host's commented party.toml and controller.toml in one step.

Why: an operator edited the same values (index, chain id, endpoints, CA) into two files by hand, six
edits per host, and a typo in one file only showed at start. `init` takes them once, writes both files
from the templates the package ships (appliance/cli/templates/, also installed as /etc/zrkeyring/*.toml),
keeps every comment and commented default, and loads the result with the daemons' own config classes
before it writes anything.

It overwrites a file only if it is still the shipped template (what the .deb installs) or with --force.
"""

from __future__ import annotations

import argparse
import grp
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from appliance.cli.output import HelpFormatter, add_json_flag, emit
from appliance.controller.service import ControllerConfig
from appliance.mpc_party.daemon import PartyConfig
from appliance.runtime.errors import UserError

TEMPLATES = ("party.toml", "controller.toml")
SERVICE_GROUP = "zrkeyring"
DEV_CHAIN_ID = "zrkeyring-dev-1"  # the dev node's default (`zrkeyring-chain init`)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init", help="write this host's party.toml and controller.toml (commented) in one step",
        description=__doc__, formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  zrkeyring init --index 2 --chain-id diamond-1 --endpoint zrchain-a:9090 --endpoint zrchain-b:9090 "
        "--agree 2\n"
        f"  zrkeyring init --index 1 --chain-id {DEV_CHAIN_ID} --endpoint 127.0.0.1:9090 --plaintext-loopback "
        "--dir ./host-1 --data-dir ./host-1/state --socket ./host-1/party.sock")
    parser.add_argument("--index", type=int, required=True, help="this host's party index in the roster (1..n)")
    parser.add_argument("--chain-id", required=True, help="zrChain chain id (mainnet: diamond-1; the dev node: "
                        f"{DEV_CHAIN_ID})")
    parser.add_argument("--endpoint", action="append", default=None,
                        help="zrChain gRPC endpoint host:port; repeat for more (default: 127.0.0.1:9090)")
    parser.add_argument("--agree", type=int, default=1, help="endpoints that must agree on each request")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--tls-ca", default="", help="PEM CA of the nodes' gRPC TLS (default: DIR/chain-ca.pem)")
    trust.add_argument("--plaintext-loopback", action="store_true",
                       help="plaintext gRPC to a node on this host (loopback endpoints only)")
    parser.add_argument("--keyring", default="", help="keyring address (default: the roster's)")
    parser.add_argument("--token-label", default="zrkeyring", help="this party's HSM token label")
    parser.add_argument("--module", default="", help="PKCS#11 module (default: SoftHSM2's)")
    parser.add_argument("--pin-file", default="",
                        help="read the PIN from this file instead of the systemd credential hsm-pin")
    parser.add_argument("--dir", default="/etc/zrkeyring", help="where to write party.toml and controller.toml")
    parser.add_argument("--data-dir", default="/var/lib/zrkeyring",
                        help="state directory (party/ and controller/ inside)")
    parser.add_argument("--socket", default="/run/zrkeyring/party.sock", help="the party's local socket")
    parser.add_argument("--cluster-dir", default="", help="this party's bundle directory (default: DIR/cluster)")
    parser.add_argument("--metrics-host", default="",
                        help="address /metrics, /healthz and /readyz listen on (port 9810 party, 9811 controller; "
                        "default 127.0.0.1)")
    parser.add_argument("--force", action="store_true", help="overwrite files that are not the shipped templates")
    add_json_flag(parser)
    parser.set_defaults(handler=run_init)


@dataclass(frozen=True)
class Edit:
    section: str
    key: str
    value: str | int | list[str] | bool | None  # None: comment the line out


def run_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    cluster = Path(args.cluster_dir) if args.cluster_dir else directory / "cluster"
    data = Path(args.data_dir)
    rendered = {name: render(template(name), host_edits(args, name, cluster, data)) for name in TEMPLATES}
    check_loads(rendered)
    written = [write_config(directory / name, text, args.force) for name, text in rendered.items()]
    emit(args, {"written": [str(p) for p in written], "index": args.index, "chain_id": args.chain_id},
         [*(f"wrote {p}" for p in written),
          "next: initialise the HSM as the service user (docs/operations.md, step 2), e.g. "
          f"zrkeyring hsm init --config {written[0]} --json"])
    return 0


def host_edits(args: argparse.Namespace, name: str, cluster: Path, data: Path) -> list[Edit]:
    """The lines `init` sets in template `name`; everything else keeps its commented default."""
    role = "party" if name == "party.toml" else "controller"
    endpoints = args.endpoint or ["127.0.0.1:9090"]
    edits = [Edit(role, "index", args.index), Edit(role, "roster", str(cluster / "roster.toml")),
             Edit("chain", "chain_id", args.chain_id), Edit("chain", "endpoints", endpoints),
             Edit("hsm", "token_label", args.token_label)]
    if role == "party":
        edits += [Edit("party", "tls_dir", str(cluster)), Edit("party", "data_dir", str(data / "party")),
                  Edit("party", "local_socket", args.socket)]
    else:
        edits += [Edit("controller", "data_dir", str(data / "controller")),
                  Edit("controller", "party_socket", args.socket)]
    if args.agree != 1:
        edits.append(Edit("chain", "agree", args.agree))
    if args.metrics_host:
        port = 9810 if role == "party" else 9811
        host = f"[{args.metrics_host}]" if ":" in args.metrics_host else args.metrics_host
        edits.append(Edit("metrics", "address", f"{host}:{port}"))
    if args.plaintext_loopback:
        edits += [Edit("chain", "tls_ca", None), Edit("chain", "plaintext_loopback_ok", True)]
    else:
        edits.append(Edit("chain", "tls_ca", args.tls_ca or str(Path(args.dir) / "chain-ca.pem")))
    if args.keyring:
        edits.append(Edit("chain", "keyring", args.keyring))
    if args.module:
        edits.append(Edit("hsm", "module", args.module))
    if args.pin_file:
        edits += [Edit("hsm", "pin_credential", None), Edit("hsm", "pin_file", args.pin_file)]
    return edits


def template(name: str) -> str:
    return resources.files("appliance.cli").joinpath("templates", name).read_text(encoding="utf-8")


def render(text: str, edits: list[Edit]) -> str:
    """Apply `edits` to a template: set `key = value` on the key's line (commented or not) in its
    section, or comment it out; a key the template lacks is an error (the template and code diverged)."""
    lines = text.splitlines()
    for edit in edits:
        at = _find(lines, edit.section, edit.key)
        lines[at] = f"# {edit.key} = {_current(lines[at])}" if edit.value is None else \
            f"{edit.key} = {_toml(edit.value)}"
    return "\n".join(lines) + "\n"


def _find(lines: list[str], section: str, key: str) -> int:
    current = ""
    pattern = re.compile(rf"^(# )?{re.escape(key)} = ")
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[] ")
        elif current == section and pattern.match(line):
            return i
    raise UserError(f"template has no [{section}] {key} line (reinstall zrkeyring)")


def _current(line: str) -> str:
    return line.removeprefix("# ").split(" = ", 1)[1]


def _toml(value: str | int | list[str] | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if any(c in value for c in '"\\\n') or not value.isprintable():
        raise UserError(f"{value!r}: quotes, backslashes and control characters are not accepted here")
    return f'"{value}"'


def check_loads(rendered: dict[str, str]) -> None:
    """Load each rendered file with its daemon's config class: a bad value fails here, naming the field."""
    loaders = {"party.toml": PartyConfig.load, "controller.toml": ControllerConfig.load}
    with tempfile.TemporaryDirectory(prefix="zrkeyring-init-") as tmp:
        for name, text in rendered.items():
            path = Path(tmp) / name
            path.write_text(text)
            try:
                loaders[name](path)
            except UserError as exc:
                raise UserError(f"{name} would not load: {str(exc).replace(str(path), name)}") from None


def write_config(path: Path, text: str, force: bool) -> Path:
    """Write `path` (0640, group zrkeyring when it exists and we are root) unless it holds local edits."""
    if path.exists() and not force and path.read_text(errors="replace") != template(path.name):
        raise UserError(f"{path} exists and is not the shipped template (local edits?); --force overwrites it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if os.geteuid() == 0:
        try:
            os.chown(tmp, 0, grp.getgrnam(SERVICE_GROUP).gr_gid)  # root:zrkeyring 0640, as postinst does
        except KeyError:
            pass
    os.replace(tmp, path)
    return path
