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
from collections.abc import Callable
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


def encode(obj: Any) -> bytes:
    """Encode a dataclass with the latest schema of its class name."""
    schema = latest(type(obj).__name__)
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(schema.fingerprint)
    schemaless_writer(buf, schema.parsed, to_record(obj))
    return buf.getvalue()


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


def decode(cls: type[T], data: bytes) -> T:
    name, record = decode_record(data)
    if name != cls.__name__:
        raise DecodeError(f"message holds a {name}, not a {cls.__name__}")
    return from_record(cls, record)
