"""Many threads, one worker: concurrent callers never crash the process, and lost sessions recover."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.hsm import signing
from appliance.hsm.softhsm import write_hsm_config
from tests.hsm.conftest import connect

ROOT = Path(__file__).resolve().parents[2]


def test_eight_threads_signing_for_five_seconds(softhsm_token, tmp_path):
    with connect(softhsm_token) as hsm:
        hsm.provision()
    config = write_hsm_config(softhsm_token, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.hsm.thread_storm", str(config), "8", "5"],
        cwd=ROOT,
        env=softhsm_token.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["errors"] == []
    assert summary["invalid"] == 0
    assert summary["ok"] > 100
    assert len(summary["per_thread"]) == 8
    assert softhsm_token.user_pin not in proc.stdout + proc.stderr


def test_futures_from_threads_and_asyncio(hsm):
    public = coincurve.PublicKey(hsm.chain_public_key())
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(40)]
    futures = [hsm.submit(signing.sign_chain, d) for d in digests]
    for digest, future in zip(digests, futures, strict=True):
        sig = future.result(timeout=10)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        assert public.verify(der, digest, hasher=None)

    async def sign_async() -> bytes:
        return await asyncio.wrap_future(hsm.submit(signing.sign_identity, b"async"))

    assert len(asyncio.run(sign_async())) == 64


def test_pkcs11_calls_outside_the_worker_are_refused(hsm):
    link = hsm._link
    errors = []

    def poke():
        try:
            link.ensure_session()
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=poke)
    thread.start()
    thread.join()
    assert errors and "outside the HSM worker thread" in errors[0]


def _close_behind_the_links_back(link):
    link.session.close()  # C_Logout + C_CloseSession: the link's handle is now invalid


def test_lost_session_is_reopened(hsm):
    before = hsm.sign_identity(b"m")
    hsm.submit(lambda link: _close_behind_the_links_back(link)).result()
    # next calls hit CKR_SESSION_HANDLE_INVALID inside the worker, which reopens and logs in again
    assert hsm.sign_identity(b"m") == before  # Ed25519 is deterministic
    assert hsm.unseal(hsm.seal(b"s", b"a"), b"a") == b"s"


def test_module_reinitialisation_by_another_token_is_survived(hsm, softhsm_token_factory):
    blob = hsm.seal(b"share", b"aad")
    with connect(softhsm_token_factory()) as other:  # new label -> C_Finalize/C_Initialize in-process
        other.provision()
    assert hsm.unseal(blob, b"aad") == b"share"


def test_two_handles_on_one_token_survive_each_others_close(softhsm_token):
    first, second = connect(softhsm_token), connect(softhsm_token)
    first.provision()
    blob = first.seal(b"share", b"aad")
    assert second.unseal(blob, b"aad") == b"share"
    first.close()  # C_Logout logs the whole process out of the token; `second` must log in again
    assert second.unseal(blob, b"aad") == b"share"
    second.close()
