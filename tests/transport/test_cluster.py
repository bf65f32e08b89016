"""`cluster init` / `cluster roster` / `cluster show`: files, certificates, roster rules, the CLI."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import coincurve
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nacl.signing import SigningKey

from appliance.cluster.bundle import fill_roster, init_cluster
from appliance.rules.roster import Roster
from appliance.runtime.errors import ConfigError, UserError
from chain_client.address import account_address

ROOT = Path(__file__).resolve().parents[2]


def identity_hex() -> str:
    return SigningKey.generate().verify_key.encode().hex()


def chain_address() -> str:
    return account_address(coincurve.PrivateKey().public_key.format())


def test_init_writes_bundles_and_no_ca_key(tmp_path):
    bundle = init_cluster(tmp_path / "c", 3, 2, "127.0.0.1", 7101, name="unit")
    ca = x509.load_pem_x509_certificate((tmp_path / "c" / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for i in (1, 2, 3):
        d = bundle.party_dir(i)
        assert sorted(p.name for p in d.iterdir()) == ["ca.pem", "certs", "party.key", "party.pem",
                                                       "roster-template.toml"]
        assert stat.S_IMODE((d / "party.key").stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate((d / "party.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"party-{i}"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        assert san.get_values_for_type(x509.DNSName) == [f"party-{i}"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert (d / "roster-template.toml").read_text() == (tmp_path / "c" / "roster.toml").read_text()
    # Only the three party keys are private keys; the CA key was never written.
    holders = [p for p in (tmp_path / "c").rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(p.relative_to(tmp_path / "c").as_posix() for p in holders) == [
        "party-1/party.key", "party-2/party.key", "party-3/party.key"]
    roster = bundle.roster
    assert [p.address for p in roster.parties] == ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
    assert roster.cluster.threshold == 2 and roster.identity_keys() == {}


def test_init_per_party_dns_hosts_and_refusals(tmp_path):
    bundle = init_cluster(tmp_path / "c", 2, 2, ["p1.example", "p2.example"], 7001)
    cert = x509.load_pem_x509_certificate((bundle.party_dir(2) / "party.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["party-2", "p2.example"]
    assert bundle.roster.party(2).address == "p2.example:7002"
    with pytest.raises(UserError, match="not an empty directory"):
        init_cluster(tmp_path / "c", 2, 2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not an empty directory"):
        init_cluster(tmp_path / "file", 2, 2)
    with pytest.raises(UserError, match="--threshold"):
        init_cluster(tmp_path / "d", 2, 3)
    with pytest.raises(UserError, match="--host"):
        init_cluster(tmp_path / "e", 3, 2, ["a", "b"])


def test_fill_roster_until_complete(tmp_path):
    out = tmp_path / "c"
    init_cluster(out, 2, 2)
    keys = [identity_hex(), identity_hex()]
    roster = fill_roster(out, 1, keys[0].upper(), chain_address())
    assert roster.party(1).identity_key == keys[0] and not (out / "party-1" / "roster.toml").exists()
    with pytest.raises(ConfigError, match="incomplete.*party-2"):
        Roster.load(out / "roster.toml").require_complete()
    with pytest.raises(UserError, match="already has this identity key"):
        fill_roster(out, 2, keys[0], chain_address())
    roster = fill_roster(out, 2, keys[1], chain_address())
    copies = [Roster.load(out / f"party-{i}" / "roster.toml").require_complete() for i in (1, 2)]
    assert {c.digest() for c in copies} == {roster.digest()}
    assert copies[0].identity_keys() == {1: bytes.fromhex(keys[0]), 2: bytes.fromhex(keys[1])}
    assert copies[1].tls_cert_path(1).read_bytes() == (out / "certs" / "party-1.pem").read_bytes()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('identity_key = ""', 'identity_key = "abcd"', r"party\[0\].identity_key: expected 32"),
        ('identity_key = ""', 'identity_key = "zz"', r"party\[0\].identity_key: not hex"),
        ('chain_address = ""', 'chain_address = "zen1nope"', r"party\[0\].chain_address"),
        ("index = 2", "index = 1", r"party\[1\].index: duplicate"),
        ("threshold = 2", "threshold = 5", r"cluster.threshold: must be 1..3"),
        ('127.0.0.1:7002"', '127.0.0.1"', r"party\[1\].address: expected host:port"),
        ("index = 3", 'index = "3"', r"party\[2\].index: expected an integer"),
        ('name = "party-1"', 'nmae = "party-1"', r"party\[0\].nmae: unknown field"),
        ("[[party]]", "[[ignored]]", r"at least one party"),
    ],
)
def test_roster_errors_name_the_field(tmp_path, old, new, message):
    init_cluster(tmp_path / "c", 3, 2)
    path = tmp_path / "c" / "roster.toml"
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=message):
        Roster.load(path)


def zrkeyring(*args: str) -> subprocess.CompletedProcess:
    # The cluster group is registered here until the lead adds it to COMMAND_GROUPS.
    code = (
        "import sys, appliance.cli.main as c\n"
        "g = 'appliance.cli.cluster'\n"
        "c.COMMAND_GROUPS.append(g) if g not in c.COMMAND_GROUPS else None\n"
        "sys.exit(c.main(sys.argv[1:]))\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_init_roster_show(tmp_path):
    out = str(tmp_path / "bundle")
    init = zrkeyring("cluster", "init", "--parties", "2", "--threshold", "2", "--out", out,
                     "--base-port", "7201", "--name", "cli")
    assert init.returncode == 0, init.stderr
    assert "CA private key was NOT stored" in init.stdout and "127.0.0.1:7202" in init.stdout

    again = zrkeyring("cluster", "init", "--parties", "2", "--threshold", "2", "--out", out)
    assert again.returncode == 1 and "not an empty directory" in again.stderr

    bad = zrkeyring("cluster", "roster", "--bundle", out, "--party", "1", "--identity-key", "00",
                    "--chain-address", chain_address())
    assert bad.returncode == 1 and "--identity-key: expected 32 bytes" in bad.stderr

    show = zrkeyring("cluster", "show", "--roster", out)
    assert show.returncode == 3 and "INCOMPLETE" in show.stdout
    for i in (1, 2):
        filled = zrkeyring("cluster", "roster", "--bundle", out, "--party", str(i),
                           "--identity-key", identity_hex(), "--chain-address", chain_address())
        assert filled.returncode == 0, filled.stderr
    assert "roster complete" in filled.stdout
    show = zrkeyring("cluster", "show", "--roster", f"{out}/party-2/roster.toml")
    assert show.returncode == 0 and f"digest {Roster.load(f'{out}/roster.toml').digest()}" in show.stdout
