"""Listen ports for the local keyring and the dev node are chosen below the kernel's ephemeral range.

Regression (CI, issue 17 session 6): a port chosen at set-up with bind(0) comes from the ephemeral
range, and seconds later, when the party daemon bound it, an outgoing connection of another test
worker had taken it as its source port: "Address already in use", the e2e fixture failed at set-up.
"""

from __future__ import annotations

import socket

from chain_node.local import LISTEN_PORTS_FROM, ephemeral_low, free_port


def test_chosen_ports_are_free_and_below_the_ephemeral_range() -> None:
    for count in (1, 3, 16):
        base = free_port(count)
        assert LISTEN_PORTS_FROM <= base and base + count <= ephemeral_low()
        for port in range(base, base + count):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))  # raises if it were taken


def test_a_taken_port_is_never_chosen(monkeypatch) -> None:
    """With every port but one range taken, that range is what comes back."""
    import chain_node.local as local

    picks = iter([11000, 11000, 12000])
    monkeypatch.setattr(local.secrets, "randbelow", lambda _n: next(picks) - LISTEN_PORTS_FROM)
    monkeypatch.setattr(local, "port_free", lambda port: port >= 12000)
    assert free_port(3) == 12000
