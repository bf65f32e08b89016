"""`Hsm`: the small typed surface the rest of zrkeyring uses.

Every method is a blocking wrapper around a future run on the process's HSM worker thread; `submit`
hands out the future itself (wrap it with `asyncio.wrap_future` in async code).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import TokenFlag

from appliance.hsm import seal as _seal
from appliance.hsm import signing as _signing
from appliance.hsm.config import HsmConfig, read_pin
from appliance.hsm.provision import (
    ALL_KEYS,
    REQUIRED_MECHANISMS,
    check_mechanisms,
    keys_present,
    mechanism_name,
    provision,
)
from appliance.hsm.token import TokenLink
from appliance.hsm.worker import HsmWorker
from appliance.runtime.logs import register_secret
from chain_client.address import account_address


@dataclass
class HsmStatus:
    """What `zrkeyring hsm status` reports; holds no secret."""

    module: str
    library: str
    token_label: str
    token_serial: str
    token_model: str
    token_manufacturer: str
    pin_count_low: bool
    mechanisms_present: list[str] = field(default_factory=list)
    mechanisms_missing: list[str] = field(default_factory=list)
    keys: dict[str, bool] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.mechanisms_missing and all(self.keys.values())

    def lines(self) -> list[str]:
        out = [
            f"module:      {self.module} ({self.library})",
            f"token:       {self.token_label!r} serial {self.token_serial} "
            f"({self.token_manufacturer} {self.token_model})",
        ]
        if self.pin_count_low:
            out.append("warning:     the token reports failed user logins (CKF_USER_PIN_COUNT_LOW)")
        out.append("mechanisms:  present " + ", ".join(self.mechanisms_present))
        out.append("             missing " + (", ".join(self.mechanisms_missing) or "none"))
        for label, present in self.keys.items():
            out.append(f"key:         {label}: {'present' if present else 'MISSING'}")
        out.append("ready:       " + ("yes" if self.ready else "no (run `zrkeyring hsm init`)"))
        return out


def _status(link: TokenLink, required: tuple[Any, ...]) -> HsmStatus:
    token = link.token
    present = token.slot.get_mechanisms()
    lib = link.worker.lib
    return HsmStatus(
        module=link.worker.module,
        library=f"{lib.manufacturer_id} {lib.library_description}".strip(),
        token_label=token.label,
        token_serial=token.serial.decode("ascii", "replace"),
        token_model=token.model,
        token_manufacturer=token.manufacturer_id,
        pin_count_low=bool(token.flags & TokenFlag.USER_PIN_COUNT_LOW),
        mechanisms_present=[mechanism_name(m) for m in required if m in present],
        mechanisms_missing=[mechanism_name(m) for m in required if m not in present],
        keys=keys_present(link),
    )


def _check_token(link: TokenLink, required: tuple[Any, ...]) -> None:
    check_mechanisms(link.token.slot.get_mechanisms(), required)


class Hsm:
    """A party's HSM: seal/unseal shares, sign with the identity and chain keys, draw randomness."""

    def __init__(self, link: TokenLink) -> None:
        self._link = link
        self._chain_pub: bytes | None = None
        self._identity_pub: bytes | None = None

    @classmethod
    def open(cls, config: HsmConfig, required_mechanisms: tuple[Any, ...] = REQUIRED_MECHANISMS) -> Hsm:
        """Load the module, find the token, log in, and check the mechanisms this layer needs."""
        return cls.connect(config.module, config.token_label, read_pin(config), required_mechanisms)

    @classmethod
    def connect(
        cls,
        module: str,
        token_label: str,
        pin: str,
        required_mechanisms: tuple[Any, ...] = REQUIRED_MECHANISMS,
    ) -> Hsm:
        """Like `open`, with the PIN given directly (tests, demo)."""
        link = TokenLink(HsmWorker.for_module(module), token_label, pin)
        try:
            link.call(_check_token, required_mechanisms)
        except BaseException:
            link.worker.call(link.close)
            raise
        return cls(link)

    def __repr__(self) -> str:
        return f"Hsm({self._link!r})"

    @property
    def token_label(self) -> str:
        return self._link.label

    @property
    def ready(self) -> bool:
        """False while the token is unusable and the link reconnects in the background (token.py)."""
        return self._link.ready

    def health(self) -> dict[str, Any]:
        """What the party's status reports about its HSM: ready, the last error, recoveries so far."""
        link = self._link
        return {"ready": link.ready, "error": link.last_error, "recoveries": link.recoveries}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Future for `fn(link, *args)` run on the worker, e.g. `hsm.submit(signing.sign_chain, d)`."""
        return self._link.submit(fn, *args)

    def close(self) -> None:
        """Log out and close the session."""
        self._link.worker.call(self._link.close)

    def __enter__(self) -> Hsm:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- keys --------------------------------------------------------------------------------------
    def provision(self) -> dict[str, str]:
        """Create any missing key; {label: "created" | "present"}. Safe to repeat."""
        return self._link.call(provision)

    def status(self, required_mechanisms: tuple[Any, ...] = REQUIRED_MECHANISMS) -> HsmStatus:
        return self._link.call(_status, required_mechanisms)

    def key_labels(self) -> list[str]:
        return [spec.label for spec in ALL_KEYS]

    # --- shares ------------------------------------------------------------------------------------
    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM under the token's sealing key; returns the versioned blob."""
        return self._link.call(_seal.seal, plaintext, aad)

    def unseal(self, blob: bytes, aad: bytes) -> bytes:
        """Open a blob sealed with the same AAD; raises SealError on any mismatch."""
        return self._link.call(_seal.unseal, blob, aad)

    def random(self, n: int) -> bytes:
        """`n` random bytes from the HSM RNG mixed with the OS RNG."""
        return self._link.call(_seal.mixed_random, n)

    # --- signatures --------------------------------------------------------------------------------
    def sign_identity(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) with the party identity key."""
        return self._link.call(_signing.sign_identity, message)

    def sign_chain(self, digest: bytes) -> bytes:
        """Low-S secp256k1 ECDSA r||s (64 bytes) over a 32-byte SHA-256 digest with the chain key."""
        return self._link.call(_signing.sign_chain, digest)

    def identity_public_key(self) -> bytes:
        if self._identity_pub is None:
            self._identity_pub = self._link.call(_signing.identity_public_key)
        return self._identity_pub

    def chain_public_key(self) -> bytes:
        if self._chain_pub is None:
            self._chain_pub = self._link.call(_signing.chain_public_key)
        return self._chain_pub

    def chain_address(self) -> str:
        """The party's zrChain account address (bech32 `zen1...`)."""
        return account_address(self.chain_public_key())


def open_hsm(config: HsmConfig) -> Hsm:
    """Log in to the token and keep its PIN out of every log line from here on."""
    hsm = Hsm.open(config)
    register_secret(read_pin(config))
    return hsm
