"""Avro single-object encoding of the event dataclasses.

Wire format (Avro spec, "Single object encoding"): 0xC3 0x01, the writer schema's 8-byte CRC-64-AVRO fingerprint
(little-endian), then the Avro binary body. Readers look the writer schema up by fingerprint and resolve it
against the latest schema of the same name, so old messages stay readable after a compatible change.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from fastavro import schemaless_reader, schemaless_writer

from schemas import fast_reader
from schemas.registry import latest, writer_for

MAGIC = b"\xc3\x01"
T = TypeVar("T")


class DecodeError(ValueError):
    """Bytes that are not a radpulse single-object-encoded Avro message."""


_SCALARS = frozenset({str, int, float, bool, bytes, type(None), datetime})
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}  # per class: its dataclass field names, or None


def to_record(obj: Any) -> Any:
    """Dataclass → Avro-ready dict (tuples become lists, nested dataclasses dicts)."""
    cls = type(obj)
    if cls in _SCALARS:  # most values: return before any dataclass check (the edge encodes every instance)
        return obj
    names = _FIELD_NAMES.get(cls, ())
    if names == ():
        is_dc = dataclasses.is_dataclass(cls)
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls)) if is_dc else None
    if names is not None:
        return {name: to_record(getattr(obj, name)) for name in names}
    if isinstance(obj, tuple | list):
        return [to_record(v) for v in obj]
    return obj


Conv = Callable[[Any], Any] | None  # None: the value as read


def _nullable(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else conv(v)


def _float(v: Any) -> Any:
    return float(v) if isinstance(v, int) else v


def _timestamp(v: Any) -> Any:
    if not isinstance(v, datetime):
        raise DecodeError(f"expected a timestamp, got {type(v).__name__}")
    return v


@cache
def _converter(tp: Any) -> Conv:
    """The conversion a value of type ``tp`` needs after fastavro, worked out once per type (reflection per message
    was two thirds of the streams' CPU per instance and the sink's main decoding cost)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        conv = _converter(inner[0]) if len(inner) == 1 else None
        return None if conv is None else _nullable(conv)
    if origin is tuple:
        item = _converter(get_args(tp)[0])
        return _nullable(tuple if item is None else (lambda v: tuple(item(x) for x in v)))
    if dataclasses.is_dataclass(tp):
        return _nullable(_record_converter(tp))  # type: ignore[arg-type]
    if tp is float:
        return _float
    if tp is datetime:
        return _nullable(_timestamp)
    return None


