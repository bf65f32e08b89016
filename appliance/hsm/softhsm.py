"""Throwaway SoftHSM2 tokens for tests, the demo and benchmarks (never for production keys).

Each token directory gets its own `softhsm2.conf`; nothing touches /etc/softhsm or /var/lib/softhsm.
SoftHSM reads `SOFTHSM2_CONF` at C_Initialize, and python-pkcs11 loads a module once per process, so
a process works with ONE token directory: set `os.environ["SOFTHSM2_CONF"]` (see `activate`) before the
first HSM call and put all of that process's tokens in the same directory. Tokens created later by
`softhsm2-util` are picked up because `TokenLink` re-initialises the module when a label is not found.
Subprocesses get the right directory through `SoftHsmToken.env`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised SoftHSM token and everything needed to reach it (PINs included: test use only)."""

    module: str
    label: str
    user_pin: str
    so_pin: str
    conf_path: Path
    token_dir: Path
    env: dict[str, str]

    def __repr__(self) -> str:  # keep PINs out of pytest output and logs
        return f"SoftHsmToken(label={self.label!r}, conf={str(self.conf_path)!r})"


def make_token_dir(root: Path) -> Path:
    """Create `root/tokens` and `root/softhsm2.conf` pointing at it; returns the conf path."""
    root = Path(root)
    token_dir = root / "tokens"
    token_dir.mkdir(parents=True, exist_ok=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    return conf


def activate(conf: Path) -> None:
    """Point this process's SoftHSM at `conf` (takes effect at the next C_Initialize)."""
    os.environ["SOFTHSM2_CONF"] = str(conf)


@contextmanager
def activated(conf: Path) -> Iterator[Path]:
    """`activate(conf)` for the duration of a block, then restore the previous SOFTHSM2_CONF."""
    previous = os.environ.get("SOFTHSM2_CONF")
    activate(conf)
    try:
        yield Path(conf)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def init_token(conf: Path, label: str | None = None, user_pin: str | None = None) -> SoftHsmToken:
    """Initialise a new token in the directory named by `conf` with softhsm2-util."""
    label = label or f"zrk-{secrets.token_hex(6)}"
    user_pin = user_pin or f"upin-{secrets.token_hex(8)}"
    so_pin = f"sopin-{secrets.token_hex(8)}"
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    command = ["softhsm2-util", "--init-token", "--free", "--label", label]
    # softhsm2-util takes PINs only as arguments; this is a throwaway test token, never a real one.
    result = subprocess.run(
        [*command, "--so-pin", so_pin, "--pin", user_pin], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"softhsm2-util --init-token failed: {result.stderr.strip() or result.stdout}")
    token_dir = Path(_token_dir_of(conf))
    return SoftHsmToken(SOFTHSM_MODULE, label, user_pin, so_pin, Path(conf), token_dir, env)


def _token_dir_of(conf: Path) -> str:
    for line in Path(conf).read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "directories.tokendir":
            return value.strip()
    raise RuntimeError(f"{conf}: no directories.tokendir line")


def write_hsm_config(token: SoftHsmToken, directory: Path, pin_via: str = "file") -> Path:
    """Write `hsm.toml` (+ a 0600 PIN file) for `token` in `directory`; returns the TOML path.

    `pin_via="env"` names the variable ZRKEYRING_HSM_PIN instead; the caller must set it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[hsm]", f'module = "{token.module}"', f'token_label = "{token.label}"']
    if pin_via == "file":
        pin_file = directory / f"{token.label}.pin"
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token.user_pin + "\n")
        lines.append(f'pin_file = "{pin_file}"')
    elif pin_via == "env":
        lines.append('pin_env = "ZRKEYRING_HSM_PIN"')
    else:
        raise ValueError(f"pin_via must be 'file' or 'env', not {pin_via!r}")
    config = directory / f"{token.label}.toml"
    config.write_text("\n".join(lines) + "\n")
    return config
