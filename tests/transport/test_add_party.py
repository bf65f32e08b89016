"""`zrkeyring cluster add-party` (cluster/bundle.py `add_party`): a party added after `cluster init`
gets a certificate from a CA of its own (the cluster CA's key is gone), which every party then trusts,
and real mutual-TLS gRPC connects it with the old parties both ways. The new CA vouches for the new
party only: a certificate it issues under another party's name is refused (the roster pins each
party's certificate)."""

from __future__ import annotations

import shutil

import coincurve
import pytest
from nacl.signing import SigningKey

from appliance.cluster.bundle import add_party, fill_roster, init_cluster
from appliance.cluster.ca import ClusterCA
from appliance.mpc_party.envelope import Gate
from appliance.mpc_party.transport import PeerClient, PeerServer, PeerUnavailable, TlsCredentials
from appliance.rules.roster import Roster
from appliance.runtime.errors import UserError
from chain_client.address import account_address
from tests.transport.conftest import free_base_port


def fill(out, index: int) -> None:
    fill_roster(out, index, SigningKey.generate().verify_key.encode().hex(),
                account_address(coincurve.PrivateKey().public_key.format()))


@pytest.fixture
def grown(tmp_path):
    out = tmp_path / "bundle"
    init_cluster(out, 3, 2, "127.0.0.1", free_base_port(3), name="grow")
    for i in (1, 2, 3):
        fill(out, i)
    made = add_party(out, 4, "127.0.0.1", free_base_port(1))
    fill(out, 4)
    return made


def serve(made, index: int):
    roster = Roster.load(made.party_dir(index) / "roster.toml")
    tls = TlsCredentials.from_bundle(made.party_dir(index))
    server = PeerServer.from_roster(roster, index, Gate(index, roster.identity_keys()), tls).start()
    return roster, tls, server


def test_added_party_connects_with_every_old_party_both_ways(grown) -> None:
    rosters = {i: Roster.load(grown.party_dir(i) / "roster.toml") for i in (1, 2, 3, 4)}
    assert {r.digest() for r in rosters.values()} == {Roster.load(grown.out / "roster.toml").digest()}
    assert rosters[1].indices() == [1, 2, 3, 4]
    assert (grown.party_dir(4) / "party.key").stat().st_mode & 0o777 == 0o600
    servers = {}
    try:
        for i in (1, 4):
            servers[i] = serve(grown, i)
        for me, peer in ((4, 1), (1, 4)):
            roster, tls, _ = servers[me]
            client = PeerClient.from_roster(roster, me, tls, timeout=5.0)
            try:
                client.ping(peer, timeout=5.0)  # raises PeerUnavailable if TLS refuses either side
            finally:
                client.close()
    finally:
        for _, _, server in servers.values():
            server.stop(grace=None)


def test_a_certificate_under_another_partys_name_is_refused(grown, tmp_path) -> None:
    """An impostor with a CA that every party trusts (as the new party's CA is) but a certificate that
    is not the roster's pinned one for party 2: party 1 refuses it."""
    rogue = ClusterCA("rogue")
    forged = rogue.issue_party(2, "127.0.0.1")
    fake = tmp_path / "fake-party-2"
    shutil.copytree(grown.party_dir(2), fake)
    (fake / "party.pem").write_bytes(forged.cert_pem)
    (fake / "party.key").unlink()
    (fake / "party.key").write_bytes(forged.key_pem)
    (fake / "party.key").chmod(0o600)
    for d in (grown.party_dir(1), fake):  # both trust the rogue CA: only the pin stands in the way
        (d / "ca.pem").write_bytes((d / "ca.pem").read_bytes() + rogue.cert_pem)
    _, _, server = serve(grown, 1)
    try:
        roster = Roster.load(fake / "roster.toml")
        client = PeerClient.from_roster(roster, 2, TlsCredentials.from_bundle(fake), timeout=3.0)
        try:
            with pytest.raises(PeerUnavailable, match="PERMISSION_DENIED"):  # the pin, not the handshake
                client.ping(1, timeout=3.0)
        finally:
            client.close()
    finally:
        server.stop(grace=None)


def test_an_index_already_in_the_roster_is_refused(grown) -> None:
    with pytest.raises(UserError, match="already"):
        add_party(grown.out, 3, "127.0.0.1", free_base_port(1))
