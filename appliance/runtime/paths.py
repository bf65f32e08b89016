"""Directories the daemons write to, checked up front so a wrong owner is one clear error, not a traceback.

Why: the operator hit `PermissionError` tracebacks from `mkdir` (a data_dir whose parent is root-owned),
from the gRPC unix-socket bind (/run/zrkeyring missing outside systemd, or not writable) and from SQLite.
Each error here names the config field, the path, the user we run as, and the command that fixes it.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from appliance.runtime.errors import UserError


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _fix(path: Path) -> str:
    return f"create it as root: install -d -o {_user()} -m 0750 {path}"


def ensure_dir(path: str | Path, field: str) -> Path:
    """`path` as an existing directory this process can write to (created with its parents if missing)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{field}: cannot create {path}: {exc.strerror or exc} (running as {_user()}); "
                        f"{_fix(path)}") from None
    if not path.is_dir():
        raise UserError(f"{field}: {path} exists but is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{field}: {path} is not writable by {_user()}; chown it to that user or {_fix(path)}")
    return path
