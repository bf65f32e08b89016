"""Operator mistakes that used to be tracebacks: each is now one line naming the field and the fix, and a
non-zero exit. Permission cases run the real code in a child process without CAP_DAC_OVERRIDE (setpriv),
in a 0555 directory: the tests run as root, whom no mode bit stops otherwise; a service user meets the
same errno from a root-owned directory after the documented copy steps."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli.hsm import softhsm_token_dir
from appliance.cluster.bundle import init_cluster
from appliance.cluster.sealkey import KEY_FILE, SEALED_FILE
from appliance.controller.journal import Journal
from appliance.hsm.softhsm import write_hsm_config
from appliance.runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SETPRIV = shutil.which("setpriv")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="drops CAP_DAC_OVERRIDE as root")
USER = "root"

CHILD = """
import sys
from appliance.runtime.errors import UserError
try:
    {call}
except UserError as exc:
    print(f"zrkeyring: error: {{exc}}", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture()
def root_owned() -> Iterator[Path]:
    """A 0555 directory: enterable, not writable without CAP_DAC_OVERRIDE."""
    path = Path(tempfile.mkdtemp(prefix="zrkeyring-perm-"))
    path.chmod(0o555)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path)


def _as_nobody(call: str) -> subprocess.CompletedProcess:
    return _without_dac([sys.executable, "-c", CHILD.format(call=call)])


