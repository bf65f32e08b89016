"""Transaction errors with Cosmos-style (codespace, code) pairs, so clients see what a real node says."""

from __future__ import annotations

SDK = "sdk"
UNDEFINED = "undefined"  # the codespace of a recovered panic
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
INVALID_COINS = 10
INVALID_REQUEST = 18
OUT_OF_GAS = 11
MEMO_TOO_LARGE = 12
INSUFFICIENT_FEE = 13
TX_IN_MEMPOOL = 19
MEMPOOL_FULL = 20
TX_TOO_LARGE = 21
TX_TIMEOUT_HEIGHT = 30
WRONG_SEQUENCE = 32
PANIC = 111222  # errors.ErrPanic: baseapp recovers a panicking message into this


class TxError(Exception):
    """A transaction or message was refused; `log` becomes the TxResponse raw_log."""

    def __init__(self, code: int, log: str, codespace: str = SDK) -> None:
        super().__init__(log)
        self.code = code
        self.codespace = codespace
        self.log = log


# x/identity's registered errors (types/errors.go); errorsmod.Wrapf(err, text) logs "text: <err>".
IDENTITY_NOT_FOUND = (1503, "not found")
IDENTITY_INVALID_ARGUMENT = (1505, "invalid argument")
IDENTITY_INACTIVE = (1507, "inactive")


def identity_error(log: str, registered: tuple[int, str] | None = None) -> TxError:
    """An identity refusal: a plain error (code 2 here) or one of the module's registered errors."""
    if registered is None:
        return TxError(2, log, IDENTITY)
    code, text = registered
    return TxError(code, f"{log}: {text}", IDENTITY)


def treasury_error(log: str) -> TxError:
    return TxError(2, log, TREASURY)


def panic_error(exc: BaseException) -> TxError:
    """What baseapp's runTx makes of a panic: the tx fails with ErrPanic and nothing it did is kept.

    A bug or an unchecked value in one message must cost that transaction, never the block.
    """
    return TxError(PANIC, f"recovered: {type(exc).__name__}: {exc}: panic", UNDEFINED)