@cache
def _record_converter(cls: type[T]) -> Callable[[dict[str, Any]], T]:
    hints = get_type_hints(cls)
    plan = [(f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def convert(record: dict[str, Any]) -> T:
        kwargs = {}
        for name, conv in plan:
            if name in record:
                v = record[name]
                kwargs[name] = v if conv is None else conv(v)
        return cls(**kwargs)

    return convert


def from_record(cls: type[T], record: dict[str, Any]) -> T:
    """Avro dict → dataclass; fields the record lacks take their defaults (reader-side evolution)."""
    return _record_converter(cls)(record)


# -- the writer: generated once per schema ----------------------------------------------------------------------
# fastavro resolves every union member by validating the value against each branch, and wants dicts: for the
# InstanceEvent (~100 nullable fields) that was ~110 µs per instance at the edge. The writer below is Python code
# generated from the schema, reading the dataclass directly; it writes the same bytes (tests/unit/test_codec_encode.py)
# and hands anything it was not built for (a value of an unexpected type, a naive datetime) back to fastavro.


class _Unhandled(Exception):
    """A value the generated writer leaves to fastavro."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BYTE = tuple(bytes((i,)) for i in range(128))
_PACK_DOUBLE = struct.Struct("<d").pack
_PACK_FLOAT = struct.Struct("<f").pack
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _zigzag(n: int) -> bytes:
    """Avro's long encoding: zigzag, then a little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Generator:
    """Python source for one schema's writer: one function per record type."""

    def __init__(self) -> None:
        self.functions: dict[str, str] = {}  # record name → function name
        self.sources: list[str] = []
        self.named: dict[str, Any] = {}
        self.counter = 0

    def record(self, schema: dict[str, Any]) -> str:
        name = schema["name"]
        if name in self.functions:
            return self.functions[name]
        fn = self.functions[name] = f"_write_{len(self.functions)}"
        self.named[name] = schema
        lines = [f"def {fn}(o, a):"]
        for field in schema["fields"]:
            if not field["name"].isidentifier():
                raise _Unhandled(field["name"])
            lines.append(f"    v = o.{field['name']}")
            self.value(field["type"], "v", lines, 1)
        lines.append("    return None")
        self.sources.append("\n".join(lines))
        return fn

    def value(self, t: Any, var: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        if isinstance(t, str) and t in self.named:
            t = self.named[t]
        if isinstance(t, list):
            if len(t) != 2 or "null" not in t:
                raise _Unhandled("union")  # only [null, X] and [X, null]
            other = t[1] if t[0] == "null" else t[0]
            null_at = t.index("null")
            lines.append(f"{pad}if {var} is None:")
            lines.append(f"{pad}    a({_BYTE[2 * null_at]!r})")
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    a({_BYTE[2 * (1 - null_at)]!r})")
            self.value(other, var, lines, depth + 1)
            return
        kind = t if isinstance(t, str) else t["type"]
        logical = t.get("logicalType") if isinstance(t, dict) else None
        if logical == "timestamp-micros" and kind == "long":
            lines.append(f"{pad}if type({var}) is datetime and {var}.tzinfo is not None:")
            lines.append(f"{pad}    d = {var} - _EPOCH")
            lines.append(f"{pad}    a(_zigzag((d.days * 86400 + d.seconds) * 1000000 + d.microseconds))")
            lines.append(f"{pad}elif type({var}) is int:")
            lines.append(f"{pad}    a(_zigzag({var}))")
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    raise _Unhandled")
        elif logical is not None:
            raise _Unhandled(logical)
        elif kind == "null":
            lines.append(f"{pad}if {var} is not None: raise _Unhandled")
        elif kind == "boolean":
            lines.append(f"{pad}if type({var}) is not bool: raise _Unhandled")
            lines.append(f"{pad}a(b'\\x01' if {var} else b'\\x00')")
        elif kind in ("int", "long"):
            low, high = _INT_RANGE[kind]
            lines.append(f"{pad}if type({var}) is not int or not {low} <= {var} <= {high}: raise _Unhandled")
            lines.append(f"{pad}a(_zigzag({var}))")
        elif kind in ("float", "double"):
            lines.append(f"{pad}if type({var}) is not float and type({var}) is not int: raise _Unhandled")
            lines.append(f"{pad}a({'_PACK_DOUBLE' if kind == 'double' else '_PACK_FLOAT'}({var}))")
        elif kind == "string":
            lines.append(f"{pad}if not isinstance({var}, str): raise _Unhandled")
            lines.append(f"{pad}b = {var}.encode()")
            lines.append(f"{pad}a(_zigzag(len(b)))")
            lines.append(f"{pad}a(b)")
        elif kind == "bytes":
            lines.append(f"{pad}if type({var}) is not bytes: raise _Unhandled")
            lines.append(f"{pad}a(_zigzag(len({var})))")
            lines.append(f"{pad}a({var})")
        elif kind == "record":
            fn = self.record(t)
            lines.append(f"{pad}if not hasattr(type({var}), '__dataclass_fields__'): raise _Unhandled")
            lines.append(f"{pad}{fn}({var}, a)")
        elif kind == "array":
            self.counter += 1
            item = f"x{self.counter}"
            lines.append(f"{pad}if type({var}) is not tuple and type({var}) is not list: raise _Unhandled")
            lines.append(f"{pad}if {var}:")
            lines.append(f"{pad}    a(_zigzag(len({var})))")
            lines.append(f"{pad}    for {item} in {var}:")
            self.value(t["items"], item, lines, depth + 2)
            lines.append(f"{pad}a(b'\\x00')")
        else:
            raise _Unhandled(kind)  # enum, map, fixed: not in radpulse's schemas; fastavro writes them


@cache
def _writer(fingerprint: bytes) -> Callable[[Any], bytes] | None:
    """The generated writer of one schema (single-object header included), or None if it has types the
    generator leaves to fastavro."""
    schema = writer_for(fingerprint)
    gen = _Generator()
    try:
        top = gen.record(schema.parsed)
    except _Unhandled:
        return None
    namespace: dict[str, Any] = {"_Unhandled": _Unhandled, "_EPOCH": _EPOCH, "_zigzag": _zigzag,
                                 "_PACK_DOUBLE": _PACK_DOUBLE, "_PACK_FLOAT": _PACK_FLOAT, "datetime": datetime}
    exec(compile("\n\n".join(gen.sources), f"<avro writer {schema.name} v{schema.version}>", "exec"), namespace)
    write, header = namespace[top], MAGIC + fingerprint

    def encode_fast(obj: Any) -> bytes:
        out = [header]
        write(obj, out.append)
        return b"".join(out)

    return encode_fast


def _encode_fastavro(obj: Any, schema: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(schema.fingerprint)
    schemaless_writer(buf, schema.parsed, to_record(obj))
    return buf.getvalue()


def encode(obj: Any) -> bytes:
    """Encode a dataclass with the latest schema of its class name."""
    schema = latest(type(obj).__name__)
    fast = _writer(schema.fingerprint)
    if fast is not None:
        try:
            return fast(obj)
        except Exception:  # fastavro writes it, or raises its own error naming the field
            pass
    return _encode_fastavro(obj, schema)


@cache
def _schemas(fingerprint: bytes) -> tuple[str, Any, Any]:
    """(name, writer schema, reader schema or None when they are the same: fastavro then skips resolution)."""
    writer = writer_for(fingerprint)
    reader = latest(writer.name)
    return writer.name, writer.parsed, None if reader.fingerprint == writer.fingerprint else reader.parsed


def decode_record(data: bytes) -> tuple[str, dict[str, Any]]:
    """Bytes → (schema name, record resolved against the latest reader schema)."""
    if len(data) < 10 or data[:2] != MAGIC:
        raise DecodeError("not an Avro single-object-encoded message (missing C3 01 header)")
    name, writer, reader = _schemas(bytes(data[2:10]))
    record = schemaless_reader(io.BytesIO(data[10:]), writer, reader)
    return name, record  # type: ignore[return-value]


@cache
def _reader(fingerprint: bytes, cls: type) -> Callable[[bytes, int], tuple[Any, int]] | None:
    """The generated reader for a message of this writer schema into `cls` (schemas.fast_reader), or None: another
    record, a schema older than the latest (fastavro resolves it), or types the generator leaves to fastavro."""
    writer = writer_for(fingerprint)
    if writer.name != cls.__name__ or latest(writer.name).fingerprint != writer.fingerprint:
        return None
    return fast_reader.generate(writer.parsed, cls, f"{writer.name} v{writer.version}")


def decode(cls: type[T], data: bytes) -> T:
    if len(data) >= 10 and data[:2] == MAGIC:
        read = _reader(bytes(data[2:10]), cls)
        if read is not None:
            try:
                return read(bytes(data), 10)[0]  # type: ignore[no-any-return]
            except (IndexError, struct.error) as exc:
                raise DecodeError(f"a truncated {cls.__name__} message ({exc})") from exc
    name, record = decode_record(data)
    if name != cls.__name__:
        raise DecodeError(f"message holds a {name}, not a {cls.__name__}")
    return from_record(cls, record)
