"""Certificate rotation without an outage: a new cluster CA and party certificates, rolled out in three
phases, each one party restart at a time (with t < n the keyring keeps signing throughout).

`rotate_cluster(old, out)` reads the master bundle `cluster init` wrote (`old/roster.toml`, `old/ca.pem`,
`old/certs/`) and writes, per party i:

    out/phase1-trust/party-<i>/    ca.pem = new CA + old CA; certs/party-<j>.pem = old + new certificate
    out/phase2-switch/party-<i>/   party.pem, party.key: party i's new certificate and key (0600)
    out/phase3-final/party-<i>/    ca.pem = new CA only; certs/ = new certificates only

plus `out/roster.toml`, `out/ca.pem` and `out/certs/` (the final state, for the next rotation).

Why three phases: a party trusts one set of CAs and pins one set of certificates per peer (the roster's
file; transport.py accepts any certificate in it). A party that switched to its new certificate before
its peers trusted the new CA would be refused by them. So first every party trusts both (phase 1),
then each presents its new certificate (phase 2), then the old CA and certificates are dropped
(phase 3). Identity keys, chain addresses, the keyring and the roster file itself do not change: only
the TLS layer does. The new CA's private key is discarded, as in `cluster init`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from appliance.cluster.bundle import ROSTER, write_private
from appliance.cluster.ca import DEFAULT_DAYS, ClusterCA, party_cn
from appliance.rules.roster import Roster, split_address
from appliance.runtime.errors import UserError

PHASES = ("phase1-trust", "phase2-switch", "phase3-final")


@dataclass(frozen=True)
class Rotation:
    out: Path
    roster: Roster

    def phase_dir(self, phase: str, index: int) -> Path:
        return self.out / phase / party_cn(index)


def rotate_cluster(old: str | Path, out: str | Path, days: int = DEFAULT_DAYS) -> Rotation:
    """Issue a new CA and party certificates for the cluster of bundle `old`; write the three phases."""
    old, out = Path(old), Path(out)
    roster = Roster.load(old / ROSTER).require_complete()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty directory; rotation never overwrites a bundle")
    old_ca = _read(roster.ca_path, "the old cluster CA")
    old_certs = {p.index: _read(roster.tls_cert_path(p.index), f"{p.name}'s old certificate") for p in roster.parties}
    ca = ClusterCA(f"{roster.cluster.name} {time.strftime('%Y%m%d%H%M%S', time.gmtime())}", days)
    issued = {p.index: ca.issue_party(p.index, split_address(p.address, f"{p.name}.address")[0])
              for p in roster.parties}
    both = {i: old_certs[i] + issued[i].cert_pem for i in issued}
    new = {i: issued[i].cert_pem for i in issued}
    for p in roster.parties:
        _write_trust(out / PHASES[0] / party_cn(p.index), ca.cert_pem + old_ca, both, roster)
        switch = out / PHASES[1] / party_cn(p.index)
        switch.mkdir(parents=True)
        (switch / "party.pem").write_bytes(issued[p.index].cert_pem)
        write_private(switch / "party.key", issued[p.index].key_pem)
        _write_trust(out / PHASES[2] / party_cn(p.index), ca.cert_pem, new, roster)
    _write_trust(out, ca.cert_pem, new, roster)
    return Rotation(out, Roster.load(out / ROSTER))


def _write_trust(directory: Path, ca_pem: bytes, certs: dict[int, bytes], roster: Roster) -> None:
    """ca.pem, certs/party-<j>.pem under the roster's own relative paths, and the roster."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / roster.cluster.ca).write_bytes(ca_pem)
    for p in roster.parties:
        path = directory / p.tls_cert
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(certs[p.index])
    roster.write(directory / ROSTER)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{what} {path}: {exc.strerror}") from None
