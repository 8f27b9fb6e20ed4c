"""schemas.codec's generated writer writes exactly what fastavro writes, for every schema and every kind of value
(all fields set, none set, a random mix, awkward values); what it was not built for goes to fastavro."""

from __future__ import annotations

import dataclasses
import random
import types
import typing
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from schemas import codec, events
from schemas.registry import latest

CLASSES = [c for c in vars(events).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
           and c.__module__ == events.__name__]


def _has_schema(cls: type) -> bool:
    try:
        latest(cls.__name__)
    except LookupError:
        return False
    return True


TOP_LEVEL = [c for c in CLASSES if _has_schema(c)]
TEXTS = ["", "CT", "Abdomen routine", "张先生 头颅", "ÄÖÜ ß", "x" * 300, "\x00odd"]
DATES = [datetime(2024, 3, 1, 9, 1, 7, 123456, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
         datetime(2024, 3, 1, 17, 0, tzinfo=timezone(timedelta(hours=8))), datetime(1970, 1, 1, tzinfo=UTC)]
NUMBERS = [0.0, -1.5, 1e300, 3.141592653589793, 2, -7, float("inf")]
INTS = [0, 1, -1, 63, 64, -65, 127, 128, 8191, 8192, 2**31 - 1, -(2**31)]


def value(tp: Any, rng: random.Random, mode: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in get_args(tp) if a is not type(None))
        if mode == "none" or (mode == "mix" and rng.random() < 0.5):
            return None
        return value(inner, rng, mode)
    if origin is tuple:
        return tuple(value(get_args(tp)[0], rng, mode) for _ in range(rng.choice([0, 1, 3]) if mode == "mix" else 2))
    if dataclasses.is_dataclass(tp):
        return instance(tp, rng, mode)  # type: ignore[arg-type]
    if tp is str:
        return rng.choice(TEXTS)
    if tp is bool:
        return rng.random() < 0.5
    if tp is int:
        return rng.choice(INTS)
    if tp is float:
        return rng.choice(NUMBERS)
    if tp is datetime:
        return rng.choice(DATES)
    if tp is date:
        return rng.choice(DATES).date()
    raise AssertionError(f"no test value for {tp}")


def instance(cls: type, rng: random.Random, mode: str) -> Any:
    hints = get_type_hints(cls)
    return cls(**{f.name: value(hints[f.name], rng, mode) for f in dataclasses.fields(cls)})


def fastavro_bytes(obj: Any) -> bytes:
    return codec._encode_fastavro(obj, latest(type(obj).__name__))


@pytest.mark.parametrize("cls", TOP_LEVEL, ids=lambda c: c.__name__)
def test_same_bytes_as_fastavro(cls: type) -> None:
    rng = random.Random(cls.__name__)
    writer = codec._writer(latest(cls.__name__).fingerprint)
    written = 0
    for mode in ["all", "none", *["mix"] * 80]:
        obj = instance(cls, rng, mode)
        expected = fastavro_bytes(obj)
        written += 1
        assert codec.encode(obj) == expected
        if writer is not None:
            assert writer(obj) == expected  # the generated writer itself, not the fallback
    assert written == 82


def test_the_edge_events_have_a_generated_writer() -> None:
    for name in ("InstanceEvent", "WorkflowEvent", "EdgeHeartbeat"):
        assert codec._writer(latest(name).fingerprint) is not None, name
    assert codec._writer(latest("DeviceKpi").fingerprint) is None  # a date field: fastavro writes those


def test_values_it_was_not_built_for_go_to_fastavro() -> None:
    rng = random.Random(1)
    base = instance(events.InstanceEvent, rng, "none")
    naive = dataclasses.replace(base, received_at=datetime(2024, 3, 1, 9, 0))  # fastavro: local time
    assert codec.encode(naive) == fastavro_bytes(naive)
    as_bool = dataclasses.replace(base, series_number=True)  # type: ignore[arg-type]  # fastavro: a bool is no int
    with pytest.raises(ValueError):
        fastavro_bytes(as_bool)
    with pytest.raises(ValueError):
        codec.encode(as_bool)  # the same error as fastavro's, naming the field
    too_big = dataclasses.replace(base, series_number=2**40)  # a long where the schema says int
    with pytest.raises(ValueError):
        codec.encode(too_big)
    exam = instance(events.Exam, rng, "all")
    long_count = dataclasses.replace(exam, instance_count=10**12)  # not in a union: fastavro writes it as a long
    assert codec.encode(long_count) == fastavro_bytes(long_count)
