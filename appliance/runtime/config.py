"""TOML configuration loading with errors that name the bad field.

Each daemon describes its config sections as dataclasses; `load_section` checks every field's
presence and type against the dataclass annotations, so an operator's typo is reported as
`hsm.module: expected a string, got 3` rather than a traceback later.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from appliance.runtime.errors import ConfigError

T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax problems into ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_section(data: dict[str, Any], name: str, cls: type[T]) -> T:
    """Build dataclass `cls` from table `data[name]`, validating every field."""
    table = data.get(name)
    if table is None:
        raise ConfigError(f"[{name}]: section missing")
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: expected a table")
    return build(table, name, cls)


def build(table: dict[str, Any], prefix: str, cls: type[T]) -> T:
    """Build dataclass `cls` from `table`; `prefix` names the table in error messages."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown field (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for field_name, field in fields.items():
        key = f"{prefix}.{field_name}"
        if field_name not in table:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required field missing")
            continue
        values[field_name] = _check(table[field_name], hints[field_name], key)
    return cls(**values)


def _check(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        return _check(value, options[0], key)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return build(value, key, hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _TYPE_NAMES:
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {_TYPE_NAMES[hint]}, got {value!r}")
        return value
    return value
