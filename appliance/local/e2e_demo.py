"""The main demo: a 2-of-3 keyring on this machine answering key and signature requests.

A chain node, three party hosts (SoftHSM token, party daemon, controller each), a workspace and a
2-of-3 keyring; an ECDSA, a BITCOIN and an Ed25519 key are requested, then one signature with each.
Every answer is awaited until the chain says FULFILLED and checked with an independent library.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from appliance.local.localnet import LocalKeyring, LocalSettings, demo_digest

KEY_TYPES = ("ecdsa", "bitcoin", "ed25519")


def verify_independently(key_type: str, public_key: bytes, data: bytes, signature: bytes) -> str:
    """Check a signature with pyca/cryptography (ECDSA) or PyNaCl (Ed25519); raise if it fails."""
    if key_type == "ed25519":
        nacl.signing.VerifyKey(public_key).verify(data, signature)
        return "PyNaCl Ed25519"
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    key.verify(encode_dss_signature(r, s), data, ec.ECDSA(Prehashed(hashes.SHA256())))
    return "cryptography ECDSA secp256k1"


def run_demo(root: Path) -> list[str]:
    lines: list[str] = []
    keyring = LocalKeyring(root, LocalSettings()).setup()
    lines.append(f"chain node {keyring.node.endpoint}; keyring {keyring.keyring} (2-of-3)")
    for host in keyring.hosts:
        lines.append(f"party {host.index}: chain address {host.chain_address}, identity {host.identity_key[:16]}…")
    try:
        keyring.start()
        keys = {}
        for key_type in KEY_TYPES:
            started = time.monotonic()
            request_id = keyring.request_key(key_type)
            req = keyring.wait_request("key", request_id)
            key = keyring.key_for_request(request_id)
            keys[key_type] = key
            lines.append(f"key request {request_id} ({key_type}) FULFILLED in {time.monotonic() - started:.2f} s: "
                         f"key {key.id} = {bytes(req.public_key).hex()}")
        for key_type, key in keys.items():
            data = b"zrkeyring demo: pay 1 ZEN" if key_type == "ed25519" else demo_digest(f"demo {key_type}")
            started = time.monotonic()
            request_id = keyring.request_signature(key.id, data)
            req = keyring.wait_request("sign", request_id)
            signature = bytes(req.signed_data[0].signed_data)
            how = verify_independently(key_type, bytes(key.public_key), data, signature)
            lines.append(f"sign request {request_id} ({key_type}) FULFILLED in {time.monotonic() - started:.2f} s: "
                         f"{signature.hex()} — verified with {how}")
    finally:
        keyring.close()
    lines.append("all processes stopped")
    return lines


def demo_step() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="zrkeyring-demo-") as tmp:
        return run_demo(Path(tmp))


if __name__ == "__main__":
    print("\n".join(demo_step()))
