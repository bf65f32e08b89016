"""zrChain key types and the protocol that answers each."""

from __future__ import annotations

from enum import Enum


class KeyType(Enum):
    """zrChain's KeyType enum names (the values the chain uses on the wire)."""

    ECDSA_SECP256K1 = "KEY_TYPE_ECDSA_SECP256K1"
    EDDSA_ED25519 = "KEY_TYPE_EDDSA_ED25519"
    BITCOIN_SECP256K1 = "KEY_TYPE_BITCOIN_SECP256K1"

    @property
    def protocol(self) -> str:
        return "frost-ed25519" if self is KeyType.EDDSA_ED25519 else "dkls23"


def parse_key_type(name: str) -> KeyType | None:
    try:
        return KeyType(name)
    except ValueError:
        return None


def protocol_label(key_type: str) -> str:
    """The metrics `protocol` label of a key type name ("unknown" for one we do not serve)."""
    parsed = parse_key_type(key_type)
    return parsed.protocol if parsed is not None else "unknown"
