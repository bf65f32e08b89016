"""A throwaway cluster CA for the parties' mutual-TLS certificates (EC P-256, via `cryptography`).

The CA key lives only in memory while `cluster init` runs: nobody can later mint a certificate the
parties would accept, at the price that adding a party means re-running `cluster init` (new CA, new
certificates for everyone). Each party gets one certificate usable as TLS server and client:
CN = party-<i>, SAN = its host (IP or DNS name) and the DNS name party-<i>. Clients dial with the
target name party-<j>, so a connection reaches the intended party and not just any cluster member.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.rules.roster import is_ip

PARTY_CN_PREFIX = "party-"
DEFAULT_DAYS = 3650


def party_cn(index: int) -> str:
    return f"{PARTY_CN_PREFIX}{index}"


def party_index_from_cn(cn: str) -> int | None:
    """`party-3` -> 3; anything else -> None."""
    digits = cn.removeprefix(PARTY_CN_PREFIX)
    if digits == cn or not digits.isdigit() or digits.startswith("0"):
        return None
    return int(digits)


@dataclass(frozen=True)
class IssuedCert:
    cert_pem: bytes
    key_pem: bytes  # unencrypted PKCS#8: the caller writes it with mode 0600


class ClusterCA:
    """A CA whose private key exists only in this object (never serialised)."""

    def __init__(self, name: str, days: int = DEFAULT_DAYS) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._days = days
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zrkeyring"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"zrkeyring cluster CA {name}"),
        ])
        builder = _validity(x509.CertificateBuilder(), days).subject_name(subject).issuer_name(subject)
        builder = (
            builder.public_key(self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
        )
        self.cert = builder.sign(self._key, hashes.SHA256())

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue_party(self, index: int, host: str) -> IssuedCert:
        """Certificate + key for party `index` reachable at `host`, for TLS server and client use."""
        key = ec.generate_private_key(ec.SECP256R1())
        cn = party_cn(index)
        names: list[x509.GeneralName] = [x509.DNSName(cn)]
        names.append(x509.IPAddress(ipaddress.ip_address(host)) if is_ip(host) else x509.DNSName(host))
        builder = (
            _validity(x509.CertificateBuilder(), self._days)
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zrkeyring"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return IssuedCert(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between hosts
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )
