"""The sink merges a continued exam generation into what chDB holds (sinks/generations.py), through the writer's
own insert path: counts from the instances table, the span of both, the stored dose kept against a late image."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from schemas.events import ExamDose
from schemas.exam_version import first_version
from sinks.bench import synthetic_exam, synthetic_instance
from sinks.clickhouse import Database
from sinks.generations import GenerationMerger
from sinks.rows import COLUMNS, rows_for


def write(db: Database, merger: GenerationMerger, *objs: object) -> None:
    """As the sink's flush does: instances first, then exams and exam_dose through the merger."""
    by_table: dict[str, list] = {}
    for obj in objs:
        for table, rows in rows_for(obj):
            by_table.setdefault(table, []).extend(rows)
    for table in sorted(by_table, key=lambda t: ("instances", "irradiation_events", "exams", "exam_dose").index(t)
                        if t in ("instances", "irradiation_events", "exams", "exam_dose") else 9):
        rows = by_table[table]
        if table == "exams":
            rows = merger.exams(rows)
        elif table == "exam_dose":
            rows = merger.exam_dose(rows)
        db.insert(table, rows, COLUMNS[table])


def dose(version: int, events: int, dlp: float) -> ExamDose:
    exam = synthetic_exam(0, 3)
    return ExamDose(exam_key=exam.exam_key, site_id=exam.site_id, version=version, updated_at=exam.updated_at,
                    source="REPORT" if events else "HEADER", exam_type="CT_HEAD", start_utc=exam.start_utc,
                    dlp_total_mgy_cm=dlp, event_count=events)


def test_a_late_generation_is_merged_not_replacing(db: Database) -> None:
    merger = GenerationMerger(db)
    old = synthetic_exam(0, 3)  # study-0: 150 instances counted, generation 0
    instances = [synthetic_instance(i, study=0) for i in range(150)]
    write(db, merger, *instances, old, dose(3, 4, 1200.0))

    gen = first_version(2e9)
    late_instances = [synthetic_instance(150, study=0), instances[0]]  # one new, one resent
    end = old.end_utc + timedelta(days=9)  # type: ignore[operator]
    late = [dataclasses.replace(old, version=gen + 1, status="in_progress", instance_count=2, series_count=1,
                                start_utc=end - timedelta(minutes=1), end_utc=end, updated_at=end),
            dataclasses.replace(old, version=gen + 2, status="complete", instance_count=2, series_count=1,
                                start_utc=end - timedelta(minutes=1), end_utc=end, updated_at=end)]
    write(db, merger, *late_instances, late[0])
    write(db, merger, late[1], dose(gen + 2, 0, 0.0))  # a late image: header dose only, no events

    count, start, stop, version, status = db.query(
        "SELECT instance_count, start_utc, end_utc, version, status FROM exams_latest").rows[0]
    assert (count, start, stop, version, status) == (151, old.start_utc, end, gen + 2, "complete")
    assert merger.merged == 2
    kept = db.query("SELECT event_count, dlp_total_mgy_cm, version FROM exam_dose_latest").rows[0]
    assert tuple(kept) == (4, 1200.0, 3), "a late image must not wipe the exam's dose"

    write(db, merger, late[1])  # a redelivery merges to the same row
    assert db.query("SELECT instance_count FROM exams_latest").rows[0][0] == 151
    write(db, merger, dose(gen + 3, 5, 1500.0))  # a late, fuller dose report does replace it
    assert tuple(db.query("SELECT event_count, version FROM exam_dose_latest").rows[0]) == (5, gen + 3)


def test_exams_of_one_generation_are_not_merged(db: Database) -> None:
    merger = GenerationMerger(db)
    first = dataclasses.replace(synthetic_exam(0, 1), version=first_version(1.9e9) + 1)
    write(db, merger, *[synthetic_instance(i, study=0) for i in range(50)], first)
    shorter = dataclasses.replace(first, version=first.version + 1, start_utc=first.start_utc + timedelta(minutes=1))
    write(db, merger, shorter)  # within a generation the streams' latest version simply wins
    assert db.query("SELECT start_utc FROM exams_latest").rows[0][0] == shorter.start_utc
    assert merger.merged == 0
