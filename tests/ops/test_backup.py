"""`zrkeyring backup create|verify|restore` on a real local keyring (chain node, SoftHSM, party daemons):
a snapshot taken while the daemons run holds the shares (which live in the WAL), verify compares them
with the chain's keys, an older backup is refused rather than silently dropping newer shares, and a
restored party signs again. Every signature checked with an independent library."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from appliance.local.localnet import LocalKeyring, LocalSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    keyring = LocalKeyring(tmp_path_factory.mktemp("backup"), LocalSettings()).setup().start()
    yield keyring
    keyring.close()


def zrkeyring(net: LocalKeyring, index: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", *args], cwd=ROOT,
                          env=net.host(index).env, capture_output=True, text=True, timeout=120)


def backup(net: LocalKeyring, index: int, command: str, *args: str) -> tuple[int, dict, str]:
    config = str(net.host(index).config("party"))
    result = zrkeyring(net, index, "backup", command, "--config", config, *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, document, result.stderr


def new_key(net: LocalKeyring, index: int = 1):
    """An Ed25519 key, once party `index` has stored its share (the chain counts 2 of 3 posts)."""
    request_id = net.request_key("ed25519")
    net.wait_request("key", request_id)
    deadline = time.monotonic() + 30
    committed = (f"committed its share of key request {request_id} ",  # finality.py, after every CONFIRM
                 f"committed its pending share of key request {request_id}:")  # or on the others' evidence
    while not any(line in net.host(index).log("party").read_text() for line in committed):
        assert time.monotonic() < deadline, "party never committed its share"
        time.sleep(0.1)
    return request_id, net.key_for_request(request_id)


def test_backup_verify_restore_round_trip(net: LocalKeyring, tmp_path: Path) -> None:
    first_request, first = new_key(net)
    old = tmp_path / "party-1-old.tar"
    code, made, _ = backup(net, 1, "create", "--out", str(old),
                           "--controller-config", str(net.host(1).config("controller")))
    assert code == 0 and made["party"] == 1 and set(made["files"]) == {"shares.sqlite", "party_state.sqlite",
                                                                        "journal.sqlite"}
    assert old.stat().st_mode & 0o077 == 0
    assert [s["request_id"] for s in made["shares"]] == [first_request]  # read from the WAL, while running
    code, checked, _ = backup(net, 1, "verify", str(old))
    assert code == 0 and checked["complete"] and checked["matched"] == [first.id]

    second_request, second = new_key(net)
    code, checked, _ = backup(net, 1, "verify", str(old))
    assert code == 3 and not checked["complete"]
    assert [k["key_id"] for k in checked["missing"]] == [second.id]
    new = tmp_path / "party-1-new.tar"
    assert backup(net, 1, "create", "--out", str(new))[0] == 0
    code, _, err = backup(net, 1, "create", "--out", str(new))
    assert code == 1 and "never overwrites" in err

    code, _, err = backup(net, 1, "restore", str(new))
    assert code == 1 and "stop it first" in err  # the party daemon still answers
    net.stop_role(1, "controller")
    net.stop_role(1, "party")

    code, _, err = backup(net, 1, "restore", str(old))
    assert code == 1 and "refused: the backup lacks 1 share(s) the current store holds" in err
    assert f"request {second_request} " in err
    code, restored, _ = backup(net, 1, "restore", str(new))
    assert code == 0 and restored["complete"] and restored["left_out"] == []
    assert Path(restored["kept"], "shares.sqlite").exists()
    code, forced, err = backup(net, 1, "restore", str(old), "--force")
    assert code == 3 and forced["left_out"] == [second_request]
    assert f"warning: share of request {second_request} " in err and forced["kept"] in err
    code, restored, _ = backup(net, 1, "restore", str(new))  # back to the complete store
    assert code == 0 and restored["complete"]

    net.start_role(1, "party")
    net.wait_party_ready(1)
    net.start_role(1, "controller")
    digest = hashlib.sha256(b"after restore").digest()
    request = net.wait_request("sign", net.request_signature(second.id, digest))
    VerifyKey(bytes(second.public_key)).verify(digest, bytes(request.signed_data[0].signed_data))  # PyNaCl


def test_a_damaged_or_foreign_backup_is_refused(net: LocalKeyring, tmp_path: Path) -> None:
    good = tmp_path / "party-2.tar"
    assert backup(net, 2, "create", "--out", str(good))[0] == 0
    code, _, err = backup(net, 1, "verify", str(good))
    assert code == 1 and "backup of party 2" in err and "this config is party 1" in err

    damaged = tmp_path / "damaged.tar"
    with tarfile.open(good) as src, tarfile.open(damaged, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "shares.sqlite":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data))
    code, _, err = backup(net, 2, "verify", str(damaged))
    assert code == 1 and "shares.sqlite does not match its SHA-256" in err

    not_a_backup = tmp_path / "junk.tar"
    not_a_backup.write_bytes(b"\x00" * 1024)
    code, _, err = backup(net, 2, "verify", str(not_a_backup))
    assert code == 1 and "zrkeyring backup" in err


def test_two_restores_in_one_second_keep_both_sets_of_current_files(tmp_path) -> None:
    """CI: a restore and a forced restore within one second both named data_dir/pre-restore-<second>/
    and the second failed with FileExistsError (a traceback, not an answer)."""
    from appliance.cli.backup import _move_aside
    kept = []
    for body in (b"first", b"second"):
        (tmp_path / "shares.sqlite").write_bytes(body)
        kept.append(_move_aside(tmp_path, ["shares.sqlite"]))
    assert kept[0] != kept[1] and [(k / "shares.sqlite").read_bytes() for k in kept] == [b"first", b"second"]
