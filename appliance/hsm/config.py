"""HSM configuration: the `[hsm]` TOML section and how the user PIN is obtained.

The PIN comes from a file, an environment variable or a systemd credential, never from argv: command
lines are visible to every user of the host through /proc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.runtime.config import load_section, read_toml
from appliance.runtime.errors import ConfigError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class HsmConfig:
    """Where the token is and how to log in. Exactly one of the three PIN sources must be set."""

    token_label: str
    module: str = DEFAULT_MODULE
    pin_file: str | None = None
    pin_env: str | None = None
    pin_credential: str | None = None

    def __post_init__(self) -> None:
        sources = [n for n in ("pin_file", "pin_env", "pin_credential") if getattr(self, n) is not None]
        if len(sources) != 1:
            found = ", ".join(sources) if sources else "none"
            raise ConfigError(f"hsm: set exactly one of pin_file, pin_env, pin_credential (found: {found})")
        if not self.token_label:
            raise ConfigError("hsm.token_label: must not be empty")

    def __repr__(self) -> str:  # the config holds no secret, but keep the PIN source explicit
        return f"HsmConfig(module={self.module!r}, token_label={self.token_label!r}, pin={self.pin_source})"

    @property
    def pin_source(self) -> str:
        """Human description of where the PIN is read from (never the PIN itself)."""
        if self.pin_file is not None:
            return f"file {self.pin_file}"
        if self.pin_env is not None:
            return f"environment variable {self.pin_env}"
        return f"systemd credential {self.pin_credential}"


def load_hsm_config(path: str | Path) -> HsmConfig:
    """Read the `[hsm]` section of a TOML config file."""
    return load_section(read_toml(path), "hsm", HsmConfig)


def read_pin(config: HsmConfig) -> str:
    """Fetch the user PIN from its configured source; a trailing newline in a file is dropped."""
    if config.pin_env is not None:
        pin = os.environ.get(config.pin_env)
        if pin is None:
            raise ConfigError(f"hsm.pin_env: environment variable {config.pin_env} is not set")
        return _nonempty(pin, "hsm.pin_env")
    if config.pin_file is not None:
        return _read_pin_file(Path(config.pin_file), "hsm.pin_file")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            "hsm.pin_credential: $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=)"
        )
    return _read_pin_file(Path(directory) / str(config.pin_credential), "hsm.pin_credential")


def _read_pin_file(path: Path, field: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{field}: PIN file {path} not found") from None
    except PermissionError:
        raise ConfigError(f"{field}: PIN file {path} not readable (permission denied)") from None
    return _nonempty(text.rstrip("\r\n"), field)


def _nonempty(pin: str, field: str) -> str:
    if not pin:
        raise ConfigError(f"{field}: the PIN is empty")
    return pin
