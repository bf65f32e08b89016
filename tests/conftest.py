"""Shared pytest plugins (real SoftHSM tokens: tests/softhsm/fixture.py) and the suite's module order.

`make test` runs the suite on pytest-xdist workers, one whole module per worker at a time
(`--dist loadfile`: a module's one real keyring is set up once). Most of the suite's time is real
processes waiting for blocks and timeouts, not CPU, so three workers on two cores take about half the
wall time of one. The modules marked slow go first, the package build first of all, so that no long
module starts last and leaves the other workers idle while it finishes.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.softhsm.fixture"]

FIRST = ("tests/ops/test_deb.py",)  # the `make deb` build alone takes minutes


def _rank(item: pytest.Item, slow_modules: set[str]) -> int:
    path = item.nodeid.split("::", 1)[0]
    if path in FIRST:
        return 0
    return 1 if path in slow_modules else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow modules first; every module's tests stay together and in their written order (some modules'
    tests build on the state the previous ones left in the module's keyring)."""
    slow = {item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _rank(item, slow))  # stable: the order within a rank is unchanged
