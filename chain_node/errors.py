"""Transaction errors with Cosmos-style (codespace, code) pairs, so clients see what a real node says."""

from __future__ import annotations

SDK = "sdk"
IDENTITY = "identity"
TREASURY = "treasury"

# Cosmos SDK error codes (codespace "sdk") the node uses.
TX_DECODE = 2
UNAUTHORIZED = 4
INSUFFICIENT_FUNDS = 5
UNKNOWN_REQUEST = 6
INVALID_ADDRESS = 7
INVALID_PUBKEY = 8
UNKNOWN_ADDRESS = 9
INVALID_REQUEST = 18
OUT_OF_GAS = 11
INSUFFICIENT_FEE = 13
TX_IN_MEMPOOL = 19
MEMPOOL_FULL = 20
TX_TIMEOUT_HEIGHT = 30
WRONG_SEQUENCE = 32


class TxError(Exception):
    """A transaction or message was refused; `log` becomes the TxResponse raw_log."""

    def __init__(self, code: int, log: str, codespace: str = SDK) -> None:
        super().__init__(log)
        self.code = code
        self.codespace = codespace
        self.log = log


def identity_error(log: str) -> TxError:
    return TxError(2, log, IDENTITY)


def treasury_error(log: str) -> TxError:
    return TxError(2, log, TREASURY)
