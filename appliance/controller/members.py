"""Each key's signers come from its own holders and threshold, as the local party reports them.

While the chain's keyring changes, keys move one by one from the old membership to the new one
(two-phase resharing: docs/protocols/reshare.md), so the roster's party list and threshold are not
the signing set of every key. The local party knows, from its own authenticated share, who holds each
key and with which threshold (`Keys` on the local socket); every holder of the same version computes
the same quorum from the same data. A party that holds no share of a key (a party just added, before
the key is reshared to it) is in no quorum of it; it can still repeat a posted, verified signature.

The listing is read again when it is older than `max_age_s`, or at once (rate-limited) when a key is
not in it, so a commit elsewhere is seen within a tick or two.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("zrkeyring.controller.members")

MAX_AGE_S = 2.0
MISS_RETRY_S = 1.0


class KeyMembers:
    """public key -> (holders, threshold) of this party's active share, from the local party daemon."""

    def __init__(self, party: Any, max_age_s: float = MAX_AGE_S, clock: Any = time.monotonic) -> None:
        self.party, self.max_age_s, self.clock = party, max_age_s, clock
        self._known: dict[bytes, tuple[tuple[int, ...], int]] = {}
        self._read_at = float("-inf")

    def of(self, public_key: bytes) -> tuple[tuple[int, ...], int] | None:
        """The key's holders and threshold, or None when this party holds no share of it."""
        age = self.clock() - self._read_at
        if age >= self.max_age_s or (bytes(public_key) not in self._known and age >= MISS_RETRY_S):
            self._read()
        return self._known.get(bytes(public_key))

    def _read(self) -> None:
        self._read_at = self.clock()
        try:
            listing = self.party.keys()
        except Exception as exc:  # the party is restarting: keep the last listing until it answers
            log.warning("cannot list the local party's keys: %s", exc)
            return
        self._known = {bytes.fromhex(k["public_key"]): (tuple(k["parties"]), int(k["threshold"]))
                       for k in listing if k.get("parties")}
