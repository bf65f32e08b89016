"""Errors the chain client raises: a refused transaction carries the node's own words."""

from __future__ import annotations

import re

_SIMULATE_DETAIL = re.compile(r"\(codespace (\w*), code (\d+)\)$")


class ChainError(Exception):
    """Base class for chain client failures."""


class ChainUnavailable(ChainError):
    """No configured node answered (after retries and failover)."""


class ChainTxError(ChainError):
    """The node refused a transaction (CheckTx) or it failed in a block; `raw_log` is the node's message."""

    def __init__(self, code: int, codespace: str, raw_log: str, txhash: str = "", height: int = 0) -> None:
        where = f" in block {height}" if height else ""
        label = txhash[:12] or "?"
        super().__init__(f"tx {label} failed{where}: {raw_log} (codespace {codespace}, code {code})")
        self.code = code
        self.codespace = codespace
        self.raw_log = raw_log
        self.txhash = txhash
        self.height = height

    @classmethod
    def from_response(cls, response) -> ChainTxError:  # a cosmos TxResponse
        return cls(response.code, response.codespace, response.raw_log, response.txhash, response.height)

    @classmethod
    def from_simulate_detail(cls, detail: str) -> ChainTxError:
        """Simulate reports failures as a gRPC error; our node appends "(codespace X, code N)"."""
        match = _SIMULATE_DETAIL.search(detail)
        if match:
            return cls(int(match.group(2)), match.group(1), detail[: match.start()].strip())
        return cls(0, "", detail)


# Codes of the Cosmos ante handler: when a tx fails with one of these, the cached sequence is suspect.
ANTE_CODES = frozenset({4, 5, 9, 11, 13, 32})
WRONG_SEQUENCE = 32
TX_IN_CACHE = 19


class ChainDisagreement(ChainError):
    """Fewer than k of the configured chain endpoints returned identical data (chain_client/agreement.py).

    The message names every endpoint with its height and answer; `differing` names the fields that
    differed ("existence" when some said absent). `decided` is True when k endpoints did agree and the
    disagreement was only reported.
    """

    def __init__(self, message: str, endpoints: list[str], differing: list[str], decided: bool = False) -> None:
        super().__init__(message)
        self.endpoints = endpoints
        self.differing = differing
        self.decided = decided
