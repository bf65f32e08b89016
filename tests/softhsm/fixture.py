"""pytest fixtures for real SoftHSM2 tokens.

Design (why a session-wide directory): SoftHSM reads SOFTHSM2_CONF at C_Initialize and python-pkcs11
loads the module once per process. So `softhsm_dir` (session scope) creates one private token
directory and conf under pytest's tmp dir and sets os.environ["SOFTHSM2_CONF"] for the whole run;
`softhsm_token` then initialises a fresh token with its own random label and PINs for each test, in that
directory. The HSM layer re-initialises the module when it does not see a label yet, so tokens made
after the module was loaded are found. Subprocesses (party daemons) get `token.env`, and
`write_hsm_config(token, dir)` writes an [hsm] TOML + PIN file they can be started with.
The system SoftHSM config (/etc/softhsm, /var/lib/softhsm) is never used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.hsm.softhsm import SoftHsmToken, activated, init_token, make_token_dir, write_hsm_config

__all__ = ["SoftHsmToken", "write_hsm_config", "softhsm_dir", "softhsm_token", "softhsm_token_factory"]


@pytest.fixture(scope="session")
def softhsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's SoftHSM conf file (its token folder is next to it, in `tokens/`)."""
    with activated(make_token_dir(tmp_path_factory.mktemp("softhsm"))) as conf:
        yield conf


@pytest.fixture
def softhsm_token_factory(softhsm_dir: Path):
    """Call it to get more fresh tokens in one test: `softhsm_token_factory(label=None)`."""

    def make(label: str | None = None) -> SoftHsmToken:
        return init_token(softhsm_dir, label=label)

    return make


@pytest.fixture
def softhsm_token(softhsm_token_factory) -> SoftHsmToken:
    """A fresh, empty token with a random label and PINs (module, label, pins, conf, dir, env)."""
    return softhsm_token_factory()
