"""Which ready answers go into the next fulfilment tx, and the tx's timeout height.

zrChain (x/treasury keeper, FulfilSignatureRequest / FulfilKeyRequest) refuses an answer to a request
that is no longer PENDING or PARTIAL with an error, and a Cosmos tx is atomic: one answer to a request
that timed out before the tx was included fails every other answer in the tx. The chain times a
request out at the first block whose height exceeds its `mpc_btl` (BeginBlock,
CheckForSignatureMPCTimeouts), so an answer included at height h lands only if h <= mpc_btl.

Two rules make that impossible instead of unlikely:
- an answer is left out when its request's `mpc_btl` is closer than `margin` blocks to the current
  height (it would most likely miss; it is counted as shed, and the chain will time the request out);
- the tx's `timeout_height` is at most the smallest `mpc_btl` of the answers it carries: Cosmos
  refuses a tx in any block above its timeout height, so the tx lands while every one of its answers
  is still open, or not at all (then its answers are re-planned like any expired tx's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PostPlan:
    answers: list[Any]  # journal entries to post, in the order given
    expiring: list[Any]  # entries left out: their request times out before a tx could land
    deadlines: dict[tuple[str, int], int]
    height: int
    tx_timeout_blocks: int

    def timeout_height(self, chosen: Sequence[Any]) -> int:
        """The tx's timeout height: the usual bound, lowered to the earliest deadline it carries."""
        bound = self.height + self.tx_timeout_blocks
        for entry in chosen:
            deadline = self.deadlines.get((entry.kind, entry.request_id), 0)
            if deadline:
                bound = min(bound, deadline)
        return bound


def answers_to_post(ready: Sequence[Any], deadlines: dict[tuple[str, int], int], height: int, margin: int,
                    tx_timeout_blocks: int) -> PostPlan:
    """Split ready answers (journal entries with `kind` and `request_id`) into those worth posting now
    and those whose request expires within `margin` blocks. A deadline of 0 (none reported) never
    expires here."""
    answers, expiring = [], []
    for entry in ready:
        deadline = deadlines.get((entry.kind, entry.request_id), 0)
        (expiring if deadline and deadline < height + margin else answers).append(entry)
    return PostPlan(answers, expiring, deadlines, height, tx_timeout_blocks)
