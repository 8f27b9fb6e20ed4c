"""The figures of migration 0003 on the real engine, each against a hand-computed expectation: local dose days,
the day's waits, the patient order of the day, patient cumulative dose, dose by protocol, likely causes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemas.events import DoseAlert, Exam, ExamDose, ExamTiming, InstanceEvent, IrradiationEvent
from sinks.clickhouse import Database
from sinks.rows import COLUMNS, rows_for

DAY = date(2026, 12, 6)
T0 = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai


def insert(db: Database, *objs: object) -> None:
    by_table: dict[str, list] = {}
    for obj in objs:
        for table, rows in rows_for(obj):
            by_table.setdefault(table, []).extend(rows)
    for table, rows in by_table.items():
        db.insert(table, rows, COLUMNS[table])


def timing(key: str, start: datetime, *, arrival_min: float | None = None, order_min: float | None = None,
           device: str = "CT01", local_date: date = DAY, **kw: object) -> ExamTiming:
    return ExamTiming(
        exam_key=key, site_id="s", version=1, updated_at=T0, device=device, modality="CT", exam_type="CT_HEAD",
        local_date=local_date, start_utc=start,
        arrival_to_start_s=None if arrival_min is None else arrival_min * 60,
        order_to_start_s=None if order_min is None else order_min * 60, **kw,
    )


def exam(key: str, patient: str, *, series: int = 3, start: datetime = T0) -> Exam:
    return Exam(exam_key=key, site_id="s", version=1, status="complete", updated_at=T0, patient_pseudonym=patient,
                series_count=series, start_utc=start)


def dose(key: str, start: datetime, **kw: object) -> ExamDose:
    values: dict[str, object] = {"modality": "CT", "exam_type": "CT_HEAD", "source": "REPORT"} | kw
    return ExamDose(exam_key=key, site_id="s", version=1, updated_at=T0, start_utc=start, **values)  # type: ignore[arg-type]


def test_the_days_waits_per_device(db: Database) -> None:
    insert(
        db,
        timing("a", T0, arrival_min=10, order_min=60),
        timing("b", T0 + timedelta(minutes=20), arrival_min=20, order_min=120),
        timing("c", T0 + timedelta(minutes=40), arrival_min=30),
        timing("d", T0 + timedelta(minutes=60), arrival_min=60),
        timing("e", T0 + timedelta(minutes=80)),  # no arrival known: counts in neither
        timing("qa", T0, arrival_min=500, not_patient=True),
        timing("stopped", T0, arrival_min=500, discontinued=True),
    )
    row = db.query("SELECT arrival_n, arrival_mean_min, arrival_p50_min, arrival_p90_min, order_n, order_mean_min, "
                   "order_p50_min, order_p90_min FROM waits_daily WHERE device = 'CT01' AND local_date = '2026-12-06'"
                   ).rows
    # arrival [10, 20, 30, 60]: mean 30; P50 at rank 1.5 → 25; P90 at rank 2.7 → 30 + 0.7 × 30 = 51
    # order [60, 120]: mean 90; P50 90; P90 at rank 0.9 → 60 + 0.9 × 60 = 114
    assert row == [(4, 30.0, 25.0, 51.0, 2, 90.0, 90.0, 114.0)]
    # the same figures from the streams' pure function, so SQL and Python agree on the definition
    from streams.utilization import WaitTime, summarize_waits

    waits = [WaitTime(k, "CT01", "CT", 9, a and a * 60.0, o and o * 60.0, None)
             for k, a, o in (("a", 10, 60), ("b", 20, 120), ("c", 30, None), ("d", 60, None), ("e", None, None))]
    summary = summarize_waits(waits, "device")["CT01"]
    assert (summary.arrival_n, summary.arrival_p50_s, summary.arrival_p90_s) == (4, 1500.0, 3060.0)
    assert (summary.order_n, summary.order_p50_s, summary.order_p90_s) == (2, 5400.0, 6840.0)


def test_patient_order_of_the_day(db: Database) -> None:
    insert(
        db,
        timing("a", T0, arrival_min=60),  # arrived 08:00, taken first
        timing("b", T0 + timedelta(minutes=20), arrival_min=10),  # arrived 09:10, taken second
        timing("c", T0 + timedelta(minutes=40), arrival_min=50),  # arrived 08:50, taken third
        exam("a", "pA"), exam("b", "pB"), exam("c", "pC"),
    )
    rows = db.query("SELECT patient_pseudonym, taken, arrived, arrival_wait_min FROM patient_order_daily "
                    "WHERE device = 'CT01' ORDER BY taken").rows
    assert rows == [("pA", 1, 1, 60.0), ("pB", 2, 3, 10.0), ("pC", 3, 2, 50.0)]  # C arrived before B, waited longer


def test_dose_daily_groups_by_the_local_day(db: Database) -> None:
    late = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # 01:00 on 7 December in Asia/Shanghai
    insert(db, dose("n", late, dlp_total_mgy_cm=500.0), timing("n", late, local_date=date(2026, 12, 7)),
           dose("untimed", T0, dlp_total_mgy_cm=700.0))
    rows = db.query("SELECT toString(day), exams FROM dose_daily ORDER BY day").rows
    assert rows == [("2026-12-06", 1), ("2026-12-07", 1)]  # the untimed exam falls back to its UTC day


def test_patient_cumulative_dose_over_a_rolling_window(db: Database) -> None:
    now = datetime.now(UTC)
    recent, old = now - timedelta(days=3), now - timedelta(days=20)
    insert(
        db,
        dose("chest", recent, exam_type="CT_CHEST", dlp_total_mgy_cm=400.0), exam("chest", "p1"),
        dose("abd", recent, exam_type="CT_ABDOMEN_PELVIS", dlp_total_mgy_cm=500.0), exam("abd", "p1"),
        dose("rf", recent, modality="RF", exam_type="RF_BARIUM_SWALLOW", dap_total_gy_cm2=12.5, dose_rp_mgy=150.0),
        exam("rf", "p1"),
        dose("head", old, exam_type="CT_HEAD", dlp_total_mgy_cm=1000.0), exam("head", "p1"),
        dose("other", recent, dlp_total_mgy_cm=50.0), exam("other", "p2"),
        dose("qa", recent, dlp_total_mgy_cm=9999.0, not_patient=True), exam("qa", "p1"),
    )
    sql = ("SELECT exams, ct_dlp_mgy_cm, ct_effective_dose_msv, dap_gy_cm2, dose_rp_mgy "
           "FROM patient_cumulative_dose(window_days={w}) WHERE patient_pseudonym = 'p1'")
    # 14 days: DLP 400 + 500 = 900; E = 400 × 0.014 + 500 × 0.015 = 5.6 + 7.5 = 13.1 mSv; DAP 12.5; RP 150
    assert db.query(sql.format(w=14)).rows == [(3, 900.0, 13.1, 12.5, 150.0)]
    # 30 days adds the head CT: DLP 1900; E 13.1 + 1000 × 0.0021 = 15.2
    assert db.query(sql.format(w=30)).rows == [(4, 1900.0, 15.2, 12.5, 150.0)]


def _report_only(key: str, protocol: str, dlp: float) -> InstanceEvent:
    from schemas.events import DoseReport

    report = DoseReport(kind="CT", events=(
        IrradiationEvent(event_pseudonym=f"{key}-loc", acquisition_protocol="Topogram",
                         acquisition_type="CONSTANT_ANGLE"),
        IrradiationEvent(event_pseudonym=f"{key}-1", acquisition_protocol=protocol, dlp_mgy_cm=dlp),
    ))
    return InstanceEvent(event_id=f"ev-{key}", site_id="s", edge_id="e", received_at=T0, calling_ae="CT1",
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67", transfer_syntax_uid="1.2.840.10008.1.2.1",
                         instance_pseudonym=f"i-{key}", study_pseudonym=key, modality="SR", dose_report=report)


def test_dose_by_protocol_within_an_exam_type(db: Database) -> None:
    routine = [dose(f"r{i}", T0, protocol="Head Routine", dlp_total_mgy_cm=d) for i, d in enumerate((800, 900, 1000))]
    trauma = [dose(f"t{i}", T0, protocol="Head Trauma", dlp_total_mgy_cm=d) for i, d in enumerate((1200, 1600))]
    # a report-only exam: no header protocol, its report's (non-localizer) acquisition protocol counts
    insert(db, *routine, *trauma, dose("sr", T0, dlp_total_mgy_cm=1400.0), _report_only("sr", "Head Trauma", 1400.0))
    rows = db.query("SELECT protocol, exams, dlp_p50, dlp_p75 FROM dose_by_protocol WHERE exam_type = 'CT_HEAD' "
                    "ORDER BY protocol").rows
    # routine [800, 900, 1000]: P50 900, P75 at rank 1.5 → 950; trauma [1200, 1400, 1600]: 1400, 1500
    assert rows == [("Head Routine", 3, 900.0, 950.0), ("Head Trauma", 3, 1400.0, 1500.0)]


def test_likely_causes_of_an_exceedance(db: Database) -> None:
    objs: list[object] = []
    for i in range(4):
        objs += [dose(f"n{i}", T0, protocol="Head Routine", event_count=4, dlp_total_mgy_cm=900.0),
                 exam(f"n{i}", f"p{i}")]
    objs += [dose("x", T0, protocol="Head Trauma", event_count=9, dlp_total_mgy_cm=2100.0, patient_weight_kg=95.0),
             exam("x", "p9"),
             dose("y", T0 + timedelta(hours=2), protocol="Head Routine", event_count=4, dlp_total_mgy_cm=900.0),
             exam("y", "p9")]
    alert = DoseAlert(alert_id="al-x", exam_key="x", site_id="s", exam_version=1, created_at=T0, quantity="DLP",
                      value=2100.0, unit="mGy.cm", drl_value=970.0, ratio=2.16, drl_table="UK-NDRL-2022",
                      drl_source="UKHSA", exam_type="CT_HEAD", protocol="Head Trauma", patient_weight_kg=95.0)
    calm = DoseAlert(alert_id="al-n0", exam_key="n0", site_id="s", exam_version=1, created_at=T0, quantity="DLP",
                     value=980.0, unit="mGy.cm", drl_value=970.0, ratio=1.01, drl_table="UK-NDRL-2022",
                     drl_source="UKHSA", exam_type="CT_HEAD", protocol="Head Routine", patient_weight_kg=70.0)
    insert(db, *objs, alert, calm)
    causes = dict(db.query("SELECT alert_id, likely_causes FROM dose_alerts_open_causes").rows)
    # events [4, 4, 4, 4, 9, 4]: median 4; usual protocol Head Routine (5 of 6); p9 had y two hours after x
    assert causes == {
        "al-x": "large patient; more events (9 vs median 4); unusual protocol; repeat within 24 h",
        "al-n0": "",
    }


def test_cumulative_dose_alert_fires_for_a_patient_over_a_threshold(db: Database) -> None:
    from dashboards.macros import QueryContext, expand
    from dashboards.panels import QUERIES

    now = datetime.now(UTC)
    insert(
        db,  # two RF procedures of one patient: 3000 + 2500 mGy at the reference point ≥ 5000 mGy (5 Gy)
        dose("rf1", now - timedelta(days=5), modality="RF", dose_rp_mgy=3000.0), exam("rf1", "heavy"),
        dose("rf2", now - timedelta(hours=2), modality="RF", dose_rp_mgy=2500.0), exam("rf2", "heavy"),
        dose("rf3", now - timedelta(hours=3), modality="RF", dose_rp_mgy=4900.0), exam("rf3", "light"),
    )
    sql = expand(QUERIES["alert.patient_cumulative_dose"].sql, QueryContext(now - timedelta(days=1), now, 1.0, {}))
    assert db.query(sql, readonly=True).rows == [("s", "patients", "radiology", 1.0)]


def test_demo_busiest_hour_is_local(db: Database) -> None:
    from cli.up_cli import busiest_hour_sql

    # three exams start 01:xx UTC (09:xx in Asia/Shanghai), one at 03:10 UTC (11:10)
    starts = [T0 + timedelta(minutes=m) for m in (5, 20, 40, 130)]
    insert(db, *(Exam(exam_key=f"b{i}", site_id="s", version=1, status="complete", updated_at=T0, start_utc=t)
                 for i, t in enumerate(starts)))
    assert db.query(busiest_hour_sql("Asia/Shanghai")).rows == [(9, 3)]
    assert db.query(busiest_hour_sql("UTC")).rows == [(1, 3)]
