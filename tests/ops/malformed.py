"""A small generator of malformed input for the property tests of every boundary (no hypothesis).

Each generator is seeded (`random.Random(seed)`), so a failure names a reproducible case. The values are
the ones an operator, a broken controller or an attacker on the local socket actually produced: wrong
JSON types, bools and floats for integers, huge and non-finite floats, integers outside u32/u64, deep
nesting, invalid UTF-8, non-ASCII digits, NUL bytes, long strings, and random byte flips of valid input.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

U32, U64 = (1 << 32) - 1, (1 << 64) - 1

# JSON values that are wrong for almost any field; bools and floats for ints are the classic traps.
BAD_JSON_VALUES: list[Any] = [
    None, True, False, 0.0, 1.5, -1, -(1 << 63), U32 + 1, U64, U64 + 1, 1 << 200, 1e308, -1e308,
    "", "1", "\u0661", "\u00b2", "x" * 10_000, "\x00", [], [1, 2], [[[]]], {}, {"a": 1}, [True], ["1"],
]
# Raw bodies json.loads itself meets trouble with.
RAW_BODIES: list[bytes] = [
    b"", b"{", b"[]", b"null", b"1", b'"job"', b"true", b"1e400", b"-1e400", b"NaN", b"Infinity",
    b"\xff\xfe\xfd", b'{"kind": "\xff"}', b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b'{"kind": "key", "request_id": 1e400}', b'{"kind": "sign", "request_id": NaN}',
    b"\x00" * 64, b'{"kind": "key"}' + b" " * 10, b'{"kind": "key", "kind": "sign"}',
]


def json_bodies(valid: list[dict[str, Any]], seed: int, count: int) -> Iterator[bytes]:
    """RAW_BODIES, then each valid object with each field replaced by each bad value or removed, then
    `count` random byte flips and field swaps of the valid objects."""
    yield from RAW_BODIES
    for base in valid:
        for name in base:
            yield json.dumps({k: v for k, v in base.items() if k != name}).encode()
            for bad in BAD_JSON_VALUES:
                yield json.dumps({**base, name: bad}).encode()
        yield json.dumps({**base, "extra": 1}).encode()
    rng = random.Random(seed)  # noqa: S311 - reproducible test input, not key material
    for _ in range(count):
        yield mutate(json.dumps(rng.choice(valid)).encode(), rng)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip a byte, insert a byte, delete a span, duplicate a span."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out.append(rng.randrange(256))
            continue
        at = rng.randrange(len(out))
        edit = rng.randrange(4)
        if edit == 0:
            out[at] = rng.randrange(256)
        elif edit == 1:
            out.insert(at, rng.choice(b"0123456789.-eE[]{}\",:tfn\xff\x00 "))
        elif edit == 2:
            del out[at:at + rng.randint(1, 8)]
        else:
            out[at:at] = out[at:at + rng.randint(1, 8)]
    return bytes(out)


# TOML values for a field, as source text: each wrong in type, range or encoding for some field.
BAD_TOML_VALUES: list[str] = [
    "true", "false", "1.5", "-1", "0", "inf", "nan", "-inf", "1e400", "9223372036854775807",
    "-9223372036854775808", '""', '"1"', '"\u0661\u0662"', '"127.0.0.1:\u0667\u0660\u0660\u0661"',
    '"127.0.0.1:7\u00b2"', '"a\\u0000b"', '"' + "x" * 5000 + '"', "[]", "[1, 2]", '["a"]', "{}",
    "{ a = 1 }", "1979-05-27T07:32:00Z", "[" * 5000 + "]" * 5000,
]


def toml_documents(valid: str, seed: int, count: int) -> Iterator[bytes]:
    """`valid` with each `key = value` line's value replaced by each bad value or the line removed; then
    invalid UTF-8, deep nesting and `count` random byte mutations."""
    lines = valid.splitlines()
    for i, line in enumerate(lines):
        key, sep, _ = line.partition(" = ")
        if not sep or line.startswith("#"):
            continue
        yield "\n".join(lines[:i] + lines[i + 1:]).encode()
        for bad in BAD_TOML_VALUES:
            yield "\n".join(lines[:i] + [f"{key} = {bad}"] + lines[i + 1:]).encode()
    yield valid.encode() + b"\n# \xff\xfe not UTF-8\n"
    yield b"x = \"\xc3\x28\"\n" + valid.encode()
    yield b"deep = " + b"[" * 100_000 + b"]" * 100_000 + b"\n" + valid.encode()
    yield b"deep = " + b"{ a = " * 50_000 + b"1" + b" }" * 50_000 + b"\n"
    yield b"[" * 5000 + b"x" + b"]" * 5000 + b"\n"
    yield b""
    rng = random.Random(seed)  # noqa: S311 - reproducible test input, not key material
    for _ in range(count):
        yield mutate(valid.encode(), rng)
