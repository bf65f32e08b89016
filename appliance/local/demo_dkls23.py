"""`zrkeyring demo` step: a 2-of-3 DKLs23 key and signatures, checked by two independent libraries."""

from __future__ import annotations

import hashlib
import itertools
import time

import coincurve
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from appliance.mpc_party.protocols.dkls23 import local
from appliance.mpc_party.protocols.dkls23.sign import Signature


def verify_independently(public_key: bytes, digest: bytes, sig: Signature) -> None:
    """Check a signature with libraries that share no code with ours: pyca/cryptography (DER,
    prehashed SHA-256) and libsecp256k1 via coincurve, and recover the key from the 65-byte form."""
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    pub.verify(sig.to_der(), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    if not coincurve.PublicKey(public_key).verify(sig.to_der(), digest, hasher=None):
        raise RuntimeError("coincurve rejected the signature")
    recovered = coincurve.PublicKey.from_signature_and_message(sig.to_recoverable(), digest, hasher=None)
    if recovered.format() != public_key:
        raise RuntimeError("recovery id does not recover the group key")


def demo_step() -> list[str]:
    start = time.perf_counter()
    keys = local.run_dkg(3, 2)
    dkg_ms = (time.perf_counter() - start) * 1000
    pub = keys[0].public_key
    lines = [f"2-of-3 DKG (Feldman VSS + 6 x 128 verified base OTs): {dkg_ms:.0f} ms, "
             f"group key {pub.hex()}"]
    for subset in itertools.combinations(keys, 2):
        digest = hashlib.sha256(b"zrkeyring demo " + bytes(k.party_id for k in subset)).digest()
        start = time.perf_counter()
        presigs = local.presign(subset)
        mid = time.perf_counter()
        sig = local.sign(presigs, digest)
        end = time.perf_counter()
        verify_independently(pub, digest, sig)
        ids = "+".join(str(k.party_id) for k in subset)
        lines.append(f"parties {ids}: presign {1000 * (mid - start):.1f} ms, "
                     f"online {1000 * (end - mid):.2f} ms, low-S signature verified")
    refreshed = local.refresh(keys)
    digest = hashlib.sha256(b"zrkeyring demo after refresh").digest()
    verify_independently(pub, digest, local.sign_now(refreshed[1:], digest))
    lines.append("refresh: new shares and OT seeds, same key; signature verified")
    lines.append("all signatures verified by pyca/cryptography (DER, prehashed SHA-256) and coincurve, "
                 "and the recovery id recovers the key")
    return lines
