"""Party hosts as Linux network namespaces on one machine, with delay between them (the WAN bench).

One namespace per party, each with its own network stack, loopback and address, plugged by a veth
pair into a bridge that lives in a hub namespace of its own; one more veth pair joins the bridge to the
root namespace, where the chain node listens (so the bench's own clients reach it, and no forwarding
or firewall setting of the root namespace is touched). Addresses are 10.213.<k>.0/24 with `k` picked
per lab: `.1` is the chain side, `.10 + i` party i.

    hub ns:    bridge zb<tag>, ports zh<tag>c (root link) and zh<tag>p<i> (party links)
    root ns:   zr<tag>c 10.213.k.1           <- the chain node binds here
    party ns:  zp<tag>p<i> 10.213.k.(10+i)   <- party i's daemon, controller (and delay line)

Delay: where the kernel has the netem qdisc, `netem delay D` on every party's own interface (each
packet a party sends waits D, so party-to-party round trips take 2 D and a party's round trip to the
chain D). This machine's kernel has no sch_netem; then a delay line (appliance/local/delayline.py) in
each party's namespace holds the party's roster address and forwards to its daemon on the namespace's
loopback, delaying bytes by D each way: party-to-party round trips 2 D, the chain not delayed.
`NetLab.delay_mode` says which one a run used.

Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; `unavailable()` says
why a machine cannot, so callers can skip with that reason. Everything made is removed by `close()`
(deleting a namespace deletes its interfaces; the root-side interface goes with its hub-side peer),
also when set-up fails half way; an `atexit` hook covers a caller that forgets.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

SUBNET_PREFIX = "10.213"
CHAIN_HOST_OCTET = 1
PARTY_HOST_BASE = 10
MAX_PARTIES = 200  # 10 + 200 stays inside one /24
IP_TIMEOUT_S = 30


class NetnsUnavailable(RuntimeError):
    """This machine cannot make network namespaces (the message says why)."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=check)


def unavailable() -> str:
    """Why namespaces cannot be made here ("" when they can): checked by making and deleting one."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "not root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN"
    probe = f"zrkprobe{secrets.token_hex(3)}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` refused: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return ""


def netem_available() -> bool:
    """Whether the kernel has the netem qdisc (tried on the loopback of a throwaway namespace)."""
    if unavailable():
        return False
    probe = f"zrkprobe{secrets.token_hex(3)}"
    _run("ip", "netns", "add", probe)
    try:
        _run("ip", "-n", probe, "link", "set", "lo", "up")
        return _run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                    "delay", "1ms", check=False).returncode == 0
    finally:
        _run("ip", "netns", "del", probe, check=False)


@dataclass
class NetLab:
    """`parties` namespaces on one bridge, the chain side in the root namespace; see the module doc."""

    parties: int
    delay_ms: float = 0.0
    use_netem: bool | None = None  # None: netem when the kernel has it, else a delay line is needed
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: int = field(default_factory=lambda: 16 + secrets.randbelow(200))
    made: list[str] = field(default_factory=list)  # namespaces to delete
    root_links: list[str] = field(default_factory=list)
    delay_mode: str = "none"

    def __post_init__(self) -> None:
        if not 1 <= self.parties <= MAX_PARTIES:
            raise ValueError(f"parties must be 1..{MAX_PARTIES}, got {self.parties}")

    @property
    def hub(self) -> str:
        return f"zrk{self.tag}hub"

    def namespace(self, index: int) -> str:
        return f"zrk{self.tag}p{index}"

    @property
    def chain_host(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.{CHAIN_HOST_OCTET}"

    def party_host(self, index: int) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.{PARTY_HOST_BASE + index}"

    def prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program inside party `index`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(index)]

    @property
    def needs_delay_line(self) -> bool:
        return self.delay_ms > 0 and self.delay_mode == "delay line"

    # --- building and tearing down -------------------------------------------------------------

    def open(self) -> NetLab:
        why = unavailable()
        if why:
            raise NetnsUnavailable(why)
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        netem = netem_available() if self.use_netem is None else self.use_netem
        self._add_namespace(self.hub)
        bridge = f"zb{self.tag}"
        _run("ip", "-n", self.hub, "link", "add", bridge, "type", "bridge")
        _run("ip", "-n", self.hub, "link", "set", bridge, "up")
        self._link(bridge, f"zh{self.tag}c", f"zr{self.tag}c", None, self.chain_host)
        for index in range(1, self.parties + 1):
            ns = self.namespace(index)
            self._add_namespace(ns)
            self._link(bridge, f"zh{self.tag}p{index}", f"zp{self.tag}p{index}", ns, self.party_host(index))
            if self.delay_ms > 0 and netem:
                _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", f"zp{self.tag}p{index}", "root",
                     "netem", "delay", f"{self.delay_ms}ms")
        self.delay_mode = "none" if self.delay_ms <= 0 else ("netem" if netem else "delay line")

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.made.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _link(self, bridge: str, hub_end: str, far_end: str, far_ns: str | None, address: str) -> None:
        """A veth pair: one end a bridge port in the hub, the other in `far_ns` (None: root) with `address`."""
        _run("ip", "-n", self.hub, "link", "add", hub_end, "type", "veth", "peer", "name", far_end)
        if far_ns is None:
            _run("ip", "-n", self.hub, "link", "set", far_end, "netns", "1")  # pid 1's: the root namespace
            self.root_links.append(far_end)
        else:
            _run("ip", "-n", self.hub, "link", "set", far_end, "netns", far_ns)
        _run("ip", "-n", self.hub, "link", "set", hub_end, "master", bridge, "up")
        where = ["-n", far_ns] if far_ns else []
        _run("ip", *where, "addr", "add", f"{address}/24", "dev", far_end)
        _run("ip", *where, "link", "set", far_end, "up")

    def close(self) -> None:
        """Delete every namespace and root-side link this lab made (idempotent; never raises)."""
        for name in reversed(self.made):
            _run("ip", "netns", "del", name, check=False)
        for link in self.root_links:  # normally gone with its hub-side peer already
            _run("ip", "link", "del", link, check=False)
        self.made.clear()
        self.root_links.clear()
        atexit.unregister(self.close)

    def __enter__(self) -> NetLab:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def existing_namespaces() -> set[str]:
    """Names from `ip netns list` (for tests that check what a lab left behind)."""
    listing = _run("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}

