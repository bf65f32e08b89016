"""`make deb` from a clean clone, then the package installed on this machine with dpkg, used, removed
and purged. Slow (a clone, a virtualenv build, dpkg) and changes the system (installs the package,
creates the `zrkeyring` system user, which is kept), so it runs only with ZRKEYRING_TEST_DEB=1, as root,
and never on a machine where zrkeyring is already installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance import __version__
from appliance.hsm.softhsm import write_hsm_config

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("zrkeyring-party.service", "zrkeyring-controller.service")


def _installed() -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "zrkeyring"], capture_output=True, text=True)
    return "ok installed" in result.stdout or "config-files" in result.stdout


pytestmark = [
    pytest.mark.skipif(os.environ.get("ZRKEYRING_TEST_DEB") != "1",
                       reason="builds and installs the .deb (about a minute, root): set ZRKEYRING_TEST_DEB=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root"),
    pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system"),
]


def run(*command: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600):
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built by `make deb` in a fresh clone of the committed tree."""
    clone = tmp_path_factory.mktemp("deb") / "clone"
    run("git", "clone", "--quiet", str(ROOT), str(clone))
    # Share the package build's pip cache with the checkout (it only holds Debian-python wheels).
    run("make", "-C", str(clone), "deb", f"DEB_PIP_CACHE={ROOT / 'build' / 'deb-pip-cache'}")
    built = clone / "dist" / f"zrkeyring_{__version__}_amd64.deb"
    assert built.is_file(), f"make deb did not produce {built.name}"
    return built


@pytest.fixture
def installed(deb: Path):
    if _installed():
        pytest.skip("zrkeyring is already installed here; this test will not replace or purge it")
    run("dpkg", "-i", str(deb))
    try:
        yield deb
    finally:
        if _installed():
            run("dpkg", "--purge", "zrkeyring", check=False)


def test_install_use_remove_purge(installed: Path, softhsm_token, tmp_path: Path) -> None:
    # The command is on PATH and is the packaged venv's.
    assert Path("/usr/bin/zrkeyring").resolve() == Path("/opt/zrkeyring/venv/bin/zrkeyring")
    assert run("/usr/bin/zrkeyring", "--version").stdout.strip() == f"zrkeyring {__version__}"
    run("/opt/zrkeyring/venv/bin/python", "-c", "import pkcs11, systemd.daemon, prometheus_client, coincurve")

    # HSM commands from /usr/bin against a private SoftHSM token (never the system one).
    config = write_hsm_config(softhsm_token, tmp_path)
    env = softhsm_token.env
    before = run("/usr/bin/zrkeyring", "hsm", "status", "--config", str(config), env=env, check=False)
    assert before.returncode == 3, before.stdout + before.stderr  # token reachable, keys not made yet
    run("/usr/bin/zrkeyring", "hsm", "init", "--config", str(config), env=env)
    after = run("/usr/bin/zrkeyring", "hsm", "status", "--config", str(config), env=env)
    assert "chain address: zen1" in after.stdout

    # Units as installed, with the real ExecStart binary.
    if shutil.which("systemd-analyze"):
        verify = run("systemd-analyze", "verify", "--man=no", *(f"/lib/systemd/system/{u}" for u in UNITS))
        assert not (verify.stdout + verify.stderr).strip(), verify.stderr

    # User, groups, directories and conffiles as postinst leaves them.
    assert "softhsm" in run("id", "-nG", "zrkeyring").stdout.split()
    state = Path("/var/lib/zrkeyring")
    assert state.is_dir() and oct(state.stat().st_mode & 0o777) == "0o750"
    assert run("stat", "-c", "%U:%G %a", str(state)).stdout.strip() == "zrkeyring:zrkeyring 750"
    assert run("stat", "-c", "%G %a", "/etc/zrkeyring/party.toml").stdout.strip() == "zrkeyring 640"
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "zrkeyring").stdout
    assert "/etc/zrkeyring/party.toml" in conffiles and "/etc/zrkeyring/controller.toml" in conffiles

    # remove keeps key material (and conffiles); purge deletes /var/lib/zrkeyring and says so.
    sentinel = state / "sealed-share-sentinel"
    sentinel.write_text("ciphertext stand-in\n")
    removed = run("dpkg", "--remove", "zrkeyring")
    assert sentinel.exists(), "dpkg --remove must never delete key material"
    assert "KEPT" in removed.stderr
    assert not Path("/usr/bin/zrkeyring").exists()
    assert Path("/etc/zrkeyring/party.toml").exists()
    purged = run("dpkg", "--purge", "zrkeyring")
    assert "PURGE: deleting /var/lib/zrkeyring" in purged.stderr
    assert not state.exists() and not Path("/opt/zrkeyring").exists()
    assert not Path("/etc/zrkeyring/party.toml").exists()

