"""`zrkeyring keyring register` against a real chain node process on 127.0.0.1."""

from __future__ import annotations

import argparse
import hashlib
import secrets
import subprocess
import sys

import pytest

from appliance.cli import keyring as keyring_cli
from appliance.rules.roster import Roster
from appliance.runtime.errors import ConfigError, UserError
from chain_client.crypto import SoftwareSigner
from chain_client.proto_gen.cosmos.tx.v1beta1.tx_pb2 import TxRaw
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.tx import sign_doc_bytes
from chain_node.keyfile import write_key_file
from chain_node.local import ROOT, free_port
from tests.chain.conftest import CHAIN_ID, open_world, verify_ecdsa

chain_world = pytest.fixture(scope="module", name="world")(open_world)


@pytest.fixture
def keys_file(world, tmp_path):
    path = tmp_path / "keys.json"
    write_key_file(path, CHAIN_ID, {"admin": world.owner, "unfunded": SoftwareSigner(), "poor": world.poor})
    return path


def write_roster(path, parties, threshold=2, keyring="", complete=True):
    lines = ["[cluster]", 'name = "test-cluster"', f"threshold = {threshold}", f'keyring = "{keyring}"']
    for i, signer in enumerate(parties, start=1):
        lines += [
            "[[party]]",
            f"index = {i}",
            f'name = "party-{i}"',
            f'address = "127.0.0.1:{7000 + i}"',
            f'tls_cert = "party-{i}.pem"',
            f'identity_key = "{secrets.token_hex(32)}"',
            f'chain_address = "{signer.address() if complete or i > 1 else ""}"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(world, roster, keys_file, *extra, node=None) -> None:
    parser = argparse.ArgumentParser()
    keyring_cli.register(parser.add_subparsers())
    argv = ["keyring", "register", "--roster", str(roster), "--admin-keys-file", str(keys_file)]
    argv += ["--node", node or world.node.endpoint, *extra]
    if "--admin-key" not in extra:
        argv += ["--admin-key", "admin"]
    args = parser.parse_args(argv)
    assert args.handler(args) == 0


def register(world, roster, keys_file, capsys, *extra, node=None) -> tuple[str, str]:
    run(world, roster, keys_file, *extra, node=node)
    out = capsys.readouterr()
    return out.out.strip(), out.err


def tx_hashes(stderr: str) -> list[str]:
    return [line.split()[1] for line in stderr.splitlines() if line.startswith("tx ")]


def test_register_creates_the_keyring_with_every_party(world, keys_file, tmp_path, capsys):
    parties = world.parties[:3]
    roster_path = write_roster(tmp_path / "roster.toml", parties)
    address, err = register(world, roster_path, keys_file, capsys, "--write-roster", "--sig-req-fee", "7")
    assert address.startswith("keyring1")
    keyring = world.client.keyring(address)
    assert list(keyring.parties) == [p.address() for p in parties]
    assert keyring.party_threshold == 2 and keyring.sig_req_fee == 7
    assert list(keyring.admins) == [world.owner.address()]
    assert keyring.description == "test-cluster"
    assert Roster.load(roster_path).cluster.keyring == address
    hashes = tx_hashes(err)
    assert len(hashes) == 2  # MsgNewKeyring, then every MsgAddKeyringParty in one tx
    for txhash in hashes:  # the admin's signatures, checked with pyca/cryptography
        found = world.client.get_tx(txhash)
        account = world.client.account(world.owner.address())
        raw = TxRaw(
            body_bytes=found.tx.body.SerializeToString(),
            auth_info_bytes=found.tx.auth_info.SerializeToString(),
        )
        doc = sign_doc_bytes(raw.body_bytes, raw.auth_info_bytes, CHAIN_ID, account.account_number)
        verify_ecdsa(world.owner.public_key(), hashlib.sha256(doc).digest(), found.tx.signatures[0])
    adds = world.client.get_tx(hashes[1]).tx.body.messages
    assert [identity_tx.MsgAddKeyringParty.FromString(m.value).party for m in adds] == list(keyring.parties)

    again, err = register(world, roster_path, keys_file, capsys)  # the roster names the keyring now
    assert again == address
    assert "nothing to add" in err and not tx_hashes(err)


def test_keyring_flag_adds_only_the_missing_parties(world, keys_file, tmp_path, capsys):
    parties = world.parties[:3]
    existing = world.keyring(parties=1, threshold=2)  # party 1 already in, as after a partial run
    roster_path = write_roster(tmp_path / "roster.toml", parties)
    address, err = register(world, roster_path, keys_file, capsys, "--keyring", existing)
    assert address == existing
    assert "party-1" in err and "already a party" in err
    assert list(world.client.keyring(existing).parties) == [p.address() for p in parties]
    assert Roster.load(roster_path).cluster.keyring == ""  # no --write-roster


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--admin-key", "unfunded"], "not funded"),
        (["--admin-key", "poor"], "insufficient funds"),
        (["--admin-key", "nobody"], "no key named 'nobody'"),
        (["--chain-id", "other-1"], "serves chain 'zrtest-1', not 'other-1'"),
        (["--keyring", "keyring1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"], "not found on chain"),
    ],
)
def test_refusals_name_the_problem(world, keys_file, tmp_path, extra, expected):
    roster_path = write_roster(tmp_path / "roster.toml", world.parties[:2])
    with pytest.raises(UserError, match=expected):
        run(world, roster_path, keys_file, *extra)


