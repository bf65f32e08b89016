"""The version, read from the one place it is written: pyproject.toml's `[project] version`.

Why not a constant here: it was one, and after an upgrade `--version` and `zrkeyring_build_info` kept
the old number while the package had the new one. A source checkout (tests, `make demo`, an editable
install) reads pyproject.toml itself, since an editable install's metadata is only as fresh as the last
`pip install -e`; an installed package (the .deb's venv) reads its distribution metadata, which pip
wrote from that same pyproject.toml when it built the package.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

DISTRIBUTION = "zrkeyring"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@cache
def version() -> str:
    """This installation's version (read once)."""
    return read_version()


def read_version(pyproject: Path = PYPROJECT) -> str:
    """pyproject.toml's version in a checkout, else the installed distribution's, else "0+unknown"."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError):
        project = {}
    if project.get("name") == DISTRIBUTION and isinstance(project.get("version"), str):
        return project["version"]
    from importlib import metadata  # only when installed: it pulls in email and socket

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"
