"""Fixtures for HSM tests: a provisioned `Hsm` on a fresh real SoftHSM token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.hsm import Hsm
from appliance.hsm.softhsm import SoftHsmToken


def connect(token: SoftHsmToken) -> Hsm:
    return Hsm.connect(token.module, token.label, token.user_pin)


@pytest.fixture
def hsm(softhsm_token: SoftHsmToken) -> Iterator[Hsm]:
    """A provisioned HSM (sealing, identity and chain keys created) on its own token."""
    with connect(softhsm_token) as opened:
        opened.provision()
        yield opened
