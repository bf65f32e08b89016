"""zrChain account addresses: bech32 (BIP-173) of RIPEMD160(SHA256(compressed secp256k1 key)).

The Cosmos SDK uses the original bech32 checksum (not bech32m) with prefixes such as `zen`.
"""

from __future__ import annotations

import hashlib

ACCOUNT_PREFIX = "zen"
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class AddressError(ValueError):
    """A bech32 string is malformed, has a bad checksum, or the wrong prefix."""


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit in range(5):
            if (top >> bit) & 1:
                checksum ^= _GENERATOR[bit]
    return checksum


def _expand_hrp(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    accumulator, bits, out = 0, 0, []
    max_value = (1 << to_bits) - 1
    for value in data:
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((accumulator >> bits) & max_value)
    if pad and bits:
        out.append((accumulator << (to_bits - bits)) & max_value)
    elif not pad and (bits >= from_bits or (accumulator << (to_bits - bits)) & max_value):
        raise AddressError("invalid padding in bech32 data")
    return out


def bech32_encode(hrp: str, payload: bytes) -> str:
    """Encode `payload` bytes under human-readable prefix `hrp`."""
    data = _convert_bits(payload, 8, 5, pad=True)
    checksum = _polymod(_expand_hrp(hrp) + data + [0] * 6) ^ 1
    data += [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32 string into (hrp, payload bytes); raises AddressError."""
    if text.lower() != text and text.upper() != text:
        raise AddressError(f"mixed case in bech32 string {text!r}")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or len(text) > 90:
        raise AddressError(f"not a bech32 string: {text!r}")
    hrp, rest = text[:pos], text[pos + 1 :]
    try:
        data = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise AddressError(f"invalid bech32 character in {text!r}") from None
    if _polymod(_expand_hrp(hrp) + data) != 1:
        raise AddressError(f"bad bech32 checksum in {text!r}")
    return hrp, bytes(_convert_bits(data[:-6], 5, 8, pad=False))


def account_address(compressed_pubkey: bytes, prefix: str = ACCOUNT_PREFIX) -> str:
    """The chain address of a 33-byte compressed secp256k1 public key."""
    if len(compressed_pubkey) != 33 or compressed_pubkey[0] not in (2, 3):
        raise AddressError("account public key must be 33-byte compressed secp256k1")
    digest = hashlib.new("ripemd160", hashlib.sha256(compressed_pubkey).digest()).digest()
    return bech32_encode(prefix, digest)


def address_bytes(address: str, prefix: str = ACCOUNT_PREFIX) -> bytes:
    """The 20 bytes behind an account address, checking its prefix."""
    hrp, payload = bech32_decode(address)
    if hrp != prefix:
        raise AddressError(f"address {address!r} has prefix {hrp!r}, expected {prefix!r}")
    return payload
