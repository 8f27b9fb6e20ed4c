"""Avro single-object encoding of the event dataclasses.

Wire format (Avro spec, "Single object encoding"): 0xC3 0x01, the writer schema's 8-byte CRC-64-AVRO fingerprint
(little-endian), then the Avro binary body. Readers look the writer schema up by fingerprint and resolve it
against the latest schema of the same name, so old messages stay readable after a compatible change.
"""

from __future__ import annotations

import dataclasses
import io
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from fastavro import schemaless_reader, schemaless_writer

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


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        (item,) = get_args(tp)[:1]
        return tuple(_convert(item, v) for v in value)
    if dataclasses.is_dataclass(tp):
        return from_record(tp, value)
    if tp is float and isinstance(value, int):
        return float(value)
    if tp is datetime and not isinstance(value, datetime):
        raise DecodeError(f"expected a timestamp, got {type(value).__name__}")
    return value


def from_record(cls: type[T], record: dict[str, Any]) -> T:
    """Avro dict → dataclass; fields the record lacks take their defaults (reader-side evolution)."""
    hints = _hints(cls)
    kwargs = {f.name: _convert(hints[f.name], record[f.name]) for f in dataclasses.fields(cls) if f.name in record}
    return cls(**kwargs)  # type: ignore[call-arg]


def encode(obj: Any) -> bytes:
    """Encode a dataclass with the latest schema of its class name."""
    schema = latest(type(obj).__name__)
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(schema.fingerprint)
    schemaless_writer(buf, schema.parsed, to_record(obj))
    return buf.getvalue()


def decode_record(data: bytes) -> tuple[str, dict[str, Any]]:
    """Bytes → (schema name, record resolved against the latest reader schema)."""
    if len(data) < 10 or data[:2] != MAGIC:
        raise DecodeError("not an Avro single-object-encoded message (missing C3 01 header)")
    writer = writer_for(bytes(data[2:10]))
    reader = latest(writer.name)
    record = schemaless_reader(io.BytesIO(data[10:]), writer.parsed, reader.parsed)
    return writer.name, record  # type: ignore[return-value]


def decode(cls: type[T], data: bytes) -> T:
    name, record = decode_record(data)
    if name != cls.__name__:
        raise DecodeError(f"message holds a {name}, not a {cls.__name__}")
    return from_record(cls, record)
