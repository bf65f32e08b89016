"""Operator mistakes that used to be tracebacks: each is now one line naming the field and the fix, and a
non-zero exit. Permission cases run the real code in a child process without CAP_DAC_OVERRIDE (setpriv),
in a 0555 directory: the tests run as root, whom no mode bit stops otherwise; a service user meets the
same errno from a root-owned directory after the documented copy steps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.controller.journal import Journal
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
    drop = "-dac_override,-dac_read_search"
    return subprocess.run([SETPRIV, f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable, "-c",
                           CHILD.format(call=call)], cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)


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
