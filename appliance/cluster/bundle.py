"""`cluster init` and `cluster roster` as functions: make the per-party bundles, fill the roster.

Layout written by `init_cluster(out, …)`::

    out/ca.pem                     cluster CA certificate (its key is never written)
    out/roster.toml                the master roster, filled in by `fill_roster`
    out/certs/party-<i>.pem        every party's certificate (the roster pins them)
    out/party-<i>/ca.pem           what host i needs: CA, its own certificate and key,
    out/party-<i>/party.pem        everybody's certificates, and the roster
    out/party-<i>/party.key        (mode 0600: the TLS transport credential)
    out/party-<i>/certs/…
    out/party-<i>/roster-template.toml   (then roster.toml once complete)

Paths inside the roster are relative to the roster file, so the same roster works in `out/` and in
every `out/party-<i>/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from appliance.cluster.ca import DEFAULT_DAYS, ClusterCA, party_cn
from appliance.rules.roster import ClusterSection, PartyEntry, Roster, check_identity_key, split_address
from appliance.runtime.errors import UserError

MAX_CLUSTER_PARTIES = 32
ROSTER = "roster.toml"
ROSTER_TEMPLATE = "roster-template.toml"


@dataclass(frozen=True)
class ClusterBundle:
    out: Path
    roster: Roster

    def party_dir(self, index: int) -> Path:
        return self.out / party_cn(index)


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the start (no window in which it is world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def init_cluster(
    out: str | Path,
    parties: int,
    threshold: int,
    hosts: list[str] | str = "127.0.0.1",
    base_port: int = 7001,
    name: str = "zrkeyring",
    days: int = DEFAULT_DAYS,
) -> ClusterBundle:
    """Create a CA, one certificate per party and the bundles; the CA key is discarded on return."""
    out = Path(out)
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    if not 1 <= parties <= MAX_CLUSTER_PARTIES:
        raise UserError(f"--parties: must be 1..{MAX_CLUSTER_PARTIES}, got {parties}")
    if not 1 <= threshold <= parties:
        raise UserError(f"--threshold: must be 1..{parties}, got {threshold}")
    if len(hosts) not in (1, parties):
        raise UserError(f"--host: give one host or {parties} comma-separated hosts, got {len(hosts)}")
    if not (0 < base_port and base_port + parties - 1 < 65536):
        raise UserError(f"--base-port: {base_port} leaves no room for {parties} ports")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty directory; init never overwrites a bundle")

    ca = ClusterCA(name, days)
    entries = []
    issued = {}
    for index in range(1, parties + 1):
        host = hosts[0] if len(hosts) == 1 else hosts[index - 1]
        address = f"[{host}]:{base_port + index - 1}" if ":" in host else f"{host}:{base_port + index - 1}"
        split_address(address, f"--host {host}")
        issued[index] = ca.issue_party(index, host)
        entries.append(PartyEntry(index, party_cn(index), address, f"certs/{party_cn(index)}.pem"))
    roster = Roster(ClusterSection(name=name, threshold=threshold), tuple(entries), out)
    roster.validate()

    out.mkdir(parents=True, exist_ok=True)
    (out / "certs").mkdir()
    (out / "ca.pem").write_bytes(ca.cert_pem)
    for index, cert in issued.items():
        (out / "certs" / f"{party_cn(index)}.pem").write_bytes(cert.cert_pem)
    roster.write(out / ROSTER)
    for index, cert in issued.items():
        party_dir = out / party_cn(index)
        (party_dir / "certs").mkdir(parents=True)
        (party_dir / "ca.pem").write_bytes(ca.cert_pem)
        (party_dir / "party.pem").write_bytes(cert.cert_pem)
        write_private(party_dir / "party.key", cert.key_pem)
        for peer, peer_cert in issued.items():
            (party_dir / "certs" / f"{party_cn(peer)}.pem").write_bytes(peer_cert.cert_pem)
        roster.write(party_dir / ROSTER_TEMPLATE)
    return ClusterBundle(out, Roster.load(out / ROSTER))


def fill_roster(bundle: str | Path, index: int, identity_key: str, chain_address: str) -> Roster:
    """Record party `index`'s HSM identity key and chain address in `bundle/roster.toml`.

    Once every party is filled in, the complete roster is copied to each `bundle/party-<i>/roster.toml`
    so the bundles can be shipped to their hosts.
    """
    bundle = Path(bundle)
    path = bundle / ROSTER
    roster = Roster.load(path).with_party(
        index, identity_key=check_identity_key(identity_key, "--identity-key"), chain_address=chain_address
    )
    keys = [p.identity_key for p in roster.parties if p.identity_key]
    if len(keys) != len(set(keys)):
        raise UserError("--identity-key: another party already has this identity key")
    roster.write(path)
    if all(p.complete for p in roster.parties):
        for p in roster.parties:
            party_dir = bundle / party_cn(p.index)
            if party_dir.is_dir():
                roster.write(party_dir / ROSTER)
    return roster


def add_party(bundle: str | Path, index: int, host: str, port: int, days: int = DEFAULT_DAYS) -> ClusterBundle:
    """Add party `index` to a cluster bundle after `cluster init` (issue 15: a party joins the keyring).

    The cluster CA's key was discarded at init, so the new party's certificate comes from a CA of its
    own, made here and discarded in turn; every party then trusts both CAs. That admits no one else:
    transport.py pins each party's certificate from the roster, so the new CA's certificate for
    `party-<index>` is the only one it can vouch for. Written: `bundle/ca.pem` and every
    `party-<i>/ca.pem` gain the new CA, `certs/party-<index>.pem` is copied everywhere, the roster gets
    the entry (identity key and chain address come with `cluster roster`, which then copies the
    complete roster to every party directory), and `bundle/party-<index>/` holds the new host's files.
    """
    bundle = Path(bundle)
    roster = Roster.load(bundle / ROSTER)
    if index in roster.indices():
        raise UserError(f"--party: party {index} is already in {bundle / ROSTER}")
    if len(roster.parties) >= MAX_CLUSTER_PARTIES:
        raise UserError(f"the cluster already has {MAX_CLUSTER_PARTIES} parties")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    split_address(address, f"--host {host} --port {port}")
    ca = ClusterCA(f"{roster.cluster.name} party {index}", days)
    cert = ca.issue_party(index, host)
    cn = party_cn(index)
    grown = replace(roster, parties=(*roster.parties, PartyEntry(index, cn, address, f"certs/{cn}.pem")))
    grown.validate()
    party_dir = bundle / cn
    if party_dir.exists():
        raise UserError(f"{party_dir}: exists; add-party never overwrites a bundle")
    (bundle / "certs" / f"{cn}.pem").write_bytes(cert.cert_pem)
    _append(bundle / "ca.pem", ca.cert_pem)
    for p in roster.parties:
        old_dir = bundle / party_cn(p.index)
        if old_dir.is_dir():
            _append(old_dir / "ca.pem", ca.cert_pem)
            (old_dir / "certs" / f"{cn}.pem").write_bytes(cert.cert_pem)
    (party_dir / "certs").mkdir(parents=True)
    (party_dir / "ca.pem").write_bytes((bundle / "ca.pem").read_bytes())
    (party_dir / "party.pem").write_bytes(cert.cert_pem)
    write_private(party_dir / "party.key", cert.key_pem)
    for pem in (bundle / "certs").iterdir():
        (party_dir / "certs" / pem.name).write_bytes(pem.read_bytes())
    grown.write(bundle / ROSTER)
    grown.write(party_dir / ROSTER_TEMPLATE)
    return ClusterBundle(bundle, Roster.load(bundle / ROSTER))


def _append(path: Path, pem: bytes) -> None:
    data = path.read_bytes()
    path.write_bytes(data + (b"" if data.endswith(b"\n") else b"\n") + pem)