def test_not_an_admin_of_the_existing_keyring(world, keys_file, tmp_path):
    other = world.keyring(parties=0)  # created by the owner; registered here with another key
    keys = tmp_path / "party-keys.json"
    write_key_file(keys, CHAIN_ID, {"admin": world.parties[4]})
    roster_path = write_roster(tmp_path / "roster.toml", world.parties[:2])
    with pytest.raises(UserError, match="is not an admin of keyring"):
        run(world, roster_path, keys, "--keyring", other)


def test_incomplete_roster_and_conflicting_keyring(world, keys_file, tmp_path):
    incomplete = write_roster(tmp_path / "incomplete.toml", world.parties[:2], complete=False)
    with pytest.raises(ConfigError, match="roster incomplete"):
        run(world, incomplete, keys_file)
    named = write_roster(tmp_path / "named.toml", world.parties[:2], keyring="keyring1abc")
    with pytest.raises(UserError, match="differs from the roster"):
        run(world, named, keys_file, "--keyring", "keyring1def")


def test_node_down_is_one_clear_line(world, keys_file, tmp_path):
    """As a process: exit 1, one error line, no traceback (the shape `zrkeyring` prints)."""
    roster_path = write_roster(tmp_path / "roster.toml", world.parties[:2])
    script = (
        "import argparse, sys\n"
        "from appliance.cli import keyring as keyring_cli\n"
        "from appliance.runtime.errors import UserError\n"
        "parser = argparse.ArgumentParser()\n"
        "keyring_cli.register(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "try:\n    sys.exit(args.handler(args))\n"
        "except UserError as exc:\n    print(f'zrkeyring: error: {exc}', file=sys.stderr); sys.exit(1)\n"
    )
    argv = ["keyring", "register", "--roster", str(roster_path), "--admin-keys-file", str(keys_file)]
    argv += ["--admin-key", "admin", "--node", f"127.0.0.1:{free_port()}"]
    done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-c", script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("zrkeyring: error: chain not reachable: no chain node answered")
    assert "Traceback" not in done.stderr


def test_register_over_tls_pins_the_node_ca(tmp_path, capsys) -> None:
    """`keyring register --tls-ca` reaches a TLS node; without the pin (plaintext) it cannot."""
    from chain_client.client import ChainClient, ClientConfig
    from chain_node.genesis import Genesis, GenesisAccount, Params
    from chain_node.local import LocalNode, make_dev_tls

    admin = SoftwareSigner()
    parties = [SoftwareSigner() for _ in range(3)]
    genesis = Genesis(CHAIN_ID, Params(), [GenesisAccount(s.address(), 10**12) for s in [admin, *parties]])
    (tmp_path / "node").mkdir()
    tls = make_dev_tls(tmp_path / "node" / "tls")
    node = LocalNode(tmp_path / "node", genesis, tls=tls)
    node.start()
    try:
        keys = tmp_path / "keys.json"
        write_key_file(keys, CHAIN_ID, {"admin": admin})
        roster = write_roster(tmp_path / "roster.toml", parties)
        parser = argparse.ArgumentParser()
        keyring_cli.register(parser.add_subparsers())
        base = ["keyring", "register", "--roster", str(roster), "--admin-keys-file", str(keys),
                "--admin-key", "admin", "--node", node.endpoint]
        args = parser.parse_args(base)
        with pytest.raises(UserError, match="not reachable"):
            args.handler(args)
        args = parser.parse_args([*base, "--tls-ca", str(tls.ca)])
        assert args.handler(args) == 0
        address = capsys.readouterr().out.strip().splitlines()[-1]
        with ChainClient(ClientConfig([node.endpoint], CHAIN_ID, tls_ca_pem=tls.ca_pem())) as client:
            assert client.keyring(address) is not None
        args = parser.parse_args([*base, "--tls-ca", str(tmp_path / "missing.pem")])
        with pytest.raises(UserError, match="--tls-ca"):
            args.handler(args)
    finally:
        node.stop()


def test_write_roster_updates_the_per_party_copies_and_json_names_them(world, keys_file, tmp_path, capsys):
    """`cluster roster` copies the complete roster into each party-<i>/ bundle; registering with
    --write-roster updates those copies too (a copy of another roster is left alone and named), and says
    how to update rosters already on the hosts. --json prints one object."""
    import json

    parties = world.parties[:2]
    master = write_roster(tmp_path / "roster.toml", parties)
    for i in (1, 2):
        (tmp_path / f"party-{i}").mkdir()
        (tmp_path / f"party-{i}" / "roster.toml").write_text(master.read_text())
    (tmp_path / "party-3").mkdir()
    write_roster(tmp_path / "party-3" / "roster.toml", world.parties[2:4])  # another cluster's roster
    out, err = register(world, master, keys_file, capsys, "--write-roster", "--json")
    document = json.loads(out)
    address = document["keyring"]
    assert address.startswith("keyring1") and document["chain_id"] == CHAIN_ID
    assert document["roster_written"] == [str(master), str(tmp_path / "party-1" / "roster.toml"),
                                          str(tmp_path / "party-2" / "roster.toml")]
    for path in document["roster_written"]:
        assert Roster.load(path).cluster.keyring == address
    assert Roster.load(tmp_path / "party-3" / "roster.toml").cluster.keyring == ""
    assert f"warning: {tmp_path / 'party-3' / 'roster.toml'} is not a copy of {master}" in err
    assert "rosters already on party hosts: copy this roster" in err and f'keyring = "{address}"' in err
