"""schemas.codec.decode, with its per-class conversion plans, loses nothing and refuses what is not ours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from benchmarks.streams import synthetic_events
from schemas import codec
from schemas.codec import DecodeError
from schemas.events import Exam, InstanceEvent


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
