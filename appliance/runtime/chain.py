"""The `[chain]` table both daemons share: which chain, which nodes, how they are trusted, which keyring.

A party signs only what the chain asks for, so whoever can answer its chain queries can ask. The table
therefore says how an answer is authenticated (docs/chain-trust.md):

- `tls_ca`: a PEM file with the CA (or the node's own certificate) every endpoint's TLS certificate must
  chain to; `tls_server_name` overrides the name checked in it (default: the endpoint's host).
- `plaintext_loopback_ok = true` without `tls_ca`: plaintext gRPC, allowed only when every endpoint is a
  loopback address (a node on this host); the daemons log a warning at start. Plaintext to any other
  address is a config error, never a warning.
- `agree = k`: the party accepts a request only if k of the endpoints return identical request data
  (chain_client/agreement.py). With k = 1 the endpoints are failover alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from appliance.runtime.config import parse_port
from appliance.runtime.errors import ConfigError
from chain_client.client import ClientConfig, endpoint_host, is_loopback

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class ChainSection:
    """The `[chain]` table (shared with the controller); checked when it is built."""

    chain_id: str
    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:9090"])
    keyring: str = ""  # default: the roster's cluster.keyring
    tls_ca: str = ""  # PEM CA or node certificate to pin; "" = plaintext (loopback only, opt-in)
    tls_server_name: str = ""  # name the node certificate must carry ("" = the endpoint's host)
    plaintext_loopback_ok: bool = False  # allow plaintext when tls_ca is empty and every endpoint is loopback
    agree: int = 1  # endpoints that must return identical request data before the party contributes
    agree_wait_s: float = 3.0  # how long lagging endpoints may take to catch up before a refusal

    def __post_init__(self) -> None:
        self._check_endpoints()
        if not self.tls_ca:
            self._check_plaintext()
        elif self.plaintext_loopback_ok:
            raise ConfigError("chain.plaintext_loopback_ok: set together with chain.tls_ca; pick one "
                              "(with tls_ca every endpoint is TLS)")
        if not 1 <= self.agree <= len(self.endpoints):
            raise ConfigError(f"chain.agree: {self.agree} is not between 1 and the {len(self.endpoints)} "
                              "configured endpoint(s)")
        if self.agree_wait_s < 0:
            raise ConfigError(f"chain.agree_wait_s: {self.agree_wait_s} is negative")

    def _check_endpoints(self) -> None:
        if not self.endpoints:
            raise ConfigError("chain.endpoints: empty; list at least one zrChain gRPC endpoint (host:port)")
        for i, endpoint in enumerate(self.endpoints):
            try:
                endpoint_host(endpoint)
            except ValueError:
                raise ConfigError(f"chain.endpoints[{i}]: {endpoint!r} is not host:port"[:300]) from None
            parse_port(endpoint.rpartition(":")[2], f"chain.endpoints[{i}]", endpoint)
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ConfigError("chain.endpoints: an endpoint is listed twice (agreement needs distinct nodes)")

    def _check_plaintext(self) -> None:
        for i, endpoint in enumerate(self.endpoints):
            if not is_loopback(endpoint):
                raise ConfigError(f"chain.endpoints[{i}]: {endpoint} is not a loopback address and "
                                  "chain.tls_ca is not set; plaintext to the network lets anyone on the path "
                                  "answer as the chain (set chain.tls_ca to the node's CA)")
        if not self.plaintext_loopback_ok:
            raise ConfigError("chain.tls_ca: not set; pin the chain node's CA or certificate, or set "
                              "chain.plaintext_loopback_ok = true for a node on this host")

    def ca_pem(self) -> bytes:
        """The pinned PEM bytes (b"" for plaintext); a missing or non-PEM file is a ConfigError."""
        if not self.tls_ca:
            return b""
        try:
            pem = Path(self.tls_ca).read_bytes()
        except OSError as exc:
            raise ConfigError(f"chain.tls_ca: cannot read {self.tls_ca}: {exc.strerror}") from None
        if PEM_CERTIFICATE not in pem:
            raise ConfigError(f"chain.tls_ca: {self.tls_ca} holds no PEM certificate")
        return pem

    def client_config(self, **overrides: Any) -> ClientConfig:
        """One client over every endpoint (failover): the controller's and the tools' view."""
        return ClientConfig(endpoints=list(self.endpoints), chain_id=self.chain_id, tls_ca_pem=self.ca_pem(),
                            tls_server_name=self.tls_server_name, **overrides)

    def endpoint_configs(self, **overrides: Any) -> list[ClientConfig]:
        """One client config per endpoint, no failover: what the k-of-m reader asks separately."""
        base = self.client_config(**overrides)
        return [replace(base, endpoints=[endpoint], attempts=min(base.attempts, 2)) for endpoint in self.endpoints]
