"""`zrkeyring demo` step: a 2-of-3 DKG and signatures with FROST, checked by independent libraries."""

from __future__ import annotations

import time

import coincurve
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.mpc_party.protocols.frost import FROST_ED25519, FROST_SECP256K1_BIP340
from appliance.mpc_party.protocols.frost.local import refresh, run_dkg, sign


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.1f} ms"


def demo_step() -> list[str]:
    lines = []
    message = b"zrkeyring demo: transfer 1 unit"

    start = time.perf_counter()
    shares = run_dkg(3, 2, FROST_ED25519)
    public = shares[0].group_public_key
    lines.append(f"Ed25519 2-of-3 DKG ({_ms(start)}): group key {public.hex()}")
    start = time.perf_counter()
    sig = sign(FROST_ED25519, [shares[0], shares[2]], message)
    Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
    nacl.signing.VerifyKey(public).verify(message, sig)
    lines.append(f"  parties 1+3 signed ({_ms(start)}); verified by cryptography and PyNaCl")
    renewed = refresh(shares)
    sig = sign(FROST_ED25519, renewed[1:], message)
    Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
    lines.append("  shares refreshed; parties 2+3 signed with new shares under the same key")

    start = time.perf_counter()
    shares = run_dkg(3, 2, FROST_SECP256K1_BIP340)
    xonly = coincurve.PublicKeyXOnly(coincurve.PublicKey(shares[0].group_public_key).format()[1:])
    lines.append(f"BIP-340 (secp256k1) 2-of-3 DKG ({_ms(start)}): x-only key {xonly.format().hex()}")
    digest = bytes(32)
    start = time.perf_counter()
    sig = sign(FROST_SECP256K1_BIP340, shares[:2], digest)
    if not xonly.verify(sig, digest):
        raise RuntimeError("BIP-340 signature rejected by coincurve")
    lines.append(f"  parties 1+2 signed ({_ms(start)}); verified by coincurve (libsecp256k1)")
    return lines
