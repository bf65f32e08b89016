"""Genesis file: chain id, module parameters and funded accounts (TOML or JSON).

Example (TOML):

    chain_id = "zrkeyring-dev-1"
    [params]
    default_btl = 20          # blocks before an unanswered request times out
    min_gas_price = 0.0025    # urock per unit of gas; fee must be >= gas_limit * min_gas_price
    [[accounts]]
    address = "zen1..."
    balance = 1000000000000   # urock
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.runtime.config import build
from appliance.runtime.errors import ConfigError
from chain_client.address import AddressError, address_bytes


@dataclass
class Params:
    default_btl: int = 20
    min_gas_price: float = 0.0025
    max_block_txs: int = 5000
    max_tx_bytes: int = 1_048_576  # CometBFT mempool max_tx_bytes (its default)
    max_mempool_bytes: int = 64 * 1_048_576  # CometBFT max_txs_bytes (1 GiB upstream; a dev node holds less)
    max_memo_characters: int = 256  # x/auth param, the SDK default
    # Dev only: serve /zrkeyring.dev.Admin/ChainSignTransactionRequest, which makes the node create a
    # signature request itself at the end of the next block, as zrChain's validation module does.
    dev_chain_requests: bool = False


@dataclass
class GenesisAccount:
    address: str
    balance: int


@dataclass
class Genesis:
    chain_id: str
    params: Params = field(default_factory=Params)
    accounts: list[GenesisAccount] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def load_genesis(path: str | Path) -> Genesis:
    """Read and check a genesis file; JSON when the name ends in .json, TOML otherwise."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read genesis file ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    genesis = build(data, "genesis", Genesis)
    if not genesis.chain_id:
        raise ConfigError("genesis.chain_id: must not be empty")
    for i, account in enumerate(genesis.accounts):
        try:
            address_bytes(account.address)
        except AddressError as exc:
            raise ConfigError(f"genesis.accounts[{i}].address: {exc}") from None
        if account.balance < 0:
            raise ConfigError(f"genesis.accounts[{i}].balance: must not be negative")
    if genesis.params.default_btl <= 0:
        raise ConfigError("genesis.params.default_btl: must be positive")
    for name in ("max_block_txs", "max_tx_bytes", "max_mempool_bytes", "max_memo_characters"):
        if getattr(genesis.params, name) <= 0:
            raise ConfigError(f"genesis.params.{name}: must be positive")
    return genesis
