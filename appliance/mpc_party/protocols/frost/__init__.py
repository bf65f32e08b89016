"""Threshold Schnorr signatures with FROST (RFC 9591): Ed25519, secp256k1, and BIP-340 over secp256k1.

Key generation is the generic DKG in `appliance.mpc_party.protocols.dkg`; this package adds the ciphersuites
(`ciphersuite`), the RFC computations (`core`), the per-signer state machine (`session`) and an
in-process driver (`local`)."""

from appliance.mpc_party.protocols.frost.ciphersuite import (
    FROST_ED25519,
    FROST_SECP256K1,
    FROST_SECP256K1_BIP340,
    Ciphersuite,
    SigningKey,
)
from appliance.mpc_party.protocols.frost.session import (
    FrostSigner,
    SignatureShareMsg,
    SigningCommitment,
    SignState,
    decode_frost_message,
)

__all__ = [
    "FROST_ED25519",
    "FROST_SECP256K1",
    "FROST_SECP256K1_BIP340",
    "Ciphersuite",
    "FrostSigner",
    "SignState",
    "SignatureShareMsg",
    "SigningCommitment",
    "SigningKey",
    "decode_frost_message",
]
