"""Shared pytest plugins: real SoftHSM tokens (tests/softhsm/fixture.py)."""

pytest_plugins = ["tests.softhsm.fixture"]
