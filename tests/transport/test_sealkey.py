"""The TLS key sealed by the party's HSM: plaintext gone, credentials load, tampering refused."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from appliance.cluster.bundle import init_cluster
from appliance.cluster.sealkey import SEALED_FILE, seal_tls_key
from appliance.hsm import SealError
from appliance.hsm.softhsm import write_hsm_config
from appliance.mpc_party.transport import TlsCredentials
from appliance.runtime.errors import UserError
from tests.hsm.conftest import connect


def test_sealed_tls_key_round_trip(softhsm_token, tmp_path) -> None:
    bundle = init_cluster(tmp_path / "bundle", 2, 2, "127.0.0.1", 7301)
    party_dir = bundle.party_dir(1)
    plaintext = (party_dir / "party.key").read_bytes()
    with connect(softhsm_token) as hsm:
        hsm.provision()
        sealed = seal_tls_key(party_dir, hsm).path
        assert not (party_dir / "party.key").exists()
        assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
        assert plaintext not in sealed.read_bytes()
        creds = TlsCredentials.from_bundle(party_dir, sealer=hsm)
        assert creds.key_pem == plaintext
        with pytest.raises(UserError, match="sealed but no HSM"):
            TlsCredentials.from_bundle(party_dir)
        with pytest.raises(UserError, match="already sealed"):
            seal_tls_key(party_dir, hsm)
        # A sealed key moved next to another party's certificate does not open.
        other = bundle.party_dir(2)
        (other / "party.key").unlink()  # as after its own seal-key (both files at once are refused)
        (other / SEALED_FILE).write_bytes(sealed.read_bytes())
        with pytest.raises(SealError):
            TlsCredentials.from_bundle(other, sealer=hsm)


def test_seal_key_command(softhsm_token, tmp_path) -> None:
    bundle = init_cluster(tmp_path / "bundle", 2, 2, "127.0.0.1", 7311)
    config = write_hsm_config(softhsm_token, tmp_path / "cfg")
    env = softhsm_token.env
    subprocess.run([sys.executable, "-m", "appliance.cli.main", "hsm", "init", "--config", str(config)], env=env,
                   check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "appliance.cli.main", "cluster", "seal-key", "--bundle-dir",
                          str(bundle.party_dir(1)), "--config", str(config)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "sealed" in out.stdout and not (bundle.party_dir(1) / "party.key").exists()
