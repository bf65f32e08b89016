"""`make deb` from a clean clone, then the package installed on this machine with dpkg, used, removed
and purged. Slow (a clone, a virtualenv build, dpkg) and changes the system (installs the package,
creates the `zrkeyring` system user, which is kept), so it runs only with ZRKEYRING_TEST_DEB=1, as root,
and never on a machine where zrkeyring is already installed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from appliance import __version__
from appliance.hsm.softhsm import write_hsm_config

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("zrkeyring-party.service", "zrkeyring-controller.service")
BUILD_TIMEOUT_S = 1800  # `make deb` took over 10 min on a loaded 2-core machine (xz of the venv)
# The upgrade step installs a package with a bumped version. By default it is the built package repacked
# with the version raised in the three places an installed zrkeyring reads it from (dpkg's control file,
# the venv's distribution metadata, its RECORD) -- seconds, where a second `make deb` takes minutes.
# ZRKEYRING_TEST_DEB_UPGRADE=1 builds the bumped package from source with `make deb` instead.
REBUILD_UPGRADE = os.environ.get("ZRKEYRING_TEST_DEB_UPGRADE") == "1"


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
    """The package built by `make deb` in a fresh clone of the committed tree (or, to re-run the tests
    against one already built from it, ZRKEYRING_TEST_DEB_FILE=path/to/zrkeyring_<version>_amd64.deb)."""
    prebuilt = os.environ.get("ZRKEYRING_TEST_DEB_FILE")
    if prebuilt:
        return Path(prebuilt)
    clone = tmp_path_factory.mktemp("deb") / "clone"
    run("git", "clone", "--quiet", str(ROOT), str(clone))
    # Share the package build's pip cache with the checkout (it only holds Debian-python wheels).
    run("make", "-C", str(clone), "deb", f"DEB_PIP_CACHE={ROOT / 'build' / 'deb-pip-cache'}", timeout=BUILD_TIMEOUT_S)
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



# --- the operator walkthrough: docs/operations.md, three hosts on loopback addresses ------------------

HOSTS = (1, 2, 3)
CHAIN_BIN = "/opt/zrkeyring/venv/bin/zrkeyring-chain"
ZRK = "/usr/bin/zrkeyring"


def _bumped_deb(deb: Path) -> Path:
    """The package to upgrade to: the same software with the version raised to `<version>.1`."""
    return _rebuilt_bumped_deb(deb) if REBUILD_UPGRADE else _repacked_bumped_deb(deb)


def _rebuilt_bumped_deb(deb: Path) -> Path:
    """The same tree with a newer version (pyproject.toml and the changelog), built by `make deb`."""
    clone = deb.parent.parent
    pyproject = clone / "pyproject.toml"
    new = __version__ + ".1"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{__version__}"', f'version = "{new}"', 1))
    changelog = clone / "packaging" / "debian" / "changelog"
    entry = (f"zrkeyring ({new}) bookworm; urgency=medium\n\n  * Walkthrough test upgrade.\n\n"
             f" -- zrkeyring tests <tests@zrkeyring.invalid>  Wed, 02 Dec 2026 00:00:00 +0000\n\n")
    changelog.write_text(entry + changelog.read_text())
    run("make", "-C", str(clone), "deb", f"DEB_PIP_CACHE={ROOT / 'build' / 'deb-pip-cache'}", timeout=BUILD_TIMEOUT_S)
    return clone / "dist" / f"zrkeyring_{new}_amd64.deb"


def _repacked_bumped_deb(deb: Path) -> Path:
    """The built package unpacked, its version raised where dpkg and the installed zrkeyring read it, and
    packed again (fast compression). What the upgrade exercises is the same: a newer package over an
    older one (prerm upgrade, unpack, postinst configure), and the daemons reporting the new version."""
    old, new = __version__, __version__ + ".1"
    work = Path(tempfile.mkdtemp(prefix="zrk-bump-", dir=deb.parent))
    root = work / "root"
    run("dpkg-deb", "-R", str(deb), str(root))
    control = root / "DEBIAN" / "control"
    control.write_text(control.read_text().replace(f"\nVersion: {old}\n", f"\nVersion: {new}\n", 1))
    (dist_info,) = root.glob(f"opt/zrkeyring/venv/lib/python3*/site-packages/zrkeyring-{old}.dist-info")
    metadata = dist_info / "METADATA"
    metadata.write_text(metadata.read_text().replace(f"\nVersion: {old}\n", f"\nVersion: {new}\n", 1))
    record = dist_info / "RECORD"
    record.write_text(record.read_text().replace(f"zrkeyring-{old}.dist-info/", f"zrkeyring-{new}.dist-info/"))
    dist_info.rename(dist_info.with_name(f"zrkeyring-{new}.dist-info"))
    _rewrite_md5sums(root, old, new)
    out = work / f"zrkeyring_{new}_amd64.deb"
    run("dpkg-deb", "-Zgzip", "-z1", "-b", str(root), str(out))
    assert f"Version: {new}" in run("dpkg-deb", "-I", str(out)).stdout
    return out


def _rewrite_md5sums(root: Path, old: str, new: str) -> None:
    """DEBIAN/md5sums for the same files as before (dh_md5sums' choice: conffiles are not listed),
    with the renamed dist-info directory and the edited files' new sums."""
    md5sums = root / "DEBIAN" / "md5sums"
    lines = []
    for line in md5sums.read_text().splitlines():
        relative = line.split("  ", 1)[1].replace(f"zrkeyring-{old}.dist-info/", f"zrkeyring-{new}.dist-info/")
        lines.append(f"{hashlib.md5((root / relative).read_bytes(), usedforsecurity=False).hexdigest()}  {relative}\n")
    md5sums.write_text("".join(lines))


class Walk:
    """Three simulated party hosts under one work directory, each with its own /etc, state, token."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def host(self, i: int) -> Path:
        return self.root / f"host-{i}"

    def env(self, i: int) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.host(i) / "softhsm2.conf")}

    def as_service(self, i: int, *command: str, check: bool = True):
        """`runuser -u zrkeyring -- …` with the host's SoftHSM: where the docs run as the service user."""
        return run("runuser", "-u", "zrkeyring", "--", "env", f"SOFTHSM2_CONF={self.host(i) / 'softhsm2.conf'}",
                   *command, check=check)

    def start(self, i: int, role: str) -> None:
        log = (self.host(i) / f"{role}.log").open("ab")
        self.procs.append(subprocess.Popen(
            ["runuser", "-u", "zrkeyring", "--", "env", f"SOFTHSM2_CONF={self.host(i) / 'softhsm2.conf'}",
             ZRK, role, "run", "--config", str(self.host(i) / "etc" / f"{role}.toml")],
            stdout=log, stderr=subprocess.STDOUT))

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def wait_ready(self, i: int, port: int, timeout: float = 60) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1{i}:{port}/readyz", timeout=2):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        logs = "".join((self.host(i) / f"{r}.log").read_text(errors="replace")[-2000:] for r in ("party", "controller")
                       if (self.host(i) / f"{r}.log").exists())
        pytest.fail(f"host {i} :{port} not ready within {timeout} s:\n{logs}")


