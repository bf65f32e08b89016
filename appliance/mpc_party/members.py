"""Who holds a key, and with which threshold: read from this party's own active share.

A key is signed by a quorum of its own holders with its own threshold, not the roster's: while the
chain's keyring changes (a party added or removed, `party_threshold` raised), a key that is not
reshared yet keeps its old set and threshold, and one that is keeps the new ones. The share is the
authority — its public shares name every holder, and its threshold is bound in the store's AAD and
state tag — so nothing a peer or the controller says can widen the set.

Opening a share costs an HSM unseal; the holders of one (key, version) never change, so they are
kept per version and read again only after a commit gives the key a new one.
"""

from __future__ import annotations

import threading
from typing import Any

from appliance.hsm.store import ShareRecord, ShareStore, open_share_checked
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key


def share_holders(share: Any) -> list[int]:
    """The party ids a share's key is split among (DKLs23 public shares, FROST verification shares)."""
    return sorted(share.public_shares if isinstance(share, Dkls23Key) else share.verification_shares)


class KeyMembers:
    """(holders, threshold) of each key this party holds, cached per share version."""

    def __init__(self, store: ShareStore, sealer: Any, keyring: str, me: int) -> None:
        self.store, self.sealer, self.keyring, self.me = store, sealer, keyring, me
        self._lock = threading.Lock()
        self._cache: dict[tuple[bytes, int], tuple[tuple[int, ...], int]] = {}

    def of(self, public_key: bytes) -> tuple[tuple[int, ...], int] | None:
        """The key's holders and threshold from its active share here, or None if this party holds none."""
        record = self.store.active_by_public_key(self.keyring, bytes(public_key), self.me)
        return None if record is None else self.of_record(record)

    def of_record(self, record: ShareRecord) -> tuple[tuple[int, ...], int]:
        m = record.meta
        key = (bytes(m.group_public_key), m.share_version)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        share = dispatch.import_share(m.key_type, open_share_checked(self.sealer, record, m.group_public_key))
        found = (tuple(share_holders(share)), m.threshold)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != key[0]}  # older versions are gone
            self._cache[key] = found
        return found
