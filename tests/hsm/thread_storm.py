"""Run by test_concurrency in a subprocess: N threads sign through one Hsm for S seconds.

A segfault (the known SoftHSM trap when sessions are shared across threads) kills only this process,
so the test sees a non-zero exit code instead of losing pytest. Prints a JSON summary.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time

import coincurve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.hsm import Hsm, load_hsm_config


def main(config_path: str, threads: int, seconds: float) -> int:
    hsm = Hsm.open(load_hsm_config(config_path))
    chain_pub = coincurve.PublicKey(hsm.chain_public_key())
    identity_pub = Ed25519PublicKey.from_public_bytes(hsm.identity_public_key())
    results: list[tuple[bytes, bytes, bytes]] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work(worker: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            message = b"thread %d message %d" % (worker, i)
            digest = hashlib.sha256(message).digest()
            try:
                chain_sig = hsm.sign_chain(digest)
                identity_sig = hsm.sign_identity(message)
                sealed = hsm.seal(message, b"aad")
                if hsm.unseal(sealed, b"aad") != message:
                    raise RuntimeError("seal round trip failed")
            except Exception as exc:  # report every failure to the parent
                with lock:
                    errors.append(repr(exc))
                return
            with lock:
                results.append((message, chain_sig, identity_sig))
            i += 1

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    invalid = 0
    for message, chain_sig, identity_sig in results:
        digest = hashlib.sha256(message).digest()
        r, s = int.from_bytes(chain_sig[:32], "big"), int.from_bytes(chain_sig[32:], "big")
        if not chain_pub.verify(encode_dss_signature(r, s), digest, hasher=None):
            invalid += 1
        try:
            identity_pub.verify(identity_sig, message)
        except Exception:
            invalid += 1
    per_thread = {}
    for message, _, _ in results:
        worker = message.split(b" ")[1].decode()
        per_thread[worker] = per_thread.get(worker, 0) + 1
    print(json.dumps({"ok": len(results), "invalid": invalid, "errors": errors, "per_thread": per_thread}))
    hsm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
