"""Sealing: AES-256-GCM inside the token, versioned blobs, tamper and AAD mismatch rejected."""

from __future__ import annotations

import pytest

from appliance.hsm import BlobAuthError, BlobFormatError, SealError
from appliance.hsm.seal import HEADER_LEN, MIN_BLOB_LEN, NONCE_LEN
from tests.hsm.conftest import connect

AAD = b"keyring1abc|7|party-1|ecdsa|v1"


@pytest.mark.parametrize("size", [0, 1, 32, 1000, 70_000])
def test_round_trip(hsm, size):
    plaintext = hsm.random(size)
    blob = hsm.seal(plaintext, AAD)
    assert len(blob) == MIN_BLOB_LEN + size
    assert blob[0] == 1 and blob[1:3] == bytes.fromhex("5a01")
    assert hsm.unseal(blob, AAD) == plaintext


def test_nonces_are_fresh(hsm):
    blobs = [hsm.seal(b"same share", AAD) for _ in range(200)]
    nonces = {b[3 : 3 + NONCE_LEN] for b in blobs}
    assert len(nonces) == 200
    assert len({b[HEADER_LEN:] for b in blobs}) == 200


def test_every_flipped_byte_is_rejected(hsm):
    blob = hsm.seal(b"a 32-byte secret share, in bytes", AAD)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        expected = BlobFormatError if index < 3 else BlobAuthError
        with pytest.raises(expected):
            hsm.unseal(bytes(tampered), AAD)


def test_truncated_and_extended_blobs_are_rejected(hsm):
    blob = hsm.seal(b"share", AAD)
    with pytest.raises(BlobFormatError, match="too short"):
        hsm.unseal(blob[: MIN_BLOB_LEN - 1], AAD)
    for bad in (blob[:-1], blob + b"\x00", blob[:HEADER_LEN] + blob[HEADER_LEN + 1 :]):
        with pytest.raises(BlobAuthError):
            hsm.unseal(bad, AAD)


def test_wrong_aad_is_rejected_with_a_clear_message(hsm):
    blob = hsm.seal(b"share", AAD)
    for other in (b"", AAD[:-1], AAD + b"x", AAD.replace(b"party-1", b"party-2")):
        with pytest.raises(SealError, match="AAD"):
            hsm.unseal(blob, other)


def test_blob_from_another_token_is_rejected(hsm, softhsm_token_factory):
    blob = hsm.seal(b"share", AAD)
    with connect(softhsm_token_factory()) as other:
        other.provision()
        with pytest.raises(BlobAuthError):
            other.unseal(blob, AAD)
    assert hsm.unseal(blob, AAD) == b"share"


def test_random_mixes_and_has_the_right_length(hsm):
    assert hsm.random(0) == b""
    values = {hsm.random(32) for _ in range(50)}
    assert len(values) == 50 and all(len(v) == 32 for v in values)
    with pytest.raises(ValueError):
        hsm.random(-1)
