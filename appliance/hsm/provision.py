"""The three keys a party keeps on its token, how they are labelled, and idempotent creation.

| key                       | CKA_LABEL                    | CKA_ID   | use                      |
|---------------------------|------------------------------|----------|--------------------------|
| share-sealing AES-256     | zrkeyring-seal-v1            | 5a 01    | encrypt/decrypt only     |
| party identity Ed25519    | zrkeyring-identity-ed25519   | 5a 02    | sign only (verify: pub)  |
| chain account secp256k1   | zrkeyring-chain-secp256k1    | 5a 03    | sign only (verify: pub)  |

All private and secret keys are token objects, private, sensitive and non-extractable; nothing here can
wrap, unwrap or derive. Re-running provisioning keeps keys that exist and only creates missing ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto.core import ObjectIdentifier, PrintableString
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from appliance.hsm.errors import KeyMissingError, MechanismMissingError
from appliance.hsm.token import TokenLink

# CKA_EC_PARAMS for Ed25519, tried in order: the id-Ed25519 OID (RFC 8410), then the PKCS#11 3.0
# printable curve name. SoftHSM 2.6.1 accepts both; some HSMs know only one of them.
ED25519_PARAMS: tuple[bytes, ...] = (
    ObjectIdentifier("1.3.101.112").dump(),
    PrintableString("edwards25519").dump(),
)
SECP256K1_PARAMS: tuple[bytes, ...] = (encode_named_curve_parameters("secp256k1"),)


@dataclass(frozen=True)
class KeySpec:
    """How one key is found on the token: label and CKA_ID (shared by both halves of a pair)."""

    name: str
    label: str
    key_id: bytes


SEAL_KEY = KeySpec("share-sealing AES-256", "zrkeyring-seal-v1", bytes.fromhex("5a01"))
IDENTITY_KEY = KeySpec("identity Ed25519", "zrkeyring-identity-ed25519", bytes.fromhex("5a02"))
CHAIN_KEY = KeySpec("chain account secp256k1", "zrkeyring-chain-secp256k1", bytes.fromhex("5a03"))
ALL_KEYS = (SEAL_KEY, IDENTITY_KEY, CHAIN_KEY)

REQUIRED_MECHANISMS: tuple[Mechanism, ...] = (
    Mechanism.AES_KEY_GEN,
    Mechanism.AES_GCM,
    Mechanism.EC_KEY_PAIR_GEN,
    Mechanism.ECDSA,
    Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
    Mechanism.EDDSA,
)

_LOCKED_DOWN = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}

# The usage attributes each object class carries; a template switches all of them off but the allowed.
_SECRET_USES = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
)
_PRIVATE_USES = (Attribute.SIGN, Attribute.DECRYPT, Attribute.UNWRAP, Attribute.DERIVE)
_PUBLIC_USES = (Attribute.VERIFY, Attribute.ENCRYPT, Attribute.WRAP, Attribute.DERIVE)


def _only(uses: tuple[Attribute, ...], *allowed: Attribute) -> dict[Attribute, bool]:
    return {use: use in allowed for use in uses}


def check_mechanisms(present: set[Any], required: tuple[Any, ...] = REQUIRED_MECHANISMS) -> None:
    """Raise MechanismMissingError naming every required mechanism the token lacks."""
    missing = [mechanism_name(m) for m in required if m not in present]
    if missing:
        raise MechanismMissingError(f"the token lacks required PKCS#11 mechanism(s): {', '.join(missing)}")


def mechanism_name(mechanism: Any) -> str:
    name = getattr(mechanism, "name", None)
    return f"CKM_{name}" if name else f"0x{int(mechanism):08x}"


def find_key(session: Any, spec: KeySpec, object_class: ObjectClass) -> Any | None:
    """The object of `object_class` with the spec's label and id, or None."""
    found = list(
        session.get_objects(
            {Attribute.CLASS: object_class, Attribute.LABEL: spec.label, Attribute.ID: spec.key_id}
        )
    )
    if len(found) > 1:
        raise KeyMissingError(
            f"{len(found)} objects named {spec.label!r} on the token; expected one. Two sets of keys share "
            "the labels, usually because `hsm init` ran as two users (root and the service user) on a "
            "SoftHSM token; keep the set whose identity key and chain address are in the roster and delete "
            "the other (docs/operations.md, Troubleshooting: two objects named)"
        )
    return found[0] if found else None


def require_key(link: TokenLink, spec: KeySpec, object_class: ObjectClass) -> Any:
    """A key needed for an operation, looked up once per session; clear error if not provisioned."""

    def lookup(session: Any) -> Any:
        key = find_key(session, spec, object_class)
        if key is None:
            raise KeyMissingError(
                f"token {link.label!r} has no {spec.name} key ({spec.label}); run `zrkeyring hsm init`"
            )
        return key

    return link.cached_key((spec.label, int(object_class)), lookup)


def keys_present(link: TokenLink) -> dict[str, bool]:
    """Which of the three keys exist (private/secret halves)."""
    classes = {SEAL_KEY: ObjectClass.SECRET_KEY}
    return {
        spec.label: find_key(link.session, spec, classes.get(spec, ObjectClass.PRIVATE_KEY)) is not None
        for spec in ALL_KEYS
    }


def provision(link: TokenLink) -> dict[str, str]:
    """Create whichever keys are missing; returns {label: "created" | "present"}."""
    check_mechanisms(link.token.slot.get_mechanisms())
    session = link.session
    report = {}
    if find_key(session, SEAL_KEY, ObjectClass.SECRET_KEY) is None:
        session.generate_key(
            KeyType.AES,
            256,
            label=SEAL_KEY.label,
            id=SEAL_KEY.key_id,
            store=True,
            template={**_LOCKED_DOWN, **_only(_SECRET_USES, Attribute.ENCRYPT, Attribute.DECRYPT)},
        )
        report[SEAL_KEY.label] = "created"
    else:
        report[SEAL_KEY.label] = "present"
    for spec, key_type, params, mechanism in (
        (IDENTITY_KEY, KeyType.EC_EDWARDS, ED25519_PARAMS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN),
        (CHAIN_KEY, KeyType.EC, SECP256K1_PARAMS, Mechanism.EC_KEY_PAIR_GEN),
    ):
        if find_key(session, spec, ObjectClass.PRIVATE_KEY) is not None:
            report[spec.label] = "present"
            continue
        _generate_signing_pair(session, spec, key_type, params, mechanism)
        report[spec.label] = "created"
    link.drop_cached_keys()
    return report


def _generate_signing_pair(
    session: Any, spec: KeySpec, key_type: Any, params: tuple[bytes, ...], mechanism: Any
) -> None:
    """Generate a sign-only pair, trying each accepted encoding of the curve parameters in turn."""
    for attempt, ec_params in enumerate(params):
        try:
            session.generate_keypair(
                key_type,
                mechanism=mechanism,
                label=spec.label,
                id=spec.key_id,
                store=True,
                public_template={
                    Attribute.EC_PARAMS: ec_params,
                    Attribute.TOKEN: True,
                    **_only(_PUBLIC_USES, Attribute.VERIFY),
                },
                private_template={**_LOCKED_DOWN, **_only(_PRIVATE_USES, Attribute.SIGN)},
            )
            return
        except (p11.MechanismInvalid, p11.DomainParamsInvalid, p11.AttributeValueInvalid) as exc:
            if attempt + 1 < len(params):
                continue
            raise MechanismMissingError(
                f"the token cannot generate {spec.name} keys ({mechanism_name(mechanism)}): "
                f"{type(exc).__name__}"
            ) from None
