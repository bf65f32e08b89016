"""The systemd units: `systemd-analyze verify` is clean; Type=notify with a watchdog; the hardening."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "debian" / "units"
NAMES = ("zrkeyring-party.service", "zrkeyring-controller.service")
HOST_UNITS = Path("/lib/systemd/system")


def _unit(name: str) -> dict[str, list[str]]:
    """Each key of the unit's [Service] section with all its values (systemd keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(f"{section}.{key}", []).append(value)
    return values


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze (package systemd)")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify wants ExecStart= to exist and the standard targets to resolve: give it a root that has
    # the host's units, ours, and a stand-in /usr/bin/zrkeyring (the deb test verifies the real one).
    if not (HOST_UNITS / "sysinit.target").exists():
        pytest.skip("no systemd unit tree on this host")
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "lib/systemd/system", symlinks=True)
    for name in NAMES:
        shutil.copy(UNITS / name, root / "lib/systemd/system" / name)
    stub = root / "usr/bin/zrkeyring"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    units = [f"/lib/systemd/system/{n}" for n in NAMES]
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *units],
                            capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values, only printing a warning: any output is a failure.
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_unit_is_notify_with_watchdog_and_hardened(name: str) -> None:
    unit = _unit(name)
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Service.Type"] == "notify"
    assert int(one["Service.WatchdogSec"]) > 0
    assert one["Service.User"] == "zrkeyring" and one["Service.SupplementaryGroups"] == "softhsm"
    assert one["Service.ExecStart"].startswith("/usr/bin/zrkeyring ")
    assert one["Service.LoadCredential"] == "hsm-pin:/etc/zrkeyring/hsm-pin"
    assert set(one["Service.ReadWritePaths"].split()) == {"/var/lib/zrkeyring", "-/var/lib/softhsm/tokens"}
    assert set(one["Service.RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    for key, wanted in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
        "CapabilityBoundingSet": "", "LimitCORE": "0", "UMask": "0077",
    }.items():
        assert one[f"Service.{key}"] == wanted, key
    assert one["Install.WantedBy"] == "multi-user.target"


def test_units_differ_only_where_they_must() -> None:
    party, controller = (_unit(n) for n in NAMES)
    differing = {k for k in party.keys() | controller.keys() if party.get(k) != controller.get(k)}
    assert differing == {"Unit.Description", "Unit.After", "Unit.Wants", "Service.ExecStart"}
    assert "zrkeyring-party.service" in controller["Unit.After"][0]


def test_units_parse_as_ini() -> None:
    for name in NAMES:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string((UNITS / name).read_text())
        assert parser.sections() == ["Unit", "Service", "Install"]
