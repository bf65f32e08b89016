"""Provisioned keys: attributes read back from the token, nothing can be extracted, idempotent init."""

from __future__ import annotations

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from appliance.hsm.provision import CHAIN_KEY, IDENTITY_KEY, SEAL_KEY, find_key
from tests.hsm.conftest import connect


def _attributes(link, spec, object_class, names):
    key = find_key(link.session, spec, object_class)
    return {name: key[name] for name in names}


def test_sealing_key_is_sensitive_and_not_extractable(hsm):
    names = [
        Attribute.TOKEN,
        Attribute.PRIVATE,
        Attribute.SENSITIVE,
        Attribute.ALWAYS_SENSITIVE,
        Attribute.EXTRACTABLE,
        Attribute.NEVER_EXTRACTABLE,
        Attribute.ENCRYPT,
        Attribute.DECRYPT,
        Attribute.WRAP,
        Attribute.UNWRAP,
        Attribute.SIGN,
        Attribute.DERIVE,
        Attribute.VALUE_LEN,
    ]
    got = hsm.submit(_attributes, SEAL_KEY, ObjectClass.SECRET_KEY, names).result()
    assert got == {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.SIGN: False,
        Attribute.DERIVE: False,
        Attribute.VALUE_LEN: 32,
    }


def _read_value(link, spec, object_class):
    return find_key(link.session, spec, object_class)[Attribute.VALUE]


def _wrap_out(link):
    """Try to export the sealing key under a fresh wrapping key the attacker controls."""
    wrapper = link.session.generate_key(
        KeyType.AES, 256, store=False, template={Attribute.WRAP: True, Attribute.EXTRACTABLE: True}
    )
    sealing = find_key(link.session, SEAL_KEY, ObjectClass.SECRET_KEY)
    return wrapper.wrap_key(sealing, mechanism=Mechanism.AES_KEY_WRAP_PAD)


@pytest.mark.parametrize(
    ("spec", "object_class"),
    [
        (SEAL_KEY, ObjectClass.SECRET_KEY),
        (IDENTITY_KEY, ObjectClass.PRIVATE_KEY),
        (CHAIN_KEY, ObjectClass.PRIVATE_KEY),
    ],
)
def test_key_values_cannot_be_read(hsm, spec, object_class):
    with pytest.raises(p11.AttributeSensitive):
        hsm.submit(_read_value, spec, object_class).result()


def test_wrapping_the_sealing_key_out_fails(hsm):
    with pytest.raises(p11.KeyUnextractable):
        hsm.submit(_wrap_out).result()
    # and the token still seals after the attempt
    assert hsm.unseal(hsm.seal(b"x", b"a"), b"a") == b"x"


@pytest.mark.parametrize("spec", [IDENTITY_KEY, CHAIN_KEY])
def test_signing_keys_sign_only(hsm, spec):
    names = [Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.SIGN, Attribute.DECRYPT, Attribute.DERIVE]
    got = hsm.submit(_attributes, spec, ObjectClass.PRIVATE_KEY, names).result()
    assert got == {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.DERIVE: False,
    }


def test_provisioning_is_idempotent(softhsm_token):
    with connect(softhsm_token) as first:
        assert set(first.provision().values()) == {"created"}
        chain, identity = first.chain_public_key(), first.identity_public_key()
    with connect(softhsm_token) as again:
        assert set(again.provision().values()) == {"present"}
        assert again.chain_public_key() == chain and again.identity_public_key() == identity
    assert len(chain) == 33 and chain[0] in (2, 3) and len(identity) == 32
