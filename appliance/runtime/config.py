"""TOML configuration loading with errors that name the bad field.

Each daemon describes its config sections as dataclasses; `load_section` checks every field's
presence and type against the dataclass annotations, so an operator's typo is reported as
`hsm.module: expected a string, got 3` rather than a traceback later.

Ranges are checked here too, because a config value ends up in places that choke or misbehave on it:
an integer outside 0..2^63-1 (or a field's own `bounded(...)` range), a float that is NaN, infinite or
negative, a string with a NUL byte (os calls raise ValueError on it), invalid UTF-8 or nesting deeper
than the parser's recursion limit are all refused as ConfigError naming the field (or the file).
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

INT_MAX = (1 << 63) - 1  # TOML integers are i64; config integers are counts, indices and ports: >= 0
MAX_STRING = 4096  # a path, an address or a name; longer is a pasted mistake
RANGE = "zrkeyring.range"  # dataclass field metadata key: (low, high), inclusive


def bounded(low: float, high: float, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value must lie in low..high (inclusive), checked when the config loads."""
    return dataclasses.field(default=default, metadata={RANGE: (low, high)})


def parse_port(text: str, key: str, got: str, low: int = 1) -> int:
    """A TCP port written in ASCII digits (str.isdigit() also accepts "²" and "٧", which int() refuses or
    reads as another number), low..65535 (0, "any free port", only where a caller allows it)."""
    if not (text.isascii() and text.isdigit()) or not low <= int(text) < 65536:
        raise ConfigError(f"{key}: expected host:port with a port {low}..65535, got {got!r}"[:300])
    return int(text)

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
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
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
        value = _check(table[field_name], hints[field_name], key)
        if RANGE in field.metadata and value is not None:
            low, high = field.metadata[RANGE]
            if not low <= value <= high:
                raise ConfigError(f"{key}: must be {low}..{high}, got {value!r}")
        values[field_name] = value
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
            raise ConfigError(f"{key}: expected a list, got {_short(value)}")
        return [_check(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return build(value, key, hint)
    if hint is float and type(value) is int:
        value = float(value)
    if hint in _TYPE_NAMES:
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {_TYPE_NAMES[hint]}, got {_short(value)}")
        return _in_range(value, key)
    return value


def _in_range(value: Any, key: str) -> Any:
    if type(value) is int and not 0 <= value <= INT_MAX:
        raise ConfigError(f"{key}: must be 0..{INT_MAX}, got {_short(value)}")
    if type(value) is float and not 0.0 <= value < float("inf"):  # NaN fails both comparisons
        raise ConfigError(f"{key}: must be a finite number >= 0, got {value!r}")
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError(f"{key}: contains a NUL character")
        if len(value) > MAX_STRING:
            raise ConfigError(f"{key}: longer than {MAX_STRING} characters")
    return value


def _short(value: Any) -> str:
    """A value for an error message: its repr, cut so a pasted blob does not make a page of error."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
