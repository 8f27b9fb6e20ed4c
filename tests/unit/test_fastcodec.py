"""The streams' fast decoder gives exactly what schemas.codec.decode gives, and refuses what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from benchmarks.streams import synthetic_events
from schemas import codec
from schemas.codec import DecodeError
from schemas.events import Exam, InstanceEvent
from streams import fastcodec


def test_same_events_as_the_reference_decoder() -> None:
    events, _ = synthetic_events(8, 12)  # CT exams carry a dose report (nested dataclasses, tuples)
    for _key, value in events:
        assert fastcodec.decode(InstanceEvent, value) == codec.decode(InstanceEvent, value)
    exam = Exam(exam_key="x", site_id="s", version=3, status="complete", updated_at=datetime(2024, 1, 1, tzinfo=UTC),
                series_descriptions=("a", "b"), instance_count=7, patient_weight_kg=70.0)
    assert fastcodec.decode(Exam, codec.encode(exam)) == codec.decode(Exam, codec.encode(exam)) == exam


def test_refuses_foreign_bytes_and_other_records() -> None:
    events, _ = synthetic_events(1, 1)
    with pytest.raises(DecodeError):
        fastcodec.decode(InstanceEvent, b"not avro at all")
    with pytest.raises(DecodeError, match="InstanceEvent"):
        fastcodec.decode(Exam, events[0][1])
