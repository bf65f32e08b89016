"""Sealing a party's TLS transport key with its HSM, so no private key stays on disk in plaintext.

`cluster init` has to hand each party its TLS key as a file (the CA that issued it is gone by then).
`zrkeyring cluster seal-key` turns `party.key` into `party.key.sealed` (AES-256-GCM under the HSM's
share-sealing key, AAD bound to the purpose and the certificate) and removes the plaintext file. The
party daemon unseals it into memory at start (`TlsCredentials.from_bundle(..., sealer=hsm)`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from appliance.runtime.errors import UserError

KEY_FILE = "party.key"
SEALED_FILE = "party.key.sealed"
CERT_FILE = "party.pem"
AAD_DOMAIN = b"zrkeyring/tls-key/v1"


class Sealer(Protocol):
    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...
    def unseal(self, blob: bytes, aad: bytes) -> bytes: ...


def tls_key_aad(cert_pem: bytes) -> bytes:
    """Bind the sealed key to its certificate: a blob moved next to another certificate will not open."""
    return AAD_DOMAIN + hashlib.sha256(cert_pem).digest()


def seal_tls_key(bundle_dir: str | Path, sealer: Sealer) -> Path:
    """Seal `party.key` in `bundle_dir`, write `party.key.sealed` (0600), then delete the plaintext."""
    directory = Path(bundle_dir)
    key_path, sealed_path = directory / KEY_FILE, directory / SEALED_FILE
    if not key_path.exists():
        if sealed_path.exists():
            raise UserError(f"{directory}: the TLS key is already sealed ({SEALED_FILE})")
        raise UserError(f"{directory}: no {KEY_FILE} to seal (is this a `cluster init` party bundle?)")
    cert_pem = (directory / CERT_FILE).read_bytes()
    blob = sealer.seal(key_path.read_bytes(), tls_key_aad(cert_pem))
    tmp = sealed_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, sealed_path)
    _shred(key_path)
    return sealed_path


def unseal_tls_key(bundle_dir: str | Path, sealer: Sealer) -> bytes:
    directory = Path(bundle_dir)
    cert_pem = (directory / CERT_FILE).read_bytes()
    return sealer.unseal((directory / SEALED_FILE).read_bytes(), tls_key_aad(cert_pem))


def _shred(path: Path) -> None:
    """Overwrite then unlink (best effort on journaling or copy-on-write file systems)."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
