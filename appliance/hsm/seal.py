"""AES-256-GCM sealing inside the HSM, and the versioned blob format.

Blob (fixed layout, 31 + len(plaintext) bytes):

    version (1 byte, 0x01) | key id (2 bytes, CKA_ID of the sealing key) | nonce (12 bytes) |
    ciphertext (len(plaintext) bytes) | GCM tag (16 bytes)

The version byte and key id are also fed to GCM as a prefix of the AAD, so they cannot be swapped
without detection. The nonce is 96 bits from `mixed_random` (HSM RNG XOR the OS RNG).
"""

from __future__ import annotations

import secrets

from pkcs11 import Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from appliance.hsm.errors import BlobAuthError, BlobFormatError
from appliance.hsm.provision import SEAL_KEY, require_key
from appliance.hsm.token import LOST_SESSION_ERRORS, TokenLink

BLOB_VERSION = 1
NONCE_LEN = 12
TAG_LEN = 16
KEY_ID_LEN = 2
HEADER_LEN = 1 + KEY_ID_LEN + NONCE_LEN
MIN_BLOB_LEN = HEADER_LEN + TAG_LEN


def mixed_random(link: TokenLink, n: int) -> bytes:
    """`n` bytes: the HSM RNG XOR the OS RNG, so either source alone being weak does no harm."""
    if n < 0:
        raise ValueError("random: n must be >= 0")
    if n == 0:
        return b""
    hsm_bytes = bytes(link.session.generate_random(n * 8))  # python-pkcs11 counts bits
    os_bytes = secrets.token_bytes(n)
    return bytes(a ^ b for a, b in zip(hsm_bytes, os_bytes, strict=True))


def _header(nonce: bytes) -> bytes:
    return bytes([BLOB_VERSION]) + SEAL_KEY.key_id + nonce


def seal(link: TokenLink, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt `plaintext` under the token's sealing key, binding `aad`."""
    key = require_key(link, SEAL_KEY, ObjectClass.SECRET_KEY)
    nonce = mixed_random(link, NONCE_LEN)
    header = _header(nonce)
    body = key.encrypt(
        bytes(plaintext), mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, header + aad)
    )
    return header + bytes(body)


def parse_blob(blob: bytes) -> tuple[bytes, bytes]:
    """Split a blob into (header, nonce); raise BlobFormatError if it cannot be one of ours."""
    if len(blob) < MIN_BLOB_LEN:
        raise BlobFormatError(f"sealed blob too short ({len(blob)} bytes, minimum {MIN_BLOB_LEN})")
    if blob[0] != BLOB_VERSION:
        raise BlobFormatError(f"sealed blob has unknown version {blob[0]} (this build reads {BLOB_VERSION})")
    key_id = blob[1 : 1 + KEY_ID_LEN]
    if key_id != SEAL_KEY.key_id:
        raise BlobFormatError(
            f"sealed blob names sealing key id {key_id.hex()}, this token's is {SEAL_KEY.key_id.hex()}"
        )
    return blob[:HEADER_LEN], blob[1 + KEY_ID_LEN : HEADER_LEN]


def unseal(link: TokenLink, blob: bytes, aad: bytes) -> bytes:
    """Decrypt and authenticate a blob; any failure is a SealError, never partial plaintext."""
    blob = bytes(blob)
    header, nonce = parse_blob(blob)
    key = require_key(link, SEAL_KEY, ObjectClass.SECRET_KEY)
    try:
        plaintext = key.decrypt(
            blob[HEADER_LEN:], mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, header + aad)
        )
    except LOST_SESSION_ERRORS:
        raise
    except p11.PKCS11Error as exc:
        raise BlobAuthError(
            "sealed blob failed authentication: it was altered, or the AAD (keyring, key id, party index, "
            f"key type, share version) does not match the one it was sealed with ({type(exc).__name__})"
        ) from None
    return bytes(plaintext)
