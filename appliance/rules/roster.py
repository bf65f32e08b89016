"""The cluster roster: who the parties are, where they listen, and which keys speak for them.

One TOML file, identical on every party host (compare `Roster.digest()` across hosts)::

    [cluster]
    name = "prod-eu"
    keyring = ""            # keyring address on chain, once registered
    threshold = 2
    ca = "ca.pem"           # cluster CA certificate, relative to this file

    [[party]]
    index = 1
    name = "party-1"
    address = "10.0.0.11:7001"
    identity_key = "…64 hex chars…"   # Ed25519, from `zrkeyring hsm init` on that host
    chain_address = "zen1…"
    tls_cert = "certs/party-1.pem"

`cluster init` writes it with empty identity keys and chain addresses; `cluster roster` fills them.
A roster with an empty entry loads (so tools can show it) but `require_complete()` refuses it, and the
party daemon must call that before it trusts anyone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.runtime.config import build, load_section, parse_port, read_toml
from appliance.runtime.errors import ConfigError
from chain_client.address import AddressError, address_bytes

IDENTITY_KEY_LEN = 32  # Ed25519 identity public key
MAX_INDEX = 0xFFFF  # party indices are u16 on the wire

ROSTER_DIGEST_DOMAIN = b"zrkeyring/roster/v1"


@dataclass(frozen=True)
class ClusterSection:
    name: str
    threshold: int
    ca: str = "ca.pem"
    keyring: str = ""


@dataclass(frozen=True)
class PartyEntry:
    index: int
    name: str
    address: str
    tls_cert: str
    identity_key: str = ""
    chain_address: str = ""

    def identity_key_bytes(self) -> bytes:
        return bytes.fromhex(self.identity_key)

    @property
    def complete(self) -> bool:
        return bool(self.identity_key and self.chain_address)


@dataclass(frozen=True)
class Roster:
    cluster: ClusterSection
    parties: tuple[PartyEntry, ...]
    base_dir: Path = Path(".")

    # --- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Roster:
        """Read and validate a roster file; errors name the field (`party[2].identity_key: …`)."""
        path = Path(path)
        data = read_toml(path)
        cluster = load_section(data, "cluster", ClusterSection)
        tables = data.get("party")
        if not isinstance(tables, list) or not tables:
            raise ConfigError(f"{path}: [[party]]: at least one party entry is required")
        parties = tuple(build(t, f"party[{i}]", PartyEntry) for i, t in enumerate(tables))
        roster = cls(cluster, parties, path.parent)
        roster.validate()
        return roster

    def validate(self) -> None:
        seen_index: set[int] = set()
        seen_name: set[str] = set()
        for i, p in enumerate(self.parties):
            key = f"party[{i}]"
            if not 1 <= p.index <= MAX_INDEX:
                raise ConfigError(f"{key}.index: must be 1..{MAX_INDEX}, got {p.index}")
            if p.index in seen_index:
                raise ConfigError(f"{key}.index: duplicate index {p.index}")
            if p.name in seen_name:
                raise ConfigError(f"{key}.name: duplicate name {p.name!r}")
            seen_index.add(p.index)
            seen_name.add(p.name)
            split_address(p.address, f"{key}.address")
            if p.identity_key:
                _check_identity_key(p.identity_key, f"{key}.identity_key")
            if p.chain_address:
                try:
                    address_bytes(p.chain_address)
                except AddressError as exc:
                    raise ConfigError(f"{key}.chain_address: {exc}") from None
        if not 1 <= self.cluster.threshold <= len(self.parties):
            raise ConfigError(
                f"cluster.threshold: must be 1..{len(self.parties)} (the number of parties), "
                f"got {self.cluster.threshold}"
            )

    def require_complete(self) -> Roster:
        """Refuse a roster in which some party has no identity key or chain address yet."""
        todo = [p.name for p in self.parties if not p.complete]
        if todo:
            raise ConfigError(
                f"roster incomplete: no identity_key/chain_address for {', '.join(todo)} "
                "(fill with `zrkeyring cluster roster`)"
            )
        return self

    # --- lookups ----------------------------------------------------------------------------------

    def party(self, index: int) -> PartyEntry:
        for p in self.parties:
            if p.index == index:
                return p
        raise ConfigError(f"party {index} is not in the roster (indices: {self.indices()})")

    def indices(self) -> list[int]:
        return [p.index for p in self.parties]

    def identity_keys(self) -> dict[int, bytes]:
        """Index -> Ed25519 public key for every filled entry: what the envelope gate trusts."""
        return {p.index: p.identity_key_bytes() for p in self.parties if p.identity_key}

    def path(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()

    @property
    def ca_path(self) -> Path:
        return self.path(self.cluster.ca)

    def tls_cert_path(self, index: int) -> Path:
        return self.path(self.party(index).tls_cert)

    # --- editing and writing ----------------------------------------------------------------------

    def with_party(self, index: int, **changes: Any) -> Roster:
        """A copy with one entry changed (validated)."""
        self.party(index)
        parties = tuple(replace(p, **changes) if p.index == index else p for p in self.parties)
        roster = replace(self, parties=parties)
        roster.validate()
        return roster

    def to_toml(self) -> str:
        lines = ["# zrkeyring cluster roster: identical on every party host (compare `cluster show`).", ""]
        lines += ["[cluster]", *_toml_fields(self.cluster.__dict__)]
        for p in self.parties:
            lines += ["", "[[party]]", *_toml_fields(p.__dict__)]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml())

    def digest(self) -> str:
        """SHA-256 over the canonical TOML and the bytes of the CA and of every party certificate it
        names: equal on two hosts means they trust the same parties with the same certificates.

        Why the files too: the TOML holds only their paths, so two hosts with bundles from different
        `cluster init` runs (the classic certificate mismatch) used to show equal digests. A file that
        cannot be read counts as "missing" (the digest still differs from a host that has it).
        """
        h = hashlib.sha256(ROSTER_DIGEST_DOMAIN + self.to_toml().encode())
        for name, path in [("ca", self.ca_path), *((p.name, self.path(p.tls_cert)) for p in self.parties)]:
            h.update(f"\n{name}:".encode())
            try:
                h.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                h.update(b"missing")
        return h.hexdigest()


def _toml_fields(values: dict[str, Any]) -> list[str]:
    # json.dumps of an ASCII string is a valid TOML basic string; ints print the same in both.
    return [f"{k} = {json.dumps(v)}" for k, v in values.items()]


def _check_identity_key(text: str, key: str) -> None:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{key}: not hex") from None
    if len(raw) != IDENTITY_KEY_LEN:
        raise ConfigError(f"{key}: expected {IDENTITY_KEY_LEN} bytes ({2 * IDENTITY_KEY_LEN} hex digits), "
                          f"got {len(raw)}")


def check_identity_key(text: str, key: str = "identity_key") -> str:
    """Validate a hex Ed25519 public key as typed by an operator; returns it lower-cased."""
    _check_identity_key(text, key)
    return text.lower()


def split_address(address: str, key: str = "address") -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port), with errors naming `key`."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: expected host:port, got {address!r}"[:300])
    port = parse_port(port_text, key, address)
    host = host.removeprefix("[").removesuffix("]")
    return host, port


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
