"""What this party's answers cost on chain, and how many of them its account can pay for.

zrChain charges every fulfilment to the *posting party* (treasury `SplitKeyringFee` from `msg.Creator`):
a key fulfilment pays the keyring's `key_req_fee`, every signature post (a rejection too) its
`sig_req_fee`; a key rejection pays nothing. On top, each transaction pays its own gas fee. A party
that cannot pay fails its whole transaction, so the controller posts only a prefix of its ready
answers that the balance covers and lets the rest wait (kept in the journal, never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

UNLIMITED = 10**9  # "answers affordable" when answers and transactions cost nothing


@dataclass(frozen=True)
class Fees:
    """The keyring's per-answer fees and this controller's fee per transaction, in urock."""

    key_req_fee: int
    sig_req_fee: int
    tx_fee: int

    def answer(self, kind: str, reject: bool) -> int:
        """Fee the chain takes from the poster for one answer (`kind` is the journal's "key"/"sign")."""
        if kind == "key":
            return 0 if reject else self.key_req_fee
        return self.sig_req_fee

    def cost(self, answers: list[tuple[str, bool]], per_tx: int) -> int:
        """Everything `answers` cost when posted in transactions of at most `per_tx` answers."""
        if not answers:
            return 0
        txs = -(-len(answers) // per_tx)
        return txs * self.tx_fee + sum(self.answer(kind, reject) for kind, reject in answers)

    def affordable_prefix(self, answers: list[tuple[str, bool]], balance: int) -> int:
        """How many of `answers`, in order and in one transaction, `balance` pays for (0: none)."""
        spent, count = self.tx_fee, 0
        if spent > balance:
            return 0
        for kind, reject in answers:
            spent += self.answer(kind, reject)
            if spent > balance:
                break
            count += 1
        return count

    def answers_affordable(self, balance: int, per_tx: int) -> int:
        """How many more answers `balance` pays for at the dearer of the two fees, `per_tx` per
        transaction: the number the low-funds alert watches (capped at UNLIMITED)."""
        per_answer = max(self.key_req_fee, self.sig_req_fee)
        batch = per_tx * per_answer + self.tx_fee
        if batch <= 0:
            return UNLIMITED
        full, rest = divmod(max(balance, 0), batch)
        extra = 0
        if rest >= self.tx_fee:
            extra = per_tx - 1 if per_answer == 0 else min(per_tx - 1, (rest - self.tx_fee) // per_answer)
        return min(UNLIMITED, full * per_tx + extra)
