"""Compare a party's share store with the chain's keys of its keyring.

Why: a party whose shares.sqlite was truncated, or restored from an older copy, started and reported
ok: nothing compared what it holds with what the chain says the keyring holds. The chain is the
reference (a key exists once the keyring fulfilled its request, and names its public key); a share is
matched to a key by that public key, since the store names keys by their keygen request id.

Kept apart from the commands (backup verify and restore use it; a key inventory can too). Inputs are
plain values: which shares a store holds is read by the caller (through the HSM-authenticated
`ShareStore`), which keys the chain holds by `keyring_keys`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HeldShare:
    """One active share a store holds, as far as the comparison needs it."""

    keyring: str
    request_id: int  # the store's key id: the keygen request that made it
    key_type: str
    public_key: bytes  # the group public key


@dataclass(frozen=True)
class ChainKey:
    key_id: int
    key_type: str
    public_key: bytes


@dataclass
class Comparison:
    matched: list[tuple[ChainKey, HeldShare]] = field(default_factory=list)
    missing: list[ChainKey] = field(default_factory=list)  # on chain, no share here: cannot sign with it
    unknown: list[HeldShare] = field(default_factory=list)  # here, not (yet) a key of the keyring on chain
    mismatched: list[tuple[ChainKey, HeldShare]] = field(default_factory=list)  # same key, other type

    @property
    def complete(self) -> bool:
        """Every chain key has a share of the right type here."""
        return not self.missing and not self.mismatched

    def as_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "matched": [k.key_id for k, _ in self.matched],
                "missing": [_key(k) for k in self.missing], "unknown": [_share(s) for s in self.unknown],
                "mismatched": [{"key": _key(k), "share": _share(s)} for k, s in self.mismatched]}

    def lines(self) -> list[str]:
        out = [f"{len(self.matched)} of {len(self.matched) + len(self.missing) + len(self.mismatched)} chain "
               "key(s) of the keyring have a share here"]
        out += [f"MISSING share of chain key {k.key_id} ({k.key_type}, {k.public_key.hex()})" for k in self.missing]
        out += [f"MISMATCH chain key {k.key_id} is {k.key_type}, the share says {s.key_type}"
                for k, s in self.mismatched]
        out += [f"share of request {s.request_id} ({s.key_type}, {s.public_key.hex()}) is not a key of the "
                "keyring on chain (yet)" for s in self.unknown]
        return out


def compare(shares: Iterable[HeldShare], chain_keys: Iterable[ChainKey], keyring: str) -> Comparison:
    """Match `shares` of `keyring` to `chain_keys` by public key."""
    result = Comparison()
    held = {s.public_key: s for s in shares if s.keyring == keyring}
    for key in sorted(chain_keys, key=lambda k: k.key_id):
        share = held.pop(key.public_key, None)
        if share is None:
            result.missing.append(key)
        elif share.key_type != key.key_type:
            result.mismatched.append((key, share))
        else:
            result.matched.append((key, share))
    result.unknown = sorted(held.values(), key=lambda s: s.request_id)
    return result


def keyring_keys(chain: Any, keyring: str) -> list[ChainKey]:
    """Every key of `keyring` on chain (the Keys query lists all workspaces; filtered here)."""
    return [ChainKey(k.id, k.type, bytes(k.public_key)) for k in chain.keys() if k.keyring_addr == keyring]


def held_shares(records: Iterable[Any], party_index: int) -> list[HeldShare]:
    """HeldShare of each active ShareRecord of this party (from `ShareStore.all_active()`)."""
    return [HeldShare(r.meta.keyring, r.meta.key_id, r.meta.key_type, bytes(r.meta.group_public_key))
            for r in records if r.meta.party_index == party_index]


def _key(key: ChainKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "key_type": key.key_type, "public_key": key.public_key.hex()}


def _share(share: HeldShare) -> dict[str, Any]:
    return {"request_id": share.request_id, "key_type": share.key_type, "public_key": share.public_key.hex()}
