"""The SoftHSM fixture other teams use: private directory, own conf, config writer, subprocess env."""

from __future__ import annotations

import os
import subprocess

from appliance.hsm import load_hsm_config, read_pin
from tests.softhsm.fixture import write_hsm_config


def test_token_lives_in_a_private_directory(softhsm_token, softhsm_dir, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    assert softhsm_token.conf_path == softhsm_dir and base in softhsm_token.conf_path.parents
    assert base in softhsm_token.token_dir.parents and softhsm_token.token_dir.is_dir()
    assert os.environ["SOFTHSM2_CONF"] == str(softhsm_dir) == softhsm_token.env["SOFTHSM2_CONF"]
    conf = softhsm_token.conf_path.read_text()
    assert "/var/lib/softhsm" not in conf and f"directories.tokendir = {softhsm_token.token_dir}" in conf
    assert softhsm_token.user_pin not in repr(softhsm_token)
    listed = subprocess.run(
        ["softhsm2-util", "--show-slots"], env=softhsm_token.env, capture_output=True, text=True, check=True
    )
    assert softhsm_token.label in listed.stdout


def test_each_test_gets_its_own_token(softhsm_token, softhsm_token_factory):
    other = softhsm_token_factory()
    assert other.label != softhsm_token.label and other.user_pin != softhsm_token.user_pin


def test_config_writer_env_variant(softhsm_token, tmp_path, monkeypatch):
    config = load_hsm_config(write_hsm_config(softhsm_token, tmp_path, pin_via="env"))
    assert config.pin_env == "ZRKEYRING_HSM_PIN" and config.pin_file is None
    monkeypatch.setenv("ZRKEYRING_HSM_PIN", softhsm_token.user_pin)
    assert read_pin(config) == softhsm_token.user_pin