def _without_dac(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `argv` as root without CAP_DAC_OVERRIDE/READ_SEARCH: mode bits and owners apply as to a user."""
    drop = "-dac_override,-dac_read_search"
    return subprocess.run([SETPRIV, f"--inh-caps={drop}", f"--bounding-set={drop}", *argv], cwd=ROOT,
                          env={**(env or {}), "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=120)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance.cli.main", *args]


def _one_line_error(result: subprocess.CompletedProcess, *wanted: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    for text in wanted:
        assert text in line, line
    return line


@needs_root
def test_data_dir_whose_parent_is_not_writable(root_owned: Path) -> None:
    target = root_owned / "party"
    result = _as_nobody(f"from appliance.runtime.paths import ensure_dir; "
                        f"ensure_dir({str(target)!r}, 'party.data_dir')")
    _one_line_error(result, "party.data_dir: cannot create", str(target), f"running as {USER}",
                    f"install -d -o {USER} -m 0750 {target}")


@needs_root
def test_existing_unwritable_data_dir(root_owned: Path) -> None:
    result = _as_nobody(f"from appliance.runtime.paths import ensure_dir; ensure_dir({str(root_owned)!r}, "
                        "'controller.data_dir')")
    _one_line_error(result, "controller.data_dir:", f"is not writable by {USER}")


@needs_root
def test_party_socket_directory_missing(root_owned: Path) -> None:
    """`party run` outside systemd without /run/zrkeyring (RuntimeDirectory= normally creates it)."""
    sock = root_owned / "run" / "zrkeyring" / "party.sock"
    call = (f"from appliance.mpc_party.local_api import LocalServer; "
            f"LocalServer({str(sock)!r}, lambda job: b'', lambda: {{}}).start()")
    _one_line_error(_as_nobody(call), "party.local_socket (its directory): cannot create", str(sock.parent),
                    f"install -d -o {USER}")


@needs_root
def test_party_socket_directory_not_writable(root_owned: Path) -> None:
    sock = root_owned / "party.sock"
    call = (f"from appliance.mpc_party.local_api import LocalServer; "
            f"LocalServer({str(sock)!r}, lambda job: b'', lambda: {{}}).start()")
    _one_line_error(_as_nobody(call), "party.local_socket (its directory):", f"is not writable by {USER}")


@needs_root
def test_controller_journal_that_cannot_be_opened(root_owned: Path) -> None:
    call = f"from appliance.controller.journal import Journal; Journal({str(root_owned / 'journal.sqlite')!r})"
    _one_line_error(_as_nobody(call), "controller journal", "cannot open", "belong to the service user")


def test_controller_journal_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"not a database, just bytes " * 100)
    with pytest.raises(UserError, match="controller journal .*cannot open: file is not a database"):
        Journal(path)


# --- cluster seal-key and hsm init: who owns what ----------------------------------------------------

NOBODY = 65534


@pytest.fixture()
def sealing_host(softhsm_token, tmp_path: Path):
    """A cluster bundle and a provisioned token: what a host has when it reaches `cluster seal-key`."""
    bundle = init_cluster(tmp_path / "bundle", 2, 2, "127.0.0.1", 7331)
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    init = subprocess.run(_cli("hsm", "init", "--config", str(config)), env=softhsm_token.env,
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    return bundle, config, softhsm_token.env


@needs_root
def test_seal_key_as_the_service_user_in_a_root_owned_bundle_directory(sealing_host) -> None:
    """After the documented copy the bundle directory is root's: the service user can read party.key
    but cannot write party.key.sealed. One line, nothing sealed, nothing deleted."""
    bundle, config, env = sealing_host
    party_dir = bundle.party_dir(1)
    party_dir.chmod(0o555)
    try:
        result = _without_dac(_cli("cluster", "seal-key", "--bundle-dir", str(party_dir), "--config", str(config)),
                              env)
    finally:
        party_dir.chmod(0o755)
    _one_line_error(result, f"cluster seal-key: {party_dir} is not writable by {USER}",
                    "run `zrkeyring cluster seal-key` as root", f"chown -R zrkeyring: {party_dir}")
    assert (party_dir / KEY_FILE).exists() and not (party_dir / SEALED_FILE).exists()


@needs_root
def test_seal_key_as_root_leaves_the_sealed_key_to_the_owner_of_party_key(sealing_host) -> None:
    """As root, party.key.sealed gets party.key's owner (the service user after the documented copy), not
    root:root 0600 that the party daemon cannot read; a root-owned party.key on a host with the service
    user gets a warning naming the chown."""
    bundle, config, env = sealing_host
    party_dir = bundle.party_dir(1)
    os.chown(party_dir / KEY_FILE, NOBODY, NOBODY)
    result = subprocess.run(_cli("cluster", "seal-key", "--bundle-dir", str(party_dir), "--config", str(config)),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sealed = (party_dir / SEALED_FILE).stat()
    assert (sealed.st_uid, sealed.st_gid, stat.S_IMODE(sealed.st_mode)) == (NOBODY, NOBODY, 0o600)
    assert "owner nobody, mode 0600" in result.stdout and result.stderr == ""

    other = bundle.party_dir(2)
    result = subprocess.run(_cli("cluster", "seal-key", "--bundle-dir", str(other), "--config", str(config)),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if _has_user("zrkeyring"):
        assert f"warning: {other / SEALED_FILE} is owned by root" in result.stderr
        assert f"chown zrkeyring: {other / SEALED_FILE}" in result.stderr


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@needs_root
def test_hsm_init_as_root_on_a_token_the_service_user_owns_is_refused(softhsm_token, tmp_path: Path) -> None:
    """Root would create key files the service user cannot read: refused, nothing created."""
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    token_dir = softhsm_token_dir(softhsm_token.module, softhsm_token.label, softhsm_token.env)
    assert token_dir is not None
    for path in (token_dir, *token_dir.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    result = subprocess.run(_cli("hsm", "init", "--config", str(config)), env=softhsm_token.env,
                            capture_output=True, text=True, timeout=120)
    _one_line_error(result, "hsm init refused", f"{token_dir} belongs to nobody", "Run it as nobody")
    assert not [f for f in token_dir.iterdir() if f.suffix == ".object" and f.stem != "token"]


@needs_root
def test_hsm_init_never_makes_a_second_set_of_keys_and_two_objects_get_a_hint(softhsm_token, tmp_path: Path) -> None:
    """Keys made by root are files the service user cannot read. Its `hsm init` used to make a second
    set with the same labels (and root then met "2 objects named ... expected one"): now it refuses
    naming the chown; `hsm status` says the same; and the "2 objects" error says what happened."""
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    env = softhsm_token.env
    made = subprocess.run(_cli("hsm", "init", "--config", str(config)), env=env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    token_dir = softhsm_token_dir(softhsm_token.module, softhsm_token.label, env)
    assert token_dir is not None
    keys = sorted(f for f in token_dir.iterdir() if not f.name.startswith(("token.", "generation")))
    for path in keys:
        os.chown(path, NOBODY, NOBODY)  # as the service user sees root's files: unreadable
    result = _without_dac(_cli("hsm", "init", "--config", str(config)), env)
    _one_line_error(result, "hsm init refused", f"{len(keys)} file(s) {USER} cannot read",
                    "second set with the same labels", f"chown -R {USER}: {token_dir}")
    assert sorted(f for f in token_dir.iterdir() if not f.name.startswith(("token.", "generation"))) == keys
    status = _without_dac(_cli("hsm", "status", "--config", str(config)), env)
    assert "MISSING" in status.stdout and f"note: token directory {token_dir} holds" in status.stdout

    # The old behaviour, provision() called regardless, makes the second set; root then sees both.
    call = (f"from appliance.hsm import Hsm, load_hsm_config; "
            f"h = Hsm.open(load_hsm_config({str(config)!r})); h.provision(); h.close()")
    second = _without_dac([sys.executable, "-c", CHILD.format(call=call)], env)
    assert second.returncode == 0, second.stderr
    result = subprocess.run(_cli("hsm", "init", "--config", str(config)), env=env, capture_output=True,
                            text=True, timeout=120)
    _one_line_error(result, "2 objects named", "hsm init` ran as two users", "keep the set whose identity key")
