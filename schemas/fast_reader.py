"""Generated Avro readers: bytes straight to radpulse's dataclasses, for a message written with the latest schema.

fastavro's reader builds a dict and a ``datetime`` per timestamp, and ``codec.from_record`` then builds the
dataclass from the dict: about 90 µs per InstanceEvent, a fifth of the streams worker's CPU per instance once its
table writes were batched. The reader below is Python generated once per (schema, dataclass), reading the fields
in schema order into the dataclass's constructor. It covers the types radpulse's schemas use (null unions,
primitives, timestamp-micros, records, arrays); a schema with anything else, or a message written with an older
schema (which needs fastavro's resolution), is left to fastavro. ``tests/unit/test_codec_decode.py`` checks it
against fastavro on every schema with random values.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args, get_origin, get_type_hints

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unhandled(Exception):
    """A schema or class the generated reader leaves to fastavro."""


def read_long(b: bytes, p: int) -> tuple[int, int]:
    """Avro's zigzag varint at `p`: (value, next position)."""
    c = b[p]
    p += 1
    if c < 0x80:
        return (c >> 1) ^ -(c & 1), p
    n = c & 0x7F
    shift = 7
    while True:
        c = b[p]
        p += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7


def _unwrap(hint: Any) -> Any:
    """Optional[X] → X."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise Unhandled(hint)
        return inner[0]
    return hint


class _Generator:
    """Python source for one schema's reader: one function per record type, returning (dataclass, position)."""

    def __init__(self) -> None:
        self.functions: dict[str, str] = {}
        self.sources: list[str] = []
        self.named: dict[str, Any] = {}
        self.namespace: dict[str, Any] = {"_long": read_long, "_EPOCH": _EPOCH, "_td": timedelta,
                                          "_double": struct.Struct("<d").unpack_from,
                                          "_float": struct.Struct("<f").unpack_from}
        self.counter = 0

    def record(self, schema: dict[str, Any], cls: type) -> str:
        name = schema["name"]
        if name in self.functions:
            return self.functions[name]
        if not dataclasses.is_dataclass(cls):
            raise Unhandled(name)
        fn = self.functions[name] = f"_read_{len(self.functions)}"
        self.named[name] = schema
        self.namespace[f"{fn}_cls"] = cls
        hints = get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        lines = [f"def {fn}(b, p):"]
        args = []
        for i, field in enumerate(schema["fields"]):
            if field["name"] not in known or not field["name"].isidentifier():
                raise Unhandled(field["name"])
            var = f"f{i}"
            self.value(field["type"], hints[field["name"]], var, lines, 1)
            args.append(f"{field['name']}={var}")
        lines.append(f"    return {fn}_cls({', '.join(args)}), p")
        self.sources.append("\n".join(lines))
        return fn

    def value(self, t: Any, hint: Any, var: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        if isinstance(t, str) and t in self.named:
            t = self.named[t]
        if isinstance(t, list):
            if len(t) != 2 or "null" not in t:
                raise Unhandled("union")  # only [null, X] and [X, null]
            null_at = t.index("null")
            # a branch index is a zigzag long: 0 → 0x00, 1 → 0x02
            lines.append(f"{pad}if b[p] == {2 * null_at}:")
            lines.append(f"{pad}    {var} = None")
            lines.append(f"{pad}    p += 1")
            lines.append(f"{pad}elif b[p] == {2 * (1 - null_at)}:")
            lines.append(f"{pad}    p += 1")
            self.value(t[1 - null_at], _unwrap(hint), var, lines, depth + 1)
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    raise ValueError('union branch out of range')")
            return
        hint = _unwrap(hint)
        kind = t if isinstance(t, str) else t["type"]
        logical = t.get("logicalType") if isinstance(t, dict) else None
        if logical == "timestamp-micros" and kind == "long":
            if hint is not datetime:
                raise Unhandled(logical)
            lines.append(f"{pad}{var}, p = _long(b, p)")
            lines.append(f"{pad}{var} = _EPOCH + _td(microseconds={var})")
        elif logical is not None:
            raise Unhandled(logical)
        elif kind == "null":
            lines.append(f"{pad}{var} = None")
        elif kind == "boolean":
            lines.append(f"{pad}{var} = b[p] != 0")
            lines.append(f"{pad}p += 1")
        elif kind in ("int", "long"):
            lines.append(f"{pad}{var}, p = _long(b, p)")
            if hint is float:  # what codec.from_record does with an int where the class says float
                lines.append(f"{pad}{var} = float({var})")
        elif kind in ("float", "double"):
            size = 8 if kind == "double" else 4
            lines.append(f"{pad}{var} = _{kind}(b, p)[0]")
            lines.append(f"{pad}p += {size}")
        elif kind in ("string", "bytes"):
            self.counter += 1
            n = f"n{self.counter}"
            lines.append(f"{pad}{n}, p = _long(b, p)")
            lines.append(f"{pad}{var} = b[p:p + {n}]{'.decode()' if kind == 'string' else ''}")
            lines.append(f"{pad}p += {n}")
            lines.append(f"{pad}if p > len(b): raise IndexError")
        elif kind == "record":
            fn = self.record(t, hint)
            lines.append(f"{pad}{var}, p = {fn}(b, p)")
        elif kind == "array":
            if get_origin(hint) is not tuple:
                raise Unhandled("array")
            self.counter += 1
            n, items, item = f"n{self.counter}", f"items{self.counter}", f"x{self.counter}"
            lines.append(f"{pad}{items} = []")
            lines.append(f"{pad}while True:")
            lines.append(f"{pad}    {n}, p = _long(b, p)")
            lines.append(f"{pad}    if {n} == 0:")
            lines.append(f"{pad}        break")
            lines.append(f"{pad}    if {n} < 0:  # a block with its size in bytes")
            lines.append(f"{pad}        {n} = -{n}")
            lines.append(f"{pad}        _, p = _long(b, p)")
            lines.append(f"{pad}    for _ in range({n}):")
            self.value(t["items"], get_args(hint)[0], item, lines, depth + 2)
            lines.append(f"{pad}        {items}.append({item})")
            lines.append(f"{pad}{var} = tuple({items})")
        else:
            raise Unhandled(kind)  # enum, map, fixed: not in radpulse's schemas


def generate(schema: dict[str, Any], cls: type, label: str) -> Callable[[bytes, int], tuple[Any, int]] | None:
    """The reader of `schema` into `cls` (from a position to (object, end)), or None when fastavro must read it."""
    gen = _Generator()
    try:
        top = gen.record(schema, cls)
    except (Unhandled, KeyError, TypeError):
        return None
    exec(compile("\n\n".join(gen.sources), f"<avro reader {label}>", "exec"), gen.namespace)
    return gen.namespace[top]  # type: ignore[no-any-return]
