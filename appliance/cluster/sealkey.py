"""Sealing a party's TLS transport key with its HSM, so no private key stays on disk in plaintext.

`cluster init` has to hand each party its TLS key as a file (the CA that issued it is gone by then).
`zrkeyring cluster seal-key` turns `party.key` into `party.key.sealed` (AES-256-GCM under the HSM's
share-sealing key, AAD bound to the purpose and the certificate) and removes the plaintext file. The
party daemon unseals it into memory at start (`TlsCredentials.from_bundle(..., sealer=hsm)`).
"""

from __future__ import annotations

import hashlib
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.runtime.errors import UserError

KEY_FILE = "party.key"
SEALED_FILE = "party.key.sealed"
CERT_FILE = "party.pem"
AAD_DOMAIN = b"zrkeyring/tls-key/v1"
SERVICE_USER = "zrkeyring"  # the units' User= (packaging/debian/units)


class Sealer(Protocol):
    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...
    def unseal(self, blob: bytes, aad: bytes) -> bytes: ...


def tls_key_aad(cert_pem: bytes) -> bytes:
    """Bind the sealed key to its certificate: a blob moved next to another certificate will not open."""
    return AAD_DOMAIN + hashlib.sha256(cert_pem).digest()


@dataclass(frozen=True)
class SealedKey:
    path: Path
    owner: str  # the user that owns party.key.sealed (the one the party daemon must run as)
    warning: str = ""  # set when that owner is probably not the service user


def seal_tls_key(bundle_dir: str | Path, sealer: Sealer) -> SealedKey:
    """Seal `party.key` in `bundle_dir`, write `party.key.sealed` (0600), then delete the plaintext.

    The sealed file keeps `party.key`'s owner and group: run as root (after the documented copy, which
    makes party.key the service user's), it must not come out root:root 0600, which the party daemon
    cannot read. Every permission problem is checked before the HSM is used, as one error saying
    which user needs what.
    """
    directory = Path(bundle_dir)
    key_path, sealed_path = directory / KEY_FILE, directory / SEALED_FILE
    if not key_path.exists():
        if sealed_path.exists():
            raise UserError(f"{directory}: the TLS key is already sealed ({SEALED_FILE})")
        raise UserError(f"{directory}: no {KEY_FILE} to seal (is this a `cluster init` party bundle?)")
    _check_access(directory, key_path)
    owner = key_path.stat()
    cert_pem = (directory / CERT_FILE).read_bytes()
    blob = sealer.seal(key_path.read_bytes(), tls_key_aad(cert_pem))
    tmp = sealed_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
    if os.geteuid() == 0:
        os.chown(tmp, owner.st_uid, owner.st_gid)
    os.replace(tmp, sealed_path)
    _shred(key_path)
    return SealedKey(sealed_path, _user_name(owner.st_uid), _owner_warning(owner.st_uid, sealed_path))


def _check_access(directory: Path, key_path: Path) -> None:
    """Refuse up front, naming the fix, when this user cannot read party.key or write the directory."""
    me = _user_name(os.geteuid())
    fix = (f"run `zrkeyring cluster seal-key` as root (the sealed file keeps party.key's owner), or make "
           f"the directory the service user's: chown -R {SERVICE_USER}: {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"cluster seal-key: {directory} is not writable by {me} (it must hold "
                        f"{SEALED_FILE} and lose {KEY_FILE}); {fix}")
    for path in (key_path, directory / CERT_FILE):
        if not os.access(path, os.R_OK):
            raise UserError(f"cluster seal-key: {path} is not readable by {me}; {fix}")


def _owner_warning(uid: int, sealed_path: Path) -> str:
    """A root-owned sealed key on a host with the service user: the party service will not read it."""
    if uid != 0:
        return ""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return ""  # no service user here: the daemon runs as whoever set it up (dev, tests)
    return (f"{sealed_path} is owned by root (as {KEY_FILE} was); the zrkeyring-party service runs as "
            f"{SERVICE_USER} and cannot read it: chown {SERVICE_USER}: {sealed_path}")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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