def _show(chain_port: int, what: str, ident: str) -> dict:
    return json.loads(run(CHAIN_BIN, "show", what, ident, "--node", f"127.0.0.1:{chain_port}").stdout)


def _wait_fulfilled(chain_port: int, what: str, ident: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _show(chain_port, what, ident)
        if found.get("status", "").endswith("FULFILLED"):
            return found
        assert not found.get("status", "").endswith("REJECTED"), found
        time.sleep(1)
    pytest.fail(f"{what} {ident} not fulfilled: {found}")


def _sign_and_verify(chain_port: int, keys: Path, public_key: bytes, text: bytes) -> None:
    from nacl.signing import VerifyKey

    digest = hashlib.sha256(text).digest()
    out = run(CHAIN_BIN, "sign-request", "--key", "owner", "--keys-file", str(keys), "--node",
              f"127.0.0.1:{chain_port}", "--key-id", "1", "--data", digest.hex()).stdout
    request = out.split("sign request: ")[1].split()[0]
    signed = _wait_fulfilled(chain_port, "sign-request", request)
    signature = base64.b64decode(signed["signed_data"][0]["signed_data"])
    VerifyKey(public_key).verify(digest, signature)  # PyNaCl: an independent Ed25519 check


def test_operator_walkthrough_install_sign_upgrade_backup(deb: Path, tmp_path: Path) -> None:
    """docs/operations.md end to end with the real package: three hosts on 127.0.0.11-13, the dev chain,
    the documented commands (as the service user where the docs say so), a verified signature; then a
    drained upgrade to a newer package and a backup/restore/verify round trip, signing again after each."""
    if _installed():
        pytest.skip("zrkeyring is already installed here; this test will not replace or purge it")
    from chain_node.local import free_port

    run("dpkg", "-i", str(deb))
    walk = Walk(Path(tempfile.mkdtemp(prefix="zrk-walk-", dir="/var/tmp")))
    walk.root.chmod(0o755)
    chain_port, node = free_port(), None
    try:
        keys: dict[int, dict] = {}
        for i in HOSTS:  # steps 2-5 on each host
            host = walk.host(i)
            host.mkdir()
            run("install", "-d", "-o", "zrkeyring", "-g", "zrkeyring", "-m", "0750", str(host / "tokens"),
                str(host / "state"), str(host / "run"))
            (host / "softhsm2.conf").write_text(f"directories.tokendir = {host / 'tokens'}\n"
                                                "objectstore.backend = file\nlog.level = ERROR\n")
            pin = f"walk-pin-{i}-{secrets.token_hex(4)}"
            walk.as_service(i, "softhsm2-util", "--init-token", "--free", "--label", f"party-{i}", "--so-pin",
                            f"so-{pin}", "--pin", pin)
            (host / "etc").mkdir()
            run("install", "-m", "0640", "-o", "root", "-g", "zrkeyring", "/dev/null", str(host / "etc" / "hsm-pin"))
            (host / "etc" / "hsm-pin").write_text(pin + "\n")
            run(ZRK, "init", "--index", str(i), "--chain-id", "zrkeyring-dev-1", "--endpoint",
                f"127.0.0.1:{chain_port}", "--plaintext-loopback", "--pin-file", str(host / "etc" / "hsm-pin"),
                "--dir", str(host / "etc"), "--data-dir", str(host / "state"), "--socket",
                str(host / "run" / "party.sock"), "--token-label", f"party-{i}", "--metrics-host", f"127.0.0.1{i}")
            made = walk.as_service(i, ZRK, "hsm", "init", "--config", str(host / "etc" / "party.toml"), "--json")
            keys[i] = json.loads(made.stdout)

        trusted = walk.root / "trusted"
        trusted.mkdir()
        base = free_port()
        run(ZRK, "cluster", "init", "--parties", "3", "--threshold", "2", "--host", "127.0.0.11,127.0.0.12,127.0.0.13",
            "--base-port", str(base), "--out", str(trusted / "cluster"))
        for i in HOSTS:
            run(ZRK, "cluster", "roster", "--bundle", str(trusted / "cluster"), "--party", str(i),
                "--identity-key", keys[i]["identity_key"], "--chain-address", keys[i]["chain_address"])

        # The dev chain, funding every party at genesis (docs: "A chain to test against").
        funds = [a for i in HOSTS for a in ("--fund", keys[i]["chain_address"])]
        dev_keys = trusted / "dev-keys.json"
        run(CHAIN_BIN, "init", "--chain-id", "zrkeyring-dev-1", "--genesis", str(trusted / "genesis.json"),
            "--keys-file", str(dev_keys), "--key", "owner", "--default-btl", "200", *funds)
        node = subprocess.Popen([CHAIN_BIN, "start", "--genesis", str(trusted / "genesis.json"), "--data-dir",
                                 str(trusted / "chain-data"), "--listen", f"127.0.0.1:{chain_port}",
                                 "--block-time", "0.3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        registered = json.loads(run(ZRK, "keyring", "register", "--roster", str(trusted / "cluster" / "roster.toml"),
                                    "--admin-keys-file", str(dev_keys), "--admin-key", "owner", "--node",
                                    f"127.0.0.1:{chain_port}", "--write-roster", "--json").stdout)
        assert len(registered["roster_written"]) == 4  # the master roster and the three party copies

        digests = set()
        for i in HOSTS:  # step 3 on each host: install the bundle, seal the key, compare digests
            cluster = walk.host(i) / "etc" / "cluster"
            run("install", "-d", "-o", "zrkeyring", "-g", "zrkeyring", "-m", "0750", str(cluster))
            run("cp", "-r", f"{trusted / 'cluster' / f'party-{i}'}/.", f"{cluster}/")
            run("chown", "-R", "zrkeyring:zrkeyring", str(cluster))
            run(ZRK, "cluster", "seal-key", "--bundle-dir", str(cluster), "--config",
                str(walk.host(i) / "etc" / "party.toml"), env=walk.env(i))
            assert Path(cluster / "party.key.sealed").owner() == "zrkeyring"
            digests.add(json.loads(run(ZRK, "cluster", "show", "--roster", str(cluster), "--json").stdout)["digest"])
        assert len(digests) == 1

        for i in HOSTS:  # step 13 (here without systemd: as the units run them, user zrkeyring)
            walk.start(i, "party")
        for i in HOSTS:
            walk.wait_ready(i, 9810)
        for i in HOSTS:
            walk.start(i, "controller")
        for i in HOSTS:
            walk.wait_ready(i, 9811)
        status = run(ZRK, "status", "--config", str(walk.host(1) / "etc" / "controller.toml"), "--json",
                     env=walk.env(1), check=False)
        checks = {c["name"]: c["ok"] for c in json.loads(status.stdout)["checks"]}
        assert checks["chain"] and checks["party daemon"] and checks["funds"], status.stdout

        node_args = ["--key", "owner", "--keys-file", str(dev_keys), "--node", f"127.0.0.1:{chain_port}"]
        workspace = run(CHAIN_BIN, "workspace-create", *node_args).stdout.split("workspace: ")[1].split()[0]
        out = run(CHAIN_BIN, "key-request", *node_args, "--workspace", workspace, "--keyring",
                  registered["keyring"], "--type", "ed25519").stdout
        key_request = _wait_fulfilled(chain_port, "key-request", out.split("key request: ")[1].split()[0])
        public_key = base64.b64decode(key_request["public_key"])
        _sign_and_verify(chain_port, dev_keys, public_key, b"first signature")

        # Upgrade host 1 drained, to a newer package: one command installs it for every "host" here.
        configs = ["--config", str(walk.host(1) / "etc" / "controller.toml"),
                   "--config", str(walk.host(1) / "etc" / "party.toml")]
        assert run(ZRK, "drain", "on", *configs, "--wait", "60").returncode == 0
        backup = walk.root / "party-1.tar"
        run(ZRK, "backup", "create", "--config", str(walk.host(1) / "etc" / "party.toml"), "--out", str(backup))
        walk.stop_all()
        newer = _bumped_deb(deb)
        run("dpkg", "-i", str(newer))
        expected = f"{__version__}.1"
        assert run(ZRK, "--version").stdout.strip() == f"zrkeyring {expected}"
        verified = run(ZRK, "backup", "verify", "--config", str(walk.host(1) / "etc" / "party.toml"), str(backup),
                       "--json", env=walk.env(1))
        assert json.loads(verified.stdout)["complete"]
        restored = run(ZRK, "backup", "restore", "--config", str(walk.host(1) / "etc" / "party.toml"), str(backup),
                       "--json", env=walk.env(1))
        assert json.loads(restored.stdout)["complete"]
        for i in HOSTS:
            walk.start(i, "party")
        for i in HOSTS:
            walk.wait_ready(i, 9810)
        for i in HOSTS:
            walk.start(i, "controller")
        run(ZRK, "drain", "off", *configs)
        for i in HOSTS:
            walk.wait_ready(i, 9811)
        for port in (9810, 9811):  # both upgraded daemons report the new version on /metrics too
            with urllib.request.urlopen(f"http://127.0.0.11:{port}/metrics", timeout=5) as answer:  # noqa: S310
                lines = answer.read().decode().splitlines()
                info = [line for line in lines if line.startswith("zrkeyring_build_info{")]
                assert len(info) == 1 and f'version="{expected}"' in info[0], info
        _sign_and_verify(chain_port, dev_keys, public_key, b"after the upgrade and the restore")
    finally:
        walk.stop_all()
        if node is not None:
            node.terminate()
            node.wait(timeout=20)
        if _installed():
            run("dpkg", "--purge", "zrkeyring", check=False)
        shutil.rmtree(walk.root, ignore_errors=True)
