"""The `[chain]` table both daemons share: which chain, which nodes, which keyring."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chain_client.client import ClientConfig


@dataclass(frozen=True)
class ChainSection:
    """The `[chain]` table (shared with the controller)."""

    chain_id: str
    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:9090"])
    keyring: str = ""  # default: the roster's cluster.keyring

    def client_config(self, **overrides: Any) -> ClientConfig:
        return ClientConfig(endpoints=list(self.endpoints), chain_id=self.chain_id, **overrides)
