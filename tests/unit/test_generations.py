"""Exam generations (pure parts): the version convention, the sink's merge of a continued exam, the KPI agent's
span of one."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from schemas.exam_version import change, first_version, generation
from sinks.bench import synthetic_exam
from sinks.generations import InstanceFacts, merge
from sinks.rows import EXAM_COLUMNS, exam_row
from streams.kpi_agent import continued

T = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)


def test_a_later_generation_outranks_every_version_of_an_earlier_one() -> None:
    old = first_version(1_700_000_000) + 999  # many changes
    new = first_version(1_700_000_001) + 1
    assert new > old and generation(new) > generation(old) and change(new) == 1 and change(old) == 999
    assert generation(3) == 0  # versions from before the convention


def _row(**kw: object) -> dict[str, object]:
    return dict(zip(EXAM_COLUMNS, exam_row(dataclasses.replace(synthetic_exam(1, 3), **kw)), strict=True))


def test_merge_spans_both_generations_and_counts_from_the_instances_table() -> None:
    base = _row(version=5, instance_count=40, series_count=2, start_utc=T, end_utc=T + timedelta(minutes=10),
                series_descriptions=("AXIAL", "COR"), has_dose_report=False, protocol_name="HEAD")
    late = _row(version=first_version(2e9) + 2, instance_count=2, series_count=1, protocol_name=None,
                start_utc=T + timedelta(minutes=30), end_utc=T + timedelta(minutes=31),
                series_descriptions=("DOSE",), has_dose_report=True, status="complete")
    got = merge(base, late, InstanceFacts((41, 3)))  # one of the late two was a resend
    assert got["instance_count"] == 41 and got["series_count"] == 3
    assert (got["start_utc"], got["end_utc"], got["duration_s"]) == (T, T + timedelta(minutes=31), 31 * 60.0)
    assert got["series_descriptions"] == ["AXIAL", "COR", "DOSE"] and got["has_dose_report"] is True
    assert got["protocol_name"] == "HEAD" and got["version"] == late["version"] and got["status"] == "complete"
    assert merge(base, got, InstanceFacts((41, 3))) == got  # merging again changes nothing


def test_merge_never_counts_below_either_side_when_the_instances_lag() -> None:
    base, late = _row(instance_count=40), _row(instance_count=2)
    assert merge(base, late, InstanceFacts((30, 1)))["instance_count"] == 40
    assert merge(base, late, None)["instance_count"] == 40


def test_the_kpi_agent_spans_a_continued_exam() -> None:
    old = dataclasses.replace(synthetic_exam(1, 3), start_utc=T, end_utc=T + timedelta(minutes=10))
    late = dataclasses.replace(old, version=first_version(2e9) + 2, start_utc=T + timedelta(hours=2),
                               end_utc=T + timedelta(hours=2, minutes=1), instance_count=1)
    got = continued(old, late)
    assert (got.start_utc, got.end_utc, got.duration_s) == (T, late.end_utc, 7260.0)
    assert got.instance_count == old.instance_count and got.version == late.version

