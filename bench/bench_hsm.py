"""HSM layer throughput on a throwaway SoftHSM token: seal, unseal and chain signatures per second.

Every call goes through the worker thread and the `Hsm` facade, as a party daemon would use it.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from appliance.hsm import Hsm
from appliance.hsm.softhsm import activated, init_token, make_token_dir
from appliance.hsm.store import ShareMeta, share_aad
from bench.common import Result, rate_per_s

SECONDS = 2.0


def run() -> list[Result]:
    with (
        tempfile.TemporaryDirectory(prefix="zrk-bench-hsm-") as tmp,
        activated(make_token_dir(Path(tmp))) as conf,
    ):
        token = init_token(conf)
        with Hsm.connect(token.module, token.label, token.user_pin) as hsm:
            hsm.provision()
            return _measure(hsm)


def _measure(hsm: Hsm) -> list[Result]:
    aad = share_aad(ShareMeta("keyring1bench", 1, "ecdsa", 2, 1, b"\x02" + b"\x01" * 32, 1))
    share = hsm.random(32)  # a share-sized plaintext (32-byte scalar)
    blob = hsm.seal(share, aad)
    digest = hashlib.sha256(b"bench transaction").digest()
    note = "SoftHSM 2.6.1, one worker thread, 32-byte share"
    return [
        Result(
            "hsm.seal_per_s", round(rate_per_s(lambda: hsm.seal(share, aad), SECONDS), 1), "ops/s", note=note
        ),
        Result(
            "hsm.unseal_per_s",
            round(rate_per_s(lambda: hsm.unseal(blob, aad), SECONDS), 1),
            "ops/s",
            note=note,
        ),
        Result(
            "hsm.chain_sign_per_s",
            round(rate_per_s(lambda: hsm.sign_chain(digest), SECONDS), 1),
            "ops/s",
            note="secp256k1 CKM_ECDSA over a SHA-256 digest, low-S",
        ),
    ]
