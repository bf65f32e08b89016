"""The units' descriptor limit is sized for the daemon's own connection caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.mpc_party import transport
from appliance.runtime import metrics_http

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "debian" / "units"


def limit_nofile(name: str) -> int:
    values = [line.partition("=")[2] for line in (UNITS / name).read_text().splitlines()
              if line.startswith("LimitNOFILE=")]
    assert len(values) == 1, f"{name}: exactly one LimitNOFILE= line"
    soft, _, hard = values[0].partition(":")
    assert not hard or hard == soft
    return int(soft)


@pytest.mark.parametrize("name", ["zrkeyring-party.service", "zrkeyring-controller.service"])
def test_limit_nofile_is_set_well_above_what_the_caps_let_strangers_hold(name: str) -> None:
    caps = transport.MAX_CONNECTIONS + metrics_http.METRICS_MAX_THREADS
    assert limit_nofile(name) >= 8 * caps
    # Even under systemd's default soft limit (1024) the caps leave most descriptors to the daemon.
    assert caps <= 1024 // 3
