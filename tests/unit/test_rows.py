"""sinks.rows (event → row in column order) and sinks.batcher (flush, then offsets): pure, no engine."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import (
    AccumulatedDose,
    DoseReport,
    EdgeHeartbeat,
    Exam,
    Exposure,
    InstanceEvent,
    IrradiationEvent,
)
from sinks import rows
from sinks.batcher import Batcher
from sinks.bench import synthetic_exam, synthetic_instance
from sinks.errors import RowError
from sinks.migrate import MIGRATIONS_DIR

T = datetime(2024, 3, 1, 10, 15, 30, 123456, tzinfo=UTC)


def names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def as_dict(table: str, row: rows.Row) -> dict[str, object]:
    columns = rows.COLUMNS[table]
    assert len(row) == len(columns), f"{table}: row has {len(row)} values for {len(columns)} columns"
    return dict(zip(columns, row, strict=True))


def migration_columns() -> dict[str, list[str]]:
    """Column names per table after every migration file, in order: CREATE TABLE bodies, then ALTER TABLE … ADD
    COLUMN (appended, or placed by AFTER/FIRST). A text read, no engine."""
    out: dict[str, list[str]] = {}
    statement = re.compile(
        r"CREATE TABLE IF NOT EXISTS (?P<table>\w+)\s*\((?P<body>.*?)\n\)"
        r"|ALTER TABLE (?P<altered>\w+) ADD COLUMN (?:IF NOT EXISTS )?(?P<column>\w+) [^;]*?"
        r"(?: AFTER (?P<after>\w+)| (?P<first>FIRST))?;",
        re.S,
    )
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for m in statement.finditer(path.read_text()):
            if m["table"]:
                lines = m["body"].splitlines()
                out[m["table"]] = [ln.split()[0] for ln in lines if re.match(r"\s+[a-z][a-z0-9_]* [A-Z]", ln)]
                continue
            columns = out.setdefault(m["altered"], [])
            if m["column"] in columns:
                continue  # IF NOT EXISTS: already there
            at = 0 if m["first"] else columns.index(m["after"]) + 1 if m["after"] else len(columns)
            columns.insert(at, m["column"])
    return out


# -- columns ---------------------------------------------------------------------------------------------------------
def test_every_field_has_a_column() -> None:
    assert list(rows.INSTANCE_FIELDS) == [n for n in names(InstanceEvent) if n not in ("exposure", "dose_report")]
    assert list(rows.EXPOSURE_FIELDS) == names(Exposure)
    report_fields = [*rows.DOSE_REPORT_FIELDS, *rows.DOSE_V2_REPORT_FIELDS]
    assert report_fields == [n for n in names(DoseReport) if n not in ("totals", "events")]
    assert [*rows.DOSE_TOTALS_FIELDS, *rows.DOSE_V2_TOTALS_FIELDS] == names(AccumulatedDose)
    assert ["event_pseudonym", *rows.IRRADIATION_FIELDS] == names(IrradiationEvent)
    assert list(rows.EXAM_COLUMNS) == names(Exam)
    assert list(rows.EDGE_HEALTH_COLUMNS) == names(EdgeHeartbeat)


def test_column_lists_match_the_migrations() -> None:
    declared = migration_columns()
    for table, columns in rows.COLUMNS.items():
        assert declared.get(table) == list(columns), f"{table}: migration and rows.py disagree"


def test_column_names_are_unique() -> None:
    for table, columns in rows.COLUMNS.items():
        assert len(set(columns)) == len(columns), table


# -- instances -------------------------------------------------------------------------------------------------------
def test_instance_row_flattens_exposure_and_dose_report() -> None:
    ev = synthetic_instance(7, dose_events=2)
    d = as_dict("instances", rows.instance_row(ev))
    assert d["event_id"] == "evt-7" and d["site_id"] == "site-1"
    assert d["image_type"] == ["ORIGINAL", "PRIMARY", "AXIAL"]  # tuple → list (ClickHouse Array)
    assert d["exposure_kvp"] == 120.0 and d["exposure_ctdivol_mgy"] == 8.5 and d["exposure_dap_gy_cm2"] is None
    assert d["dose_kind"] == "CT" and d["dose_template_id"] == "10011"
    assert d["dose_total_events"] == 2 and d["dose_ct_dlp_total_mgy_cm"] == 601.0 and d["dose_event_count"] == 2
    assert d["event_time"] == ev.acquisition_datetime_utc


def test_instance_row_without_exposure_or_report_is_all_null_there() -> None:
    ev = synthetic_instance(1).replace(exposure=None, dose_report=None)
    d = as_dict("instances", rows.instance_row(ev))
    flattened = [c for c in rows.INSTANCE_COLUMNS if c.startswith(("exposure_", "dose_")) and c != "dose_event_count"]
    assert [c for c in flattened if d[c] is not None] == []
    assert d["dose_event_count"] == 0
    assert rows.irradiation_rows(ev) == []


def test_datetimes_stay_aware_utc() -> None:
    d = as_dict("instances", rows.instance_row(synthetic_instance(3, received_at=T)))
    assert d["received_at"] == T and d["received_at"].tzinfo is not None  # type: ignore[union-attr]


def test_event_time_is_the_same_on_a_resend() -> None:
    first = synthetic_instance(5, received_at=T)
    resend = first.replace(received_at=T + timedelta(hours=5))
    a, b = as_dict("instances", rows.instance_row(first)), as_dict("instances", rows.instance_row(resend))
    assert a["event_time"] == b["event_time"]  # same partition, so the two copies collapse
    assert {k for k in a if a[k] != b[k]} == {"received_at"}


def test_event_time_prefers_acquisition_then_content_series_study_then_epoch() -> None:
    times = {
        f: T + timedelta(hours=i)
        for i, f in enumerate(
            ("acquisition_datetime_utc", "content_datetime_utc", "series_datetime_utc", "study_datetime_utc")
        )
    }
    ev = synthetic_instance(1).replace(**times)
    for field in times:
        assert rows.event_time(ev) == times[field]
        ev = ev.replace(**{field: None})
    assert rows.event_time(ev) == rows.EPOCH  # never received_at, which changes on a resend
    assert ev.received_at != rows.EPOCH


# -- irradiation events ----------------------------------------------------------------------------------------------
def test_irradiation_rows_one_per_event_keyed_by_event() -> None:
    ev = synthetic_instance(50, dose_events=3)
    out = [as_dict("irradiation_events", r) for r in rows.irradiation_rows(ev)]
    assert [(r["site_id"], r["study_pseudonym"], r["event_pseudonym"]) for r in out] == [
        ("site-1", "study-1", f"ev-1-{k}") for k in range(3)
    ]
    assert out[1]["ctdivol_mgy"] == 9.0 and out[1]["dlp_mgy_cm"] == 301.0 and out[1]["dose_kind"] == "CT"
    assert out[1]["event_time"] == ev.dose_report.events[1].datetime_started_utc  # type: ignore[union-attr]
    assert out[0]["event_id"] == ev.event_id and out[0]["received_at"] == ev.received_at


def test_irradiation_event_time_is_the_same_in_two_copies_of_a_report() -> None:
    # the modality and the PACS send the same report as two SR instances: other event_id, other content time
    ev = synthetic_instance(50, dose_events=1)
    report = ev.dose_report
    assert report is not None
    undated = dataclasses.replace(report, events=(dataclasses.replace(report.events[0], datetime_started_utc=None),))
    copy_a = ev.replace(dose_report=undated, content_datetime_utc=T)
    copy_b = copy_a.replace(event_id="evt-other", acquisition_datetime_utc=None, content_datetime_utc=T + timedelta(1))
    (a,), (b,) = rows.irradiation_rows(copy_a), rows.irradiation_rows(copy_b)
    da, db = as_dict("irradiation_events", a), as_dict("irradiation_events", b)
    assert da["event_time"] == db["event_time"] == ev.study_datetime_utc
    assert (da["site_id"], da["study_pseudonym"], da["event_pseudonym"]) == (
        db["site_id"],
        db["study_pseudonym"],
        db["event_pseudonym"],
    )


# -- exams and heartbeats --------------------------------------------------------------------------------------------
def test_exam_row_in_column_order() -> None:
    exam = synthetic_exam(4, 2)
    d = as_dict("exams", rows.exam_row(exam))
    assert d == {c: list(v) if isinstance(v := getattr(exam, c), tuple) else v for c in rows.EXAM_COLUMNS}
    assert d["series_descriptions"] == ["AXIAL", "COR"] and d["mr_receive_coils"] == []


def test_negative_exam_version_is_refused() -> None:
    with pytest.raises(RowError, match="version -1"):
        rows.exam_row(synthetic_exam(1, -1))


def test_edge_health_row() -> None:
    hb = EdgeHeartbeat("site-1", "edge-1", T, T - timedelta(hours=1), 10, 9, 1, 1, 0, 0, 0, 0, 0, True)
    d = as_dict("edge_health", rows.edge_health_row(hb))
    assert d["at"] == T and d["received"] == 10 and d["kafka_ok"] is True


def test_rows_for_routes_by_class() -> None:
    assert [t for t, _ in rows.rows_for(synthetic_instance(1))] == ["instances"]
    assert [t for t, _ in rows.rows_for(synthetic_instance(1, dose_events=2))] == ["instances", "irradiation_events"]
    assert [t for t, _ in rows.rows_for(synthetic_exam(1, 1))] == ["exams"]
    assert list(rows.rows_for(object())) == []


# -- batcher ---------------------------------------------------------------------------------------------------------
def test_batcher_is_due_on_size_or_age() -> None:
    b = Batcher(max_rows=3, max_age_s=1.0)
    assert not b.due(100.0) and b.empty
    b.add("exams", [(1,), (2,)], now=10.0)
    assert not b.due(10.5)
    assert b.due(11.0)  # age
    b.add("exams", [(3,)], now=10.6)
    assert b.due(10.6)  # size


def test_batcher_hands_back_offsets_only_after_every_insert() -> None:
    b = Batcher(max_rows=10)
    b.add("instances", [(1,)], 0.0)
    b.add("irradiation_events", [(2,), (3,)], 0.0)
    b.mark("p.instances", 0, 41, 0.0)
    b.mark("p.instances", 0, 42, 0.0)
    b.mark("p.instances", 1, 7, 0.0)
    inserted: list[tuple[str, int]] = []

    def fail_on_irradiation(table: str, batch: list[rows.Row]) -> None:
        if table == "irradiation_events":
            raise RuntimeError("engine down")
        inserted.append((table, len(batch)))

    with pytest.raises(RuntimeError):
        b.flush(fail_on_irradiation)
    assert inserted == [("instances", 1)] and b.pending_rows == 2  # only the failed table stays
    offsets = b.flush(lambda t, r: inserted.append((t, len(r))))
    assert inserted == [("instances", 1), ("irradiation_events", 2)]  # instances not re-sent
    assert offsets == {("p.instances", 0): 43, ("p.instances", 1): 8}
    assert b.empty and b.flush(lambda t, r: None) == {}


def test_batcher_forgets_revoked_partitions() -> None:
    b = Batcher()
    b.mark("p.exams", 0, 5, 0.0)
    b.mark("p.exams", 1, 9, 0.0)
    b.forget([("p.exams", 0)])
    assert b.flush(lambda t, r: None) == {("p.exams", 1): 10}
