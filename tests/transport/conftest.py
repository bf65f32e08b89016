"""A real cluster for transport tests: `init_cluster` bundles, PyNaCl identity keys, gRPC on 127.0.0.1.

Four bundles are made but only parties 1-3 are filled into the roster: party 4 holds a valid cluster
TLS certificate yet is a stranger to the gate, which is how the stranger test gets past TLS.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
import pytest
from nacl.signing import SigningKey

from appliance.cluster.bundle import ClusterBundle, fill_roster, init_cluster
from appliance.mpc_party.envelope import Gate, Outbox
from appliance.mpc_party.transport import PeerClient, PeerServer, TlsCredentials
from appliance.rules.roster import Roster
from chain_client.address import account_address
from chain_node.local import free_port

BUNDLE_PARTIES = 4
ROSTER_PARTIES = 3


def free_base_port(count: int) -> int:
    """A base port with `count` consecutive free ports on 127.0.0.1."""
    return free_port(count)


@dataclass
class Party:
    index: int
    key: SigningKey
    tls: TlsCredentials
    gate: Gate
    outbox: Outbox
    server: PeerServer | None
    client: PeerClient


@dataclass
class Cluster:
    bundle: ClusterBundle
    roster: Roster
    keys: dict[int, SigningKey]
    parties: dict[int, Party]


def sign_with(key: SigningKey):
    return lambda message: key.sign(message).signature


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[ClusterBundle, dict[int, SigningKey]]:
    out = tmp_path_factory.mktemp("cluster") / "bundle"
    made = init_cluster(out, BUNDLE_PARTIES, 2, "127.0.0.1", free_base_port(BUNDLE_PARTIES), name="test")
    keys = {i: SigningKey.generate() for i in range(1, BUNDLE_PARTIES + 1)}
    for i in range(1, ROSTER_PARTIES + 1):
        chain = account_address(coincurve.PrivateKey().public_key.format())
        fill_roster(out, i, keys[i].verify_key.encode().hex(), chain)
    return made, keys


@pytest.fixture
def cluster(bundle) -> Cluster:
    """Parties 1-3 serving; party 4 only has a client (its bundle is valid, its key is not in the roster)."""
    made, keys = bundle
    roster = Roster.load(made.out / "roster.toml")
    parties = {}
    for i in range(1, BUNDLE_PARTIES + 1):
        tls = TlsCredentials.from_bundle(made.party_dir(i))
        gate = Gate(i, roster.identity_keys())
        server = PeerServer.from_roster(roster, i, gate, tls).start() if i <= ROSTER_PARTIES else None
        client = PeerClient.from_roster(roster, i, tls, timeout=2.0)
        parties[i] = Party(i, keys[i], tls, gate, Outbox(i, sign_with(keys[i])), server, client)
    yield Cluster(made, roster, keys, parties)
    for p in parties.values():
        p.client.close()
        if p.server is not None:
            p.server.stop(grace=None)
