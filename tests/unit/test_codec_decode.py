"""schemas.codec.decode, with its per-class conversion plans, loses nothing and refuses what is not ours."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from benchmarks.streams import synthetic_events
from schemas import codec
from schemas.codec import DecodeError
from schemas.events import Exam, InstanceEvent
from schemas.registry import latest
from tests.unit.test_codec_encode import TOP_LEVEL, instance


def test_decoded_events_encode_back_to_the_same_bytes() -> None:
    events, _ = synthetic_events(8, 12)  # CT exams carry a dose report (nested dataclasses, tuples)
    for _key, value in events:
        event = codec.decode(InstanceEvent, value)
        assert isinstance(event, InstanceEvent)
        assert codec.encode(event) == value
    exam = Exam(exam_key="x", site_id="s", version=3, status="complete", updated_at=datetime(2024, 1, 1, tzinfo=UTC),
                series_descriptions=("a", "b"), instance_count=7, patient_weight_kg=70.0)
    decoded = codec.decode(Exam, codec.encode(exam))
    assert decoded == exam and isinstance(decoded.series_descriptions, tuple)
    assert isinstance(decoded.patient_weight_kg, float)


def test_refuses_foreign_bytes_and_other_records() -> None:
    events, _ = synthetic_events(1, 1)
    with pytest.raises(DecodeError):
        codec.decode(InstanceEvent, b"not avro at all")
    with pytest.raises(DecodeError, match="InstanceEvent"):
        codec.decode(Exam, events[0][1])


def _fastavro_decode(cls: type, data: bytes) -> object:
    _name, record = codec.decode_record(data)
    return codec.from_record(cls, record)


@pytest.mark.parametrize("cls", TOP_LEVEL, ids=lambda c: c.__name__)
def test_the_generated_reader_reads_what_fastavro_reads(cls: type) -> None:
    rng = random.Random(f"read {cls.__name__}")
    for mode in ["all", "none", *["mix"] * 80]:
        data = codec.encode(instance(cls, rng, mode))
        expected = _fastavro_decode(cls, data)
        decoded = codec.decode(cls, data)
        assert decoded == expected
        assert type(decoded) is cls


def test_the_streams_inputs_have_a_generated_reader() -> None:
    for cls in (InstanceEvent, Exam):
        assert codec._reader(latest(cls.__name__).fingerprint, cls) is not None, cls.__name__
    events, _ = synthetic_events(1, 1)
    assert codec._reader(events[0][1][2:10], Exam) is None  # an InstanceEvent's bytes: the slow path refuses them


def test_a_truncated_message_is_refused() -> None:
    events, _ = synthetic_events(1, 3)
    for _key, value in events:
        for cut in (11, len(value) // 2, len(value) - 1):
            with pytest.raises(DecodeError):
                codec.decode(InstanceEvent, value[:cut])
