"""The WAN bench's namespace plumbing (appliance/local/netns.py): a lab makes its namespaces, parties
reach the chain side through the bridge, and every namespace and link is gone after close — also
when building fails half way. Skipped where the machine forbids namespaces."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from appliance.local import netns

WHY = netns.unavailable()
pytestmark = pytest.mark.skipif(bool(WHY), reason=f"network namespaces unavailable: {WHY}")


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _accept_once(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.recv(64))


def test_a_lab_connects_parties_to_the_chain_side_and_leaves_nothing_behind() -> None:
    lab = netns.NetLab(2).open()
    names = {lab.hub, lab.namespace(1), lab.namespace(2)}
    try:
        assert names <= netns.existing_namespaces()
        with socket.create_server((lab.chain_host, 0)) as server:  # the root side, where the chain node binds
            port = server.getsockname()[1]
            threading.Thread(target=_accept_once, args=(server,), daemon=True).start()
            probe = (f"import socket; s = socket.create_connection(('{lab.chain_host}', {port}), timeout=5); "
                     "s.sendall(b'hello'); print(s.recv(64).decode())")
            out = subprocess.run([*lab.prefix(1), sys.executable, "-c", probe], capture_output=True, text=True,
                                 timeout=30)
        assert out.stdout.strip() == "hello", out.stderr
        # party 1's namespace has its own stack: its own address, not the chain side's
        own = subprocess.run([*lab.prefix(1), "ip", "-o", "addr"], capture_output=True, text=True, check=True)
        assert f"inet {lab.party_host(1)}/" in own.stdout and f"inet {lab.chain_host}/" not in own.stdout
    finally:
        lab.close()
    assert not names & netns.existing_namespaces()
    assert f"zr{lab.tag}c" not in _links()


def test_a_lab_that_fails_half_way_removes_what_it_made(monkeypatch) -> None:
    lab = netns.NetLab(3)
    real = netns.NetLab._add_namespace

    def fail_on_the_third(self, name: str) -> None:
        if len(self.made) == 2:
            raise RuntimeError("simulated failure while building")
        real(self, name)

    monkeypatch.setattr(netns.NetLab, "_add_namespace", fail_on_the_third)
    with pytest.raises(RuntimeError, match="simulated"):
        lab.open()
    left = {n for n in netns.existing_namespaces() if n.startswith(f"zrk{lab.tag}")}
    assert left == set() and f"zr{lab.tag}c" not in _links()


def test_names_fit_linux_interface_limits() -> None:
    lab = netns.NetLab(netns.MAX_PARTIES)
    assert len(f"zh{lab.tag}p{netns.MAX_PARTIES}") <= 15  # IFNAMSIZ - 1
    with pytest.raises(ValueError):
        netns.NetLab(netns.MAX_PARTIES + 1)
