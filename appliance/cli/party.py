"""`zrkeyring party run`: start the MPC party daemon of this host.

The daemon logs in to the HSM, serves its peers over mutual TLS and its own controller over a unix
socket, and runs a protocol session for each job after re-checking the request on chain.
"""

from __future__ import annotations

import argparse

from appliance.cli.daemon_group import register_run_group
from appliance.hsm import open_hsm
from appliance.mpc_party import metrics
from appliance.mpc_party.daemon import PartyConfig, PartyDaemon
from appliance.runtime.daemon_life import serve_until_signalled
from appliance.runtime.drain import drain_reasons
from appliance.runtime.errors import UserError
from appliance.runtime.metrics_http import Health, serve_configured
from appliance.runtime.readiness import all_of, chain_reasons
from chain_client.client import ChainClient

HELP = """Run this host's MPC party daemon in the foreground (the zrkeyring-party unit runs it).

It logs in to the HSM, unseals its TLS key, serves the other parties over mutual TLS on the roster
address (or [party] listen) and its own controller on [party] local_socket, and takes part in a key
or signature only after checking the request on chain. It tells systemd READY=1 once the chain answers
with [chain] chain_id and every roster certificate comes from the cluster CA; until then `systemctl
status` and /readyz say why not. Stop it with SIGTERM (systemctl stop).

examples:
  systemctl start zrkeyring-party
  zrkeyring party run --config /etc/zrkeyring/party.toml     # in a terminal, as the service user
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    register_run_group(subparsers, "party", "the MPC party daemon",
                       "run the party daemon (peers over mTLS, controller over a unix socket)", HELP,
                       "party TOML file with [party], [hsm] and [chain]", run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    config = PartyConfig.load(args.config)
    health = Health()
    serve_configured(config.metrics, metrics.REGISTRY, health)
    hsm = open_hsm(config.hsm)
    chain = ChainClient(config.chain.client_config())
    try:
        daemon = PartyDaemon(config, hsm, chain).start()
    except UserError:
        hsm.close()
        raise
    daemon.drain.warn_at_start()
    ready = all_of(lambda: chain_reasons(chain.latest_block, config.chain.chain_id, config.chain.endpoints),
                   daemon.tls_reasons)
    serve_until_signalled(f"party {daemon.me} ready", daemon.stop, health=health, readiness=ready,
                          after_ready=lambda: drain_reasons(daemon.drain, daemon.running_sessions, "session(s)"))
    chain.close()  # its channel was used from this thread too (readiness): close it or exit may hang
    hsm.close()
    return 0
