"""Every operator mistake gives a one-line UserError naming the problem (real tokens where possible)."""

from __future__ import annotations

import pytest
from pkcs11 import Mechanism
from pkcs11 import exceptions as p11

from appliance.hsm import (
    Hsm,
    HsmConfig,
    KeyMissingError,
    MechanismMissingError,
    ModuleLoadError,
    PinIncorrectError,
    PinLockedError,
    TokenNotFoundError,
    load_hsm_config,
    read_pin,
)
from appliance.hsm import token as token_module
from appliance.hsm.provision import REQUIRED_MECHANISMS, check_mechanisms
from appliance.hsm.softhsm import SOFTHSM_MODULE, write_hsm_config
from appliance.runtime.config import build
from appliance.runtime.errors import ConfigError, UserError
from tests.hsm.conftest import connect

CKF_USER_PIN_LOCKED = 0x00040000


def test_wrong_pin(softhsm_token):
    with pytest.raises(PinIncorrectError, match="wrong PIN") as info:
        Hsm.connect(softhsm_token.module, softhsm_token.label, softhsm_token.user_pin + "0")
    assert softhsm_token.user_pin not in str(info.value)
    assert isinstance(info.value, UserError)


class _LockedToken:
    """Stands in for a token whose C_Login answers CKR_PIN_LOCKED (see test_locked_pin)."""

    def __init__(self, real):
        self.label = real.label

    def open(self, **_kwargs):
        raise p11.PinLocked()


def test_locked_pin(softhsm_token, monkeypatch):
    # Lock the PIN for real: repeated wrong logins on a throwaway token.
    for _ in range(12):
        with pytest.raises(PinIncorrectError):
            Hsm.connect(softhsm_token.module, softhsm_token.label, "wrong-pin")
    try:
        connect(softhsm_token).close()
        really_locked = False
    except PinLockedError as exc:
        really_locked, error = True, exc
    if not really_locked:
        # SoftHSM 2.6.1 never sets CKF_USER_PIN_LOCKED (it only raises CKF_USER_PIN_COUNT_LOW), so this
        # fault cannot be produced for real here: inject CKR_PIN_LOCKED at the C_Login level.
        real_find = token_module.find_token
        monkeypatch.setattr(token_module, "find_token", lambda w, label: _LockedToken(real_find(w, label)))
        with pytest.raises(PinLockedError) as info:
            connect(softhsm_token)
        error = info.value
    assert "locked" in str(error) and softhsm_token.label in str(error)


def test_failed_logins_show_in_status(softhsm_token):
    with pytest.raises(PinIncorrectError):
        Hsm.connect(softhsm_token.module, softhsm_token.label, "wrong-pin")
    with connect(softhsm_token) as hsm:
        assert hsm.status().pin_count_low


def test_missing_module_path(tmp_path):
    with pytest.raises(ModuleLoadError, match="does not exist"):
        Hsm.connect(str(tmp_path / "libnothing.so"), "x", "1234")


def test_module_path_is_a_directory(tmp_path):
    with pytest.raises(ModuleLoadError, match="not a file"):
        Hsm.connect(str(tmp_path), "x", "1234")


def test_non_pkcs11_file_as_module(tmp_path):
    text = tmp_path / "notalib.so"
    text.write_text("this is not a shared library\n")
    with pytest.raises(ModuleLoadError, match="not a usable PKCS#11 library"):
        Hsm.connect(str(text), "x", "1234")


def test_shared_library_that_is_not_pkcs11():
    with pytest.raises(ModuleLoadError, match="C_GetFunctionList"):
        Hsm.connect("/usr/lib/x86_64-linux-gnu/libz.so.1", "x", "1234")


def test_unknown_label_lists_the_labels_present(softhsm_token):
    with pytest.raises(TokenNotFoundError) as info:
        Hsm.connect(softhsm_token.module, "no-such-token", softhsm_token.user_pin)
    message = str(info.value)
    assert "no-such-token" in message and repr(softhsm_token.label) in message


