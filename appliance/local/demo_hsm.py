"""Demo step: a throwaway SoftHSM token, provisioned, sealing and signing, checked by other libraries."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import coincurve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.hsm.errors import SealError
from appliance.hsm.facade import Hsm
from appliance.hsm.softhsm import activated, init_token, make_token_dir
from appliance.hsm.store import ShareMeta, ShareStore, open_share, put_share, share_aad


def demo_step() -> list[str]:
    lines: list[str] = []
    # `activated` restores SOFTHSM2_CONF afterwards: later demo steps must not inherit this directory
    with (
        tempfile.TemporaryDirectory(prefix="zrk-hsm-demo-") as tmp,
        activated(make_token_dir(Path(tmp))) as conf,
    ):
        token = init_token(conf)  # a random label: never match a token from an earlier directory
        lines.append(f"SoftHSM token {token.label!r} in {token.token_dir} (own SOFTHSM2_CONF)")
        with Hsm.connect(token.module, token.label, token.user_pin) as hsm:
            created = hsm.provision()
            lines.append("provisioned: " + ", ".join(f"{k} {v}" for k, v in created.items()))
            lines.append(f"chain address {hsm.chain_address()}")

            store = ShareStore(Path(tmp) / "shares.sqlite", hsm)
            meta = ShareMeta("keyring1demo", 7, "ecdsa", 2, 1, b"\x02" + b"\x11" * 32, 1)
            share = hsm.random(32)
            put_share(store, hsm, meta, share)
            store.commit(meta.keyring, meta.key_id, meta.party_index, meta.share_version)
            record = store.active(meta.keyring, meta.key_id, meta.party_index)
            if record is None or open_share(hsm, record) != share:
                raise RuntimeError("stored share did not round-trip")
            lines.append(f"share sealed ({len(record.sealed)}-byte blob), stored, committed, unsealed: ok")
            other = ShareMeta("keyring1demo", 7, "ecdsa", 2, 2, meta.group_public_key, 1)
            try:
                hsm.unseal(record.sealed, share_aad(other))
                raise RuntimeError("a blob opened under another party's AAD")
            except SealError:
                lines.append("same blob under another party index's AAD: rejected")

            digest = hashlib.sha256(b"zrkeyring demo transaction").digest()
            signature = hsm.sign_chain(digest)
            der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(signature))
            if not coincurve.PublicKey(hsm.chain_public_key()).verify(der, digest, hasher=None):
                raise RuntimeError("chain signature did not verify")
            lines.append("chain ECDSA signature (low-S) verified with coincurve")
            message = b"zrkeyring party identity"
            Ed25519PublicKey.from_public_bytes(hsm.identity_public_key()).verify(
                hsm.sign_identity(message), message
            )
            lines.append("identity Ed25519 signature verified with cryptography")
            store.close()
    return lines
