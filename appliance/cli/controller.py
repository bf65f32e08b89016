"""`zrkeyring controller run`: start this party's chain controller.

The controller watches the chain for the keyring's open requests, asks the local party daemon to run
each one, verifies every result with an independent library, and posts this party's fulfilments.
"""

from __future__ import annotations

import argparse
import threading

from appliance.cli.daemon_group import register_run_group
from appliance.controller import metrics
from appliance.controller.service import Controller, ControllerConfig, HsmChainSigner
from appliance.hsm import open_hsm
from appliance.mpc_party.local_api import PartyClient
from appliance.runtime.daemon_life import serve_until_signalled
from appliance.runtime.drain import drain_reasons
from appliance.runtime.metrics_http import Health, serve_configured
from appliance.runtime.readiness import Check, all_of, chain_reasons, socket_reasons
from chain_client.client import ChainClient

HELP = """Run this host's chain controller in the foreground (the zrkeyring-controller unit runs it).

Every [controller] poll_interval_s it reads the keyring's open requests from [chain] endpoints, asks the
local party daemon ([controller] party_socket) to run each one, checks every result with an
independent library, and posts this party's fulfilments, signed with the HSM chain key, recorded in
[controller] data_dir/journal.sqlite before they leave. It tells systemd READY=1 once the chain
answers with [chain] chain_id and the party answers on its socket. Stop it with SIGTERM.

examples:
  systemctl start zrkeyring-controller
  zrkeyring controller run --config /etc/zrkeyring/controller.toml   # in a terminal, as the service user
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    register_run_group(subparsers, "controller", "the party's chain controller",
                       "watch the chain, run requests on the local party, post fulfilments", HELP,
                       "controller TOML file with [controller], [hsm], [chain]", run_controller)


def run_controller(args: argparse.Namespace) -> int:
    config = ControllerConfig.load(args.config)
    health = Health()
    serve_configured(config.metrics, metrics.REGISTRY, health)
    hsm = open_hsm(config.hsm)
    chain = ChainClient(config.chain.client_config())
    party = PartyClient(config.controller.party_socket)
    controller = Controller(config, chain, HsmChainSigner(hsm), party)
    controller.drain.warn_at_start()
    stop = threading.Event()
    worker = threading.Thread(target=controller.run_forever, args=(stop,), name="controller-loop")
    worker.start()

    def shutdown() -> None:
        stop.set()
        worker.join()
        controller.close()
        party.close()
        chain.close()
        hsm.close()

    serve_until_signalled(f"controller {controller.me} of {controller.keyring} ready", shutdown,
                          lambda: f"height {controller.height}", health=health,
                          readiness=controller_readiness(config, chain, party),
                          after_ready=lambda: drain_reasons(controller.drain, controller.running_jobs, "job(s)"))
    return 0


def controller_readiness(config: ControllerConfig, chain: ChainClient, party: PartyClient) -> Check:
    """Ready: the chain answers with our chain id, and the party socket is there and answers (which
    also sets zrkeyring_controller_party_up, so an idle controller does not report its party down)."""
    socket_path = config.controller.party_socket

    def party_answers() -> list[str]:
        missing = socket_reasons(socket_path)
        if not missing:
            try:
                party.status(timeout=2.0)
            except Exception as exc:  # noqa: BLE001 - any failure is "does not answer"
                missing = [f"party daemon on {socket_path} does not answer: {str(exc).splitlines()[0][:200]}"]
        metrics.PARTY_UP.set(0 if missing else 1)
        return missing

    return all_of(lambda: chain_reasons(chain.latest_block, config.chain.chain_id, config.chain.endpoints),
                  party_answers)
