"""The software admin key file (`zrkeyring-chain init --key NAME` writes it): for the demo and tests only.

JSON `{"chain_id": "…", "keys": {"name": "<64 hex secp256k1 secret>"}}`, mode 0600. Production keys
live in the HSM; this format exists so a developer can act as a workspace owner or keyring admin.
Kept apart from the node's CLI so `zrkeyring keyring register` can read it without the node.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from appliance.runtime.errors import UserError
from chain_client.crypto import SoftwareSigner


def write_key_file(path: Path, chain_id: str, signers: dict[str, SoftwareSigner]) -> None:
    """Write software keys (owner-only permissions); for the demo and tests, never production."""
    payload = {"chain_id": chain_id, "keys": {name: s.secret_hex() for name, s in signers.items()}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)


def read_key_file(path: Path) -> tuple[str, dict[str, SoftwareSigner]]:
    try:
        payload = json.loads(path.read_text())
        return payload["chain_id"], {n: SoftwareSigner.from_hex(h) for n, h in payload["keys"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: cannot read key file ({exc})") from None


def key_from_file(path: Path, name: str) -> tuple[str, SoftwareSigner]:
    """(chain id recorded in the file, the named key); errors list the names the file has."""
    chain_id, signers = read_key_file(path)
    if name not in signers:
        raise UserError(f"{path}: no key named {name!r} (have: {', '.join(signers) or 'none'})")
    return chain_id, signers[name]
