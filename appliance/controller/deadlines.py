"""Request deadlines (`mpc_btl`) from the queries that report them.

zrChain's KeyRequests list leaves `mpc_btl` empty; only KeyRequestByID fills it (SignatureRequests
fills it in both). A controller that read the list alone would see every key request as having no
deadline: its near-timeout guard, its near-timeout gauge and the attempt clock (anchored at
mpc_btl - default_btl) would all silently break. A request's deadline never changes, so it is asked
for once per request and remembered.
"""

from __future__ import annotations

from typing import Any

from chain_client.client import ChainClient


class Deadlines:
    """`mpc_btl` of each open request: from its list entry when filled, else from the by-id query."""

    def __init__(self, chain: ChainClient) -> None:
        self.chain = chain
        self._known: dict[tuple[str, int], int] = {}

    def of(self, kind: str, request: Any) -> int:
        """The request's deadline height; 0 only if the chain itself reports none."""
        tag = (kind, request.id)
        if request.mpc_btl:
            if tag not in self._known:
                self._known[tag] = request.mpc_btl  # so `known` can answer for jobs of this request
            return request.mpc_btl
        if tag not in self._known:
            found = self.chain.key_request(request.id) if kind == "key" else self.chain.sign_request(request.id)
            if found is None or not found.mpc_btl:
                return 0  # not remembered: a later tick asks again
            self._known[tag] = found.mpc_btl
        return self._known[tag]

    def known(self, kind: str, request_id: int) -> int:
        """The deadline `of` last found for this request (0 if none): for code that holds a job, not
        the request (the scheduler orders jobs by it)."""
        return self._known.get((kind, request_id), 0)

    def forget(self, open_tags: set[tuple[str, int]]) -> None:
        """Drop requests that are no longer open (the dict stays as small as the backlog)."""
        for tag in [t for t in self._known if t not in open_tags]:
            del self._known[tag]
