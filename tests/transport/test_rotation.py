"""Certificate rotation without an outage (`cluster rotate`): at every step of the three phases a party
that has moved on and one that has not still talk over real mutual TLS, and each is ready; skipping a
phase (new certificate before the peer trusts the new CA) is refused, which is why the phases exist."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import coincurve
import pytest
from nacl.signing import SigningKey

from appliance.cluster.bundle import fill_roster, init_cluster
from appliance.cluster.rotate import PHASES, rotate_cluster
from appliance.mpc_party.envelope import Gate, Outbox
from appliance.mpc_party.transport import PeerClient, PeerServer, PeerUnavailable, TlsCredentials
from appliance.rules.roster import Roster
from appliance.runtime.readiness import cert_expiry, cert_reasons
from chain_client.address import account_address
from tests.transport.conftest import free_base_port, sign_with

STAGES = ("old", *PHASES)


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("rotation")
    init_cluster(root / "old", 2, 2, "127.0.0.1", free_base_port(2), name="rot", days=30)
    keys = {i: SigningKey.generate() for i in (1, 2)}
    for i, key in keys.items():
        fill_roster(root / "old", i, key.verify_key.encode().hex(),
                    account_address(coincurve.PrivateKey().public_key.format()))
    rotation = rotate_cluster(root / "old", root / "new", days=365)
    return root, rotation, keys


def stage_dir(root: Path, rotation, index: int, stage: str) -> Path:
    """Party `index`'s /etc/zrkeyring/cluster after the phases up to `stage`, each copied over the last."""
    target = root / "hosts" / stage / f"party-{index}"
    if not target.exists():
        shutil.copytree(root / "old" / f"party-{index}", target)
        for phase in PHASES[:STAGES.index(stage)]:
            shutil.copytree(rotation.phase_dir(phase, index), target, dirs_exist_ok=True)
    return target


def exchange(root: Path, rotation, keys, stage_1: str, stage_2: str) -> dict[int, object]:
    """Party 1 at `stage_1` and party 2 at `stage_2`: serve, then each sends the other one envelope."""
    dirs = {1: stage_dir(root, rotation, 1, stage_1), 2: stage_dir(root, rotation, 2, stage_2)}
    sid = secrets.token_bytes(32)
    nodes = {}
    for i, directory in dirs.items():
        roster = Roster.load(directory / "roster.toml")
        tls = TlsCredentials.from_bundle(directory)
        gate = Gate(i, roster.identity_keys())
        gate.open_session(sid)
        server = PeerServer.from_roster(roster, i, gate, tls).start()
        nodes[i] = (server, PeerClient.from_roster(roster, i, tls, timeout=1.5, attempts=1),
                    Outbox(i, sign_with(keys[i])))
    results = {}
    try:
        for i, j in ((1, 2), (2, 1)):
            _, client, outbox = nodes[i]
            try:
                results[i] = client.send(j, outbox.seal(sid, "frost-ed25519-dkg", 1, j, b"hello"))
            except PeerUnavailable as exc:
                results[i] = exc
    finally:
        for server, client, _ in nodes.values():
            client.close()
            server.stop(0)
    return results


@pytest.mark.parametrize("stage_1, stage_2", [("old", "phase1-trust"), ("phase1-trust", "phase2-switch"),
                                              ("phase2-switch", "phase3-final"), ("phase3-final", "phase3-final")])
def test_neighbouring_phases_talk(rotated, stage_1: str, stage_2: str) -> None:
    root, rotation, keys = rotated
    results = exchange(root, rotation, keys, stage_1, stage_2)
    assert all(getattr(r, "accepted", False) for r in results.values()), results


def test_skipping_a_phase_is_refused(rotated) -> None:
    """A party presenting its new certificate to one that does not trust the new CA yet is refused."""
    root, rotation, keys = rotated
    results = exchange(root, rotation, keys, "old", "phase2-switch")
    assert not any(getattr(r, "accepted", False) for r in results.values()), results


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_is_ready_and_exports_the_certificate_in_use(rotated, stage: str) -> None:
    root, rotation, _keys = rotated
    directory = stage_dir(root, rotation, 1, stage)
    roster = Roster.load(directory / "roster.toml")
    certs = {"this party's certificate": directory / "party.pem", "party 2": roster.tls_cert_path(2)}
    assert cert_reasons(directory / "ca.pem", certs) == []
    days = (cert_expiry({"party-1": directory / "party.pem"})["party-1"] - cert_expiry(
        {"x": root / "old" / "party-1" / "party.pem"})["x"]) / 86400
    assert round(days) == (0 if stage in ("old", "phase1-trust") else 335)  # 365-day new vs 30-day old
    if stage == "phase3-final":
        assert Roster.load(directory / "roster.toml").digest() == rotation.roster.digest()
        assert (directory / "ca.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 1  # the old CA is gone
