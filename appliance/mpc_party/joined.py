"""Signatures this party made in sessions a peer opened, for its own controller to post at once.

Why. A party joins a peer's signing session on the peer's hello (join.py), often for a request its
own controller never queued (under a backlog each controller sheds by its own queue). The signature
is then made on both sides, but only the opener's controller holds it: the joiner's controller learnt
it only after the opener's post landed on chain (request PARTIAL), listed it and posted a tx of its
own, two tx round trips after the session ended. Under 3x overload that was the largest share of
signing sessions wasted: 77 of 83 requests that got a session and still timed out had exactly one
poster (docs/performance.md, "Joined sessions post at once").

What. The daemon notes each signature made in a joined session here, in memory, numbered in order;
the controller reads what is new since its cursor once per tick (local_api `Joined`), verifies each
against the request on chain and posts it with its next tx, as the session's partner. Nothing here
is secret (a signature is public once posted) and nothing is durable: after a restart of the daemon
(a new `boot`) the controller starts again from 0, and a signature older than the window is still
found the slow way (from the chain, `_adopt_posted_signature`).
"""

from __future__ import annotations

import secrets
import threading
from collections import deque

KEPT = 4096  # joined signatures kept for the controller (a few minutes of a backlog)
MAX_ANSWER = 512  # entries per answer: the controller asks again from the cursor for the rest


class JoinedSignatures:
    """An append-only, bounded, numbered log of (request id, signature)."""

    def __init__(self, kept: int = KEPT) -> None:
        self.boot = secrets.token_hex(8)  # names this daemon run: a new one resets every reader's cursor
        self._entries: deque[tuple[int, int, bytes]] = deque(maxlen=kept)  # (number, request id, signature)
        self._next = 0
        self._lock = threading.Lock()

    def add(self, request_id: int, signature: bytes) -> None:
        with self._lock:
            self._entries.append((self._next, request_id, bytes(signature)))
            self._next += 1

    def since(self, after: int, limit: int = MAX_ANSWER) -> tuple[str, int, list[tuple[int, bytes]]]:
        """(boot, the cursor to ask with next, the entries numbered `after` and later, at most `limit`):
        local_api's `Joined` answer."""
        with self._lock:
            found = [(rid, sig) for number, rid, sig in self._entries if number >= after][:limit]
            first = self._entries[0][0] if self._entries else self._next
        return self.boot, min(max(after, first) + len(found), self._next), found
