"""`zrkeyring drain on|off|status`: let a party or controller finish its work and take none, before a
restart or an upgrade (appliance/runtime/drain.py says how the daemons do it).

    zrkeyring drain on --config /etc/zrkeyring/controller.toml --config /etc/zrkeyring/party.toml --wait 120
    systemctl restart zrkeyring-party zrkeyring-controller      # or: apt install ./zrkeyring_<new>.deb
    zrkeyring drain off --config /etc/zrkeyring/controller.toml --config /etc/zrkeyring/party.toml

`on` sets the switch in each daemon's data_dir; with `--wait` it then polls each daemon's /readyz
(its [metrics] address) until it says drained, exit 3 if one does not within the time. The switch
survives a restart (the restarted daemon starts, and stays drained); `off` resumes.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from appliance.cli.output import HelpFormatter, add_json_flag, emit
from appliance.runtime.config import read_toml
from appliance.runtime.drain import DRAINED, Drain
from appliance.runtime.errors import ConfigError

EXIT_NOT_DRAINED = 3
POLL_S = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("drain", help="stop taking new work and finish running work (restarts, upgrades)",
                                   description=__doc__, formatter_class=HelpFormatter,
                                   epilog="examples:\n  zrkeyring drain status --config /etc/zrkeyring/party.toml\n"
                                   "  zrkeyring drain off --config /etc/zrkeyring/party.toml "
                                   "--config /etc/zrkeyring/controller.toml")
    parser.add_argument("state", choices=("on", "off", "status"), help="switch drain mode on or off, or show it")
    parser.add_argument("--config", action="append", required=True,
                        help="a party or controller TOML file; repeat for both daemons of the host")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="with `on`: seconds to wait until every daemon reports drained on /readyz")
    add_json_flag(parser)
    parser.set_defaults(handler=run_drain)


@dataclass(frozen=True)
class Target:
    role: str
    config: str
    drain: Drain
    metrics: str  # host:port of /readyz, "" when the daemon has no [metrics] table


def target_of(path: str) -> Target:
    data = read_toml(path)
    for role in ("party", "controller"):
        table = data.get(role)
        if isinstance(table, dict):
            data_dir = table.get("data_dir")
            if not isinstance(data_dir, str) or not data_dir:
                raise ConfigError(f"{path}: {role}.data_dir: expected a string")
            metrics = data.get("metrics", {}).get("address", "") if isinstance(data.get("metrics"), dict) else ""
            return Target(role, path, Drain(data_dir), metrics if isinstance(metrics, str) else "")
    raise ConfigError(f"{path}: neither a [party] nor a [controller] table: not a zrkeyring daemon config")


def readyz(target: Target, timeout: float = 2.0) -> list[str] | None:
    """The daemon's current readiness reasons from /readyz, or None when it cannot be asked."""
    if not target.metrics:
        return None
    host, _, port = target.metrics.rpartition(":")
    url = f"http://{host.strip('[]') or '127.0.0.1'}:{port}/readyz?format=json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the daemon's own port
            body = response.read()
    except urllib.error.HTTPError as exc:  # 503: not ready, with the reasons
        body = exc.read()
    except (OSError, ValueError):
        return None
    try:
        reasons = json.loads(body).get("reasons", [])
    except (ValueError, AttributeError):
        return None
    return [str(r) for r in reasons] if isinstance(reasons, list) else None


def drained(reasons: list[str] | None) -> bool:
    return reasons is not None and any(r.startswith(f"{DRAINED}:") for r in reasons)


def run_drain(args: argparse.Namespace) -> int:
    targets = [target_of(path) for path in args.config]
    if args.state in ("on", "off"):
        for target in targets:
            target.drain.set(args.state == "on")
    deadline = time.monotonic() + (args.wait if args.state == "on" else 0.0)
    while True:
        states = {t.config: readyz(t) for t in targets}
        if all(drained(states[t.config]) for t in targets) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    report = [{"role": t.role, "config": t.config, "switch": "on" if t.drain.on else "off",
               "drained": drained(states[t.config]), "readyz": states[t.config]} for t in targets]
    lines = [f"{r['role']} ({r['config']}): drain {r['switch']}; " + (
        "drained" if r["drained"] else
        ("/readyz: " + ("; ".join(r["readyz"]) or "ready") if r["readyz"] is not None else
         "/readyz not reachable (no [metrics] address, or the daemon is down)")) for r in report]
    emit(args, {"state": args.state, "daemons": report}, lines)
    if args.state == "on" and args.wait and not all(r["drained"] for r in report):
        return EXIT_NOT_DRAINED
    return 0
