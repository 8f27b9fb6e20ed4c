"""The dose views on the real engine: k-anonymous peer benchmark, daily DRL compliance, completeness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import DoseAlert, ExamDose
from sinks.clickhouse import Database
from sinks.rows import COLUMNS, rows_for

T0 = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)


def add_exams(db: Database, site: str, n: int, dlp: float, *, not_patient: bool = False, source: str = "REPORT",
              station: str = "CT01") -> list[ExamDose]:
    exams = [
        ExamDose(exam_key=f"{site}-{station}-{i}-{not_patient}", site_id=site, version=2, updated_at=T0,
                 source=source, station_name=station, modality="CT", exam_type="CT_HEAD", not_patient=not_patient,
                 start_utc=T0 + timedelta(minutes=10 * i), dlp_total_mgy_cm=dlp + i,
                 patient_weight_kg=70.0 if i % 2 else None)
        for i in range(n)
    ]
    rows = [row for e in exams for _, rs in rows_for(e) for row in rs]
    db.insert("exam_dose", rows, COLUMNS["exam_dose"])
    return exams


def benchmark(db: Database) -> list[tuple]:
    return db.query("SELECT site_id, peer_label, exams, sites FROM dose_benchmark WHERE quantity = 'DLP' "
                    "ORDER BY site_id").rows


def test_benchmark_needs_five_sites_with_twenty_exams_each(db: Database) -> None:
    for s in range(4):
        add_exams(db, f"site-{s}", 20, 500 + 50 * s)
    add_exams(db, "site-small", 19, 700)  # too few exams: does not count as a contributing site
    assert benchmark(db) == [], "a group of 4 sites must stay hidden"
    add_exams(db, "site-4", 25, 900)
    rows = benchmark(db)
    assert sorted(r[0] for r in rows) == [f"site-{s}" for s in range(5)]
    assert all(r[3] == 5 for r in rows)
    labels = {r[1] for r in rows}
    assert len(labels) == 5 and not any("site-" in label[5:] for label in labels)  # pseudonymous labels only


def test_qa_exams_stay_out_of_statistics_but_visible(db: Database) -> None:
    add_exams(db, "site-a", 10, 400)
    add_exams(db, "site-a", 5, 5000, not_patient=True)
    daily = db.query("SELECT exams, dlp_p50 FROM dose_daily WHERE site_id = 'site-a'").rows
    assert daily == [(10, 405.0)]  # quantileExact picks a member: the upper middle of 400..409
    assert db.scalar("SELECT countIf(not_patient) FROM exam_dose_latest") == 5


def test_daily_compliance_and_completeness(db: Database) -> None:
    exams = add_exams(db, "site-a", 8, 600)
    exams += add_exams(db, "site-a", 2, 0, source="HEADER", station="CT02")
    over = exams[7]
    alert = DoseAlert(alert_id="x1", exam_key=over.exam_key, site_id="site-a", exam_version=2, created_at=T0,
                      quantity="DLP", value=over.dlp_total_mgy_cm or 0, unit="mGy·cm", drl_value=600, ratio=1.01,
                      drl_table="UK-NDRL-2022", drl_source="UKHSA", exam_type="CT_HEAD")
    db.insert("dose_alerts", [row for _, rs in rows_for(alert) for row in rs], COLUMNS["dose_alerts"])
    ct01 = db.query("SELECT exams, exams_within_drl, pct_within_drl FROM dose_daily WHERE station_name = 'CT01'").rows
    assert ct01 == [(8, 7, 87.5)]
    completeness = db.query("SELECT station_name, pct_with_report, pct_header_only, pct_with_weight "
                            "FROM dose_completeness ORDER BY station_name").rows
    assert completeness == [("CT01", 100.0, 0.0, 50.0), ("CT02", 0.0, 100.0, 50.0)]
