"""A whole keyring on one machine: chain node, n party hosts (SoftHSM token, party daemon, controller).

Used by `zrkeyring demo`, the end-to-end tests and the end-to-end benchmark. It follows the operator's
steps (docs/operations.md) with the real commands and processes: `zrkeyring hsm init` per token,
`cluster init` and the roster, a keyring registered on the chain node with every party's chain
address, then `zrkeyring party run` and `zrkeyring controller run` for each party, each party in its
own folder with its own SoftHSM configuration (as separate hosts would be).

Only the workspace owner / keyring admin uses a software key: that role is a user of the chain, not
part of the keyring.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.cluster.bundle import fill_roster, init_cluster
from appliance.hsm.softhsm import init_token, make_token_dir, write_hsm_config
from appliance.mpc_party.local_api import PartyClient
from chain_client.client import ChainClient, ClientConfig, msg_responses
from chain_client.crypto import SoftwareSigner
from chain_client.messages import bank_send, remove_keyring_party, update_keyring
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from chain_node.genesis import Genesis, GenesisAccount, Params
from chain_node.local import LocalNode, free_port, make_dev_tls

ROOT = Path(__file__).resolve().parents[2]
CHAIN_ID = "zrkeyring-local-1"
KEY_TYPE_NAMES = {"ecdsa": "KEY_TYPE_ECDSA_SECP256K1", "bitcoin": "KEY_TYPE_BITCOIN_SECP256K1",
                  "ed25519": "KEY_TYPE_EDDSA_ED25519"}
FUNDS = 10**15


@dataclass
class LocalSettings:
    parties: int = 3
    threshold: int = 2
    block_time: float = 0.2
    default_btl: int = 100
    round_timeout_s: float = 2.0
    join_timeout_s: float = 1.5
    repair_interval_s: float = 3.0  # the party's scan for missing shares and orphans
    attempt_blocks: int = 15
    poll_interval_s: float = 0.1
    chain_tls: bool = True  # the node serves TLS under a throwaway CA that every config pins
    unfunded: tuple[int, ...] = ()  # parties left out of genesis: no account until `fund()` sends them urock
    key_req_fee: int = 0  # the keyring's fees, charged to each posting party (docs/operations.md, Funding)
    sig_req_fee: int = 0
    dev_chain_requests: bool = False  # the node may be asked to create signature requests itself (dev only)
    refresh_period_blocks: int = 0  # scheduled refresh (appliance/rules/lifecycle.py); 0: off
    refresh_window_blocks: int = 30
    presign_pool_max: int = 0  # [party] presignature pool entries held (0: pools off)
    presign_pool_per_key: int = 0  # [controller] entries kept per hot key and signer set in idle time
    # Placement (the WAN bench, appliance/local/netns.py): each party's roster address (default: all on
    # loopback), the address the chain node binds, and whether each daemon listens on its own loopback
    # at its roster port (a delay line in front of it holds the roster address).
    party_hosts: tuple[str, ...] = ()
    chain_host: str = "127.0.0.1"
    listen_on_loopback: bool = False
    admission_per_block: float = 0.0  # [controller] admission_per_block (keyring-wide admission; 0: off)
    # [controller] workers: jobs each controller runs at once. Here every party shares one host's cores
    # (a party host of its own keeps the default 8): past capacity more sessions at once only made each
    # slower and more of them late (docs/performance.md, "Fewer sessions at once on a shared host").
    workers: int = 4


@dataclass
class PartyHost:
    index: int
    directory: Path
    env: dict[str, str]
    hsm_section: str
    identity_key: str = ""
    chain_address: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.directory / "party.sock"

    def config(self, role: str) -> Path:
        return self.directory / f"{role}.toml"

    def log(self, role: str) -> Path:
        return self.directory / f"{role}.log"


class LocalKeyring:
    """Build with `setup()`, then `start()`; `close()` stops every process."""

    def __init__(self, root: Path, settings: LocalSettings | None = None,
                 launch_prefix: Callable[[int], list[str]] | None = None) -> None:
        """`launch_prefix(index)` is put before every daemon command of party `index` (e.g. `ip netns
        exec NS`, to run the host in its own network namespace)."""
        self.root = Path(root)
        self.settings = settings or LocalSettings()
        self.launch_prefix = launch_prefix or (lambda _index: [])
        self.base_port = 0
        self.owner = SoftwareSigner()
        self.hosts: list[PartyHost] = []
        self.node: LocalNode | None = None
        self.client: ChainClient | None = None
        self.workspace = self.keyring = ""

    # --- set-up, in the operator's order ---------------------------------------------------------

    def setup(self) -> LocalKeyring:
        s = self.settings
        for i in range(1, s.parties + 1):
            self.hosts.append(self._provision_host(i))
        bundle = self.root / "cluster"
        self.base_port = free_port(s.parties)
        init_cluster(bundle, s.parties, s.threshold, list(s.party_hosts) or "127.0.0.1", self.base_port,
                     name="local")
        for host in self.hosts:
            fill_roster(bundle, host.index, host.identity_key, host.chain_address)
        for host in self.hosts:  # the TLS key leaves the disk: sealed by the party's own HSM
            self._zrkeyring(host, "cluster", "seal-key", "--bundle-dir", str(bundle / f"party-{host.index}"),
                            "--config", str(host.directory / "secrets" / f"party-{host.index}.toml"))
        funded = [h.chain_address for h in self.hosts if h.index not in s.unfunded]
        accounts = [GenesisAccount(a, FUNDS) for a in [self.owner.address(), *funded]]
        params = Params(default_btl=s.default_btl, dev_chain_requests=s.dev_chain_requests)
        genesis = Genesis(CHAIN_ID, params, accounts)
        (self.root / "chain").mkdir(parents=True, exist_ok=True)
        names = tuple(dict.fromkeys((s.chain_host, "127.0.0.1", "localhost")))
        tls = make_dev_tls(self.root / "chain" / "tls", names) if s.chain_tls else None
        self.node = LocalNode(self.root / "chain", genesis, block_time=s.block_time, tls=tls, host=s.chain_host)
        self.node.start()
        self.client = ChainClient(ClientConfig(endpoints=[self.node.endpoint], chain_id=CHAIN_ID,
                                               poll_interval_s=0.05, tls_ca_pem=tls.ca_pem() if tls else b""))
        self._register_keyring()
        for host in self.hosts:
            self._write_configs(host, bundle)
        return self

    def _provision_host(self, index: int) -> PartyHost:
        directory = self.root / f"party-{index}"
        conf = make_token_dir(directory / "softhsm")
        token = init_token(conf, label=f"party-{index}")
        hsm_toml = write_hsm_config(token, directory / "secrets")
        host = PartyHost(index, directory, {**os.environ, **token.env, "PYTHONUNBUFFERED": "1",
                                            "GRPC_VERBOSITY": "ERROR"}, hsm_toml.read_text())
        out = self._zrkeyring(host, "hsm", "init", "--config", str(hsm_toml))
        host.identity_key = _field(out, r"identity public key \(Ed25519\): ([0-9a-f]{64})")
        host.chain_address = _field(out, r"chain address:\s+(zen1[0-9a-z]+)")
        return host

    def _zrkeyring(self, host: PartyHost, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "appliance.cli.main", *args], cwd=ROOT, env=host.env,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"zrkeyring {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _register_keyring(self) -> None:
        assert self.client is not None
        me = self.owner.address()
        response = self.client.send(self.owner, [identity_tx.MsgNewWorkspace(creator=me)])
        self.workspace = msg_responses(response, [identity_tx.MsgNewWorkspaceResponse])[0].addr
        new = identity_tx.MsgNewKeyring(creator=me, description="zrkeyring local",
                                        party_threshold=self.settings.threshold,
                                        key_req_fee=self.settings.key_req_fee, sig_req_fee=self.settings.sig_req_fee)
        response = self.client.send(self.owner, [new])
        self.keyring = msg_responses(response, [identity_tx.MsgNewKeyringResponse])[0].addr
        self.client.send(self.owner, [identity_tx.MsgAddKeyringParty(creator=me, keyring_addr=self.keyring,
                                                                     party=h.chain_address) for h in self.hosts])

    def _write_configs(self, host: PartyHost, bundle: Path) -> None:
        s, node = self.settings, self.node
        assert node is not None
        party_dir = bundle / f"party-{host.index}"
        chain = f'[chain]\nchain_id = "{CHAIN_ID}"\nendpoints = ["{node.endpoint}"]\nkeyring = "{self.keyring}"\n'
        chain += f'tls_ca = "{node.tls.ca}"\n' if node.tls else "plaintext_loopback_ok = true\n"
        host.config("party").write_text(
            f'[party]\nindex = {host.index}\nroster = "{party_dir / "roster.toml"}"\ntls_dir = "{party_dir}"\n'
            f'data_dir = "{host.directory / "data"}"\nlocal_socket = "{host.socket}"\n'
            f"round_timeout_s = {s.round_timeout_s}\njoin_timeout_s = {s.join_timeout_s}\n"
            f"attempt_blocks = {s.attempt_blocks}\nrepair_interval_s = {s.repair_interval_s}\n"
            f"presign_pool_max = {s.presign_pool_max}\n{self._listen_field(host)}{_refresh_fields(s)}\n"
            f"{host.hsm_section}\n"
            f"{chain}{_metrics_table()}")
        host.config("controller").write_text(
            f'[controller]\nindex = {host.index}\nroster = "{party_dir / "roster.toml"}"\n'
            f'party_socket = "{host.socket}"\ndata_dir = "{host.directory / "data"}"\n'
            f"poll_interval_s = {s.poll_interval_s}\ndefault_btl = {s.default_btl}\n"
            f"attempt_blocks = {s.attempt_blocks}\njob_timeout_s = {s.round_timeout_s * 8}\n{_refresh_fields(s)}"
            f"presign_pool_per_key = {s.presign_pool_per_key}\n"
            f"admission_per_block = {s.admission_per_block}\nworkers = {s.workers}\n\n"
            f"{host.hsm_section}\n{chain}{_metrics_table()}")

    def party_port(self, index: int) -> int:
        """Party `index`'s roster port (consecutive from `base_port`, as `cluster init` assigns)."""
        return self.base_port + index - 1

    def _listen_field(self, host: PartyHost) -> str:
        if not self.settings.listen_on_loopback:
            return ""
        return f'listen = "127.0.0.1:{self.party_port(host.index)}"\n'

    # --- processes ---------------------------------------------------------------------------------

    def start(self, party_entry: dict[int, tuple[str, dict[str, str]]] | None = None) -> LocalKeyring:
        """Start every party, then every controller; `party_entry` maps a party index to another entry
        module and extra environment for its party process (tests run a party with changed behaviour)."""
        for host in self.hosts:
            module, env = (party_entry or {}).get(host.index, ("appliance.cli.main", {}))
            self.start_role(host.index, "party", module=module, env=env)
        for host in self.hosts:
            self.wait_party_ready(host.index)
        for host in self.hosts:
            self.start_role(host.index, "controller")
        self.wait_all_live()
        return self

    def wait_all_live(self, timeout_s: float = 60.0) -> None:
        """Until every running party sees every running party live (its daemon pinging, its controller
        ticking): then every controller picks the same signers and keygen participants."""
        running = {h.index for h in self.hosts if "party" in h.procs and "controller" in h.procs}
        deadline = time.monotonic() + timeout_s
        for index in sorted(running):
            while True:
                try:
                    live = set(self.party_status(index).get("live", running))
                except Exception:  # a party still starting
                    live = set()
                if running <= live:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"party {index} sees {sorted(live)} live, not {sorted(running)}")
                time.sleep(0.1)

    def host(self, index: int) -> PartyHost:
        return self.hosts[index - 1]

    def start_role(self, index: int, role: str, module: str = "appliance.cli.main",
                   env: dict[str, str] | None = None) -> None:
        """Start `zrkeyring ROLE run` for a host; tests may run another entry module (a party with
        changed protocol behaviour) with extra environment."""
        host = self.host(index)
        with host.log(role).open("a") as log:
            host.procs[role] = subprocess.Popen(
                [*self.launch_prefix(index), sys.executable, "-m", module, role, "run", "--config",
                 str(host.config(role))],
                cwd=ROOT, env={**host.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)

    def wait_party_ready(self, index: int, timeout_s: float = 90.0) -> None:
        host = self.host(index)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = host.procs.get("party")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"party {index} exited with code {proc.returncode}:\n"
                                   f"{host.log('party').read_text()[-3000:]}")
            if host.socket.exists():
                client = PartyClient(host.socket)
                try:
                    client.status(timeout=1.0)
                    return
                except Exception:  # not serving yet
                    time.sleep(0.1)
                finally:
                    client.close()
            else:
                time.sleep(0.1)
        raise RuntimeError(f"party {index} not ready within {timeout_s} s:\n{host.log('party').read_text()[-3000:]}")

    def stop_role(self, index: int, role: str, kill: bool = False) -> None:
        proc = self.host(index).procs.pop(role, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill_host(self, index: int) -> None:
        """A host lost at once (power cut, OOM kill of both daemons): SIGKILL its controller and party."""
        for role in ("controller", "party"):
            self.stop_role(index, role, kill=True)

    def restart_host(self, index: int) -> None:
        """Bring a host's party daemon back, then its controller, as systemd would after a reboot."""
        self.start_role(index, "party")
        self.wait_party_ready(index)
        self.start_role(index, "controller")

    # --- what an operator does to grow or replace a host (docs/operations.md, runbooks) ---------------

    def add_host(self, index: int, increase_threshold: bool = False, replacing: int | None = None) -> PartyHost:
        """A new party host, set up the way an operator would: `hsm init` on its token, `cluster add-party`
        (its certificate) and `cluster roster` (its entry) on the bundle, `cluster seal-key`, the new
        roster on every host with its daemons restarted, its chain account funded, then the admin's
        MsgAddKeyringParty (with MsgRemoveKeyringParty for the host it replaces, in the same tx)."""
        assert self.client is not None and index == len(self.hosts) + 1
        bundle = self.root / "cluster"
        host = self._provision_host(index)
        self.hosts.append(host)
        self._zrkeyring(host, "cluster", "add-party", "--bundle", str(bundle), "--party", str(index),
                        "--host", "127.0.0.1", "--port", str(free_port()))
        self._zrkeyring(host, "cluster", "roster", "--bundle", str(bundle), "--party", str(index),
                        "--identity-key", host.identity_key, "--chain-address", host.chain_address)
        self._zrkeyring(host, "cluster", "seal-key", "--bundle-dir", str(bundle / f"party-{index}"),
                        "--config", str(host.directory / "secrets" / f"party-{index}.toml"))
        self._write_configs(host, bundle)
        self.fund(index, FUNDS // 100)  # from the owner, whose genesis funds are FUNDS too
        running = [h.index for h in self.hosts if "party" in h.procs]
        for i in running:  # every host reads the new roster at start
            self.stop_role(i, "controller")
            self.stop_role(i, "party")
        for i in [*running, index]:
            self.start_role(i, "party")
        for i in [*running, index]:
            self.wait_party_ready(i)
            self.start_role(i, "controller")
        self.wait_all_live()
        me = self.owner.address()
        msgs: list = [identity_tx.MsgAddKeyringParty(creator=me, keyring_addr=self.keyring, party=host.chain_address,
                                                     increase_threshold=increase_threshold)]
        if replacing is not None:
            msgs.append(remove_keyring_party(me, self.keyring, self.host(replacing).chain_address))
        self.client.send(self.owner, msgs)
        return host

    def wipe_host(self, index: int) -> None:
        """A host lost for good: both daemons killed, its HSM token and its data directory gone."""
        self.kill_host(index)
        host = self.host(index)
        for gone in (host.directory / "softhsm", host.directory / "data"):
            shutil.rmtree(gone, ignore_errors=True)

    def party_status(self, index: int) -> dict:
        """The party daemon's local `Status` (includes its liveness view, `live`)."""
        client = PartyClient(self.host(index).socket)
        try:
            return client.status(timeout=5.0)
        finally:
            client.close()

    def close(self) -> None:
        for host in self.hosts:
            for role in ("controller", "party"):
                self.stop_role(host.index, role)
        if self.client is not None:
            self.client.close()
        if self.node is not None:
            self.node.stop()

    # --- what a workspace owner does ---------------------------------------------------------------

    def fund(self, index: int, amount: int) -> None:
        """Send `amount` urock from the owner to party `index`'s chain account (a bank MsgSend), as an
        operator funds a party host after genesis."""
        assert self.client is not None
        self.client.send(self.owner, [bank_send(self.owner, self.host(index).chain_address, amount)])

    # --- what the keyring's admin does (membership on chain; the daemons reshare every key to it) ---

    def set_threshold(self, threshold: int) -> None:
        """MsgUpdateKeyring with a new party_threshold (the owner is the keyring's admin)."""
        assert self.client is not None
        keyring = self.client.keyring(self.keyring)
        self.client.send(self.owner, [update_keyring(self.owner.address(), keyring, party_threshold=threshold)])

    def remove_party(self, index: int, decrease_threshold: bool = False) -> None:
        """MsgRemoveKeyringParty for party `index`; its daemons keep running (they deal, then stop)."""
        assert self.client is not None
        self.client.send(self.owner, [remove_keyring_party(self.owner.address(), self.keyring,
                                                           self.host(index).chain_address, decrease_threshold)])

    def request_key(self, key_type: str) -> int:
        assert self.client is not None
        msg = treasury_tx.MsgNewKeyRequest(creator=self.owner.address(), workspace_addr=self.workspace,
                                           keyring_addr=self.keyring, key_type=key_type)
        response = self.client.send(self.owner, [msg])
        return msg_responses(response, [treasury_tx.MsgNewKeyRequestResponse])[0].key_req_id

    def request_signatures(self, key_id: int, datas: list[bytes]) -> list[int]:
        """Several signature requests in one transaction (one MsgNewSignatureRequest each)."""
        assert self.client is not None
        me = self.owner.address()
        msgs = [treasury_tx.MsgNewSignatureRequest(creator=me, key_ids=[key_id], data_for_signing=d.hex())
                for d in datas]
        response = self.client.send(self.owner, msgs)
        answers = msg_responses(response, [treasury_tx.MsgNewSignatureRequestResponse] * len(msgs))
        return [a.sig_req_id for a in answers]

    def request_signature(self, key_id: int, data: bytes) -> int:
        assert self.client is not None
        msg = treasury_tx.MsgNewSignatureRequest(creator=self.owner.address(), key_ids=[key_id],
                                                 data_for_signing=data.hex())
        response = self.client.send(self.owner, [msg])
        return msg_responses(response, [treasury_tx.MsgNewSignatureRequestResponse])[0].sig_req_id

    def wait_request(self, kind: str, request_id: int, timeout_s: float = 60.0):
        """Poll until the request is FULFILLED (returned) or REJECTED (raised)."""
        assert self.client is not None
        deadline = time.monotonic() + timeout_s
        while True:
            req = self.client.key_request(request_id) if kind == "key" else self.client.sign_request(request_id)
            if req is not None and req.status.endswith("FULFILLED"):
                return req
            if req is not None and req.status.endswith("REJECTED"):
                raise RuntimeError(f"{kind} request {request_id} rejected: {req.reject_reason}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} request {request_id} still {req.status if req else 'missing'}")
            time.sleep(0.05)

    def key_for_request(self, request_id: int):
        """The chain's Key created by a fulfilled key request (found by its public key)."""
        assert self.client is not None
        req = self.client.key_request(request_id)
        for key in self.client.keys(self.workspace):
            if bytes(key.public_key) == bytes(req.public_key):
                return key
        raise LookupError(f"no key for key request {request_id}")


def demo_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _refresh_fields(s: LocalSettings) -> str:
    """The schedule lines both daemons must share (they derive the same refresh slots from them)."""
    return f"refresh_period_blocks = {s.refresh_period_blocks}\nrefresh_window_blocks = {s.refresh_window_blocks}\n"


def _metrics_table() -> str:
    return f'\n[metrics]\naddress = "127.0.0.1:{free_port()}"\n'


def _field(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"unexpected `hsm init` output: {text!r}")
    return match.group(1)