def test_missing_mechanism_is_named(softhsm_token):
    # SoftHSM 2.6.1 really lacks CKM_ECDSA_SHA256; asking for it must name it.
    required = (*REQUIRED_MECHANISMS, Mechanism.ECDSA_SHA256)
    with pytest.raises(MechanismMissingError, match="CKM_ECDSA_SHA256"):
        Hsm.connect(softhsm_token.module, softhsm_token.label, softhsm_token.user_pin, required)
    with connect(softhsm_token) as hsm:
        status = hsm.status(required)
        assert status.mechanisms_missing == ["CKM_ECDSA_SHA256"]
        assert "CKM_AES_GCM" in status.mechanisms_present and not status.ready


def test_check_mechanisms_names_all_missing():
    with pytest.raises(MechanismMissingError, match="CKM_AES_GCM, CKM_EDDSA"):
        check_mechanisms({Mechanism.ECDSA}, (Mechanism.ECDSA, Mechanism.AES_GCM, Mechanism.EDDSA))


def test_operations_before_provisioning_say_what_to_do(softhsm_token):
    with connect(softhsm_token) as hsm:
        for call in (lambda: hsm.seal(b"x", b"a"), hsm.chain_public_key, lambda: hsm.sign_identity(b"m")):
            with pytest.raises(KeyMissingError, match="zrkeyring hsm init"):
                call()


# --- configuration ---------------------------------------------------------------------------------


def _write(tmp_path, body):
    path = tmp_path / "hsm.toml"
    path.write_text(body)
    return path


def test_config_round_trip(softhsm_token, tmp_path):
    config = load_hsm_config(write_hsm_config(softhsm_token, tmp_path))
    assert config.module == SOFTHSM_MODULE and config.token_label == softhsm_token.label
    assert read_pin(config) == softhsm_token.user_pin
    assert softhsm_token.user_pin not in repr(config)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"\[hsm\]: section missing"),
        ('[hsm]\npin_file = "/x"\n', "hsm.token_label: required field missing"),
        ('[hsm]\ntoken_label = 3\npin_file = "/x"\n', "hsm.token_label: expected a string"),
        ('[hsm]\ntoken_label = "t"\nmodule = true\npin_file = "/x"\n', "hsm.module: expected a string"),
        ('[hsm]\ntoken_label = "t"\npin = "1234"\n', "hsm.pin: unknown field"),
        ('[hsm]\ntoken_label = "t"\n', "exactly one of pin_file, pin_env, pin_credential"),
        ('[hsm]\ntoken_label = "t"\npin_file = "/x"\npin_env = "P"\n', "found: pin_file, pin_env"),
        ('[hsm]\ntoken_label = ""\npin_env = "P"\n', "hsm.token_label: must not be empty"),
        ("[hsm\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_field(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_hsm_config(_write(tmp_path, body))


def test_config_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_hsm_config(tmp_path / "absent.toml")


def test_pin_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("ZRK_TEST_PIN", raising=False)
    from_env = build({"token_label": "t", "pin_env": "ZRK_TEST_PIN"}, "hsm", HsmConfig)
    with pytest.raises(ConfigError, match="ZRK_TEST_PIN is not set"):
        read_pin(from_env)
    monkeypatch.setenv("ZRK_TEST_PIN", "s3cret")
    assert read_pin(from_env) == "s3cret"

    missing_file = build({"token_label": "t", "pin_file": str(tmp_path / "nope")}, "hsm", HsmConfig)
    with pytest.raises(ConfigError, match="hsm.pin_file: PIN file .* not found"):
        read_pin(missing_file)
    empty = tmp_path / "empty.pin"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="the PIN is empty"):
        read_pin(build({"token_label": "t", "pin_file": str(empty)}, "hsm", HsmConfig))

    credential = build({"token_label": "t", "pin_credential": "hsm-pin"}, "hsm", HsmConfig)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        read_pin(credential)
    (tmp_path / "hsm-pin").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_pin(credential) == "from-systemd"
