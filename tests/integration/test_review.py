"""Reviewing DRL exceedances: an open alert leaves the open list once a verdict is recorded (endpoint and direct)."""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import UTC, datetime

import pytest

from schemas.config import Settings, load_settings
from schemas.events import DoseAlert, ExamDose
from sinks.clickhouse import Database
from sinks.query_server import QueryServer
from sinks.reviews import Review, ReviewError, record
from sinks.rows import COLUMNS, rows_for
from sinks.sql import ensure_token, query, token_path

NOW = datetime(2024, 3, 4, 2, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_for(db: Database, port: int) -> Settings:
    return load_settings(None, env={
        "RADPULSE_CONFIG": os.devnull,
        "RADPULSE_CLICKHOUSE__URL": f"chdb://{db.target.path}?database={db.database}",
        "RADPULSE_CLICKHOUSE__QUERY_PORT": str(port),
    })


def insert(db: Database, obj: object) -> None:
    for table, rows in rows_for(obj):
        db.insert(table, rows, COLUMNS[table])


def alert(n: int) -> DoseAlert:
    return DoseAlert(alert_id=f"a{n}", exam_key=f"e{n}", site_id="site-1", exam_version=2, created_at=NOW,
                     quantity="DLP", value=900.0 + n, unit="mGy·cm", drl_value=790.0, ratio=(900 + n) / 790,
                     drl_table="UK-NDRL-2022", drl_source="UKHSA 2022", exam_type="CT_HEAD", station_name="CT01",
                     modality="CT", accession_token="rpa1.x")


def test_verdicts_close_alerts_through_the_endpoint_and_directly(db: Database) -> None:
    for n in (1, 2):
        insert(db, ExamDose(exam_key=f"e{n}", site_id="site-1", version=2, updated_at=NOW, source="REPORT",
                            exam_type="CT_HEAD", start_utc=NOW, dlp_total_mgy_cm=900.0 + n))
        insert(db, alert(n))
    port = free_port()
    settings = settings_for(db, port)
    assert sorted(r[0] for r in query(settings, "SELECT alert_id FROM dose_alerts_open").rows) == ["a1", "a2"]

    server = QueryServer(db, port, token=ensure_token(token_path(settings))).start()  # as `radpulse sink` does
    try:
        assert record(settings, Review("a1", "site-1", "dr.physicist", "patient_size", "BMI 41")) == "endpoint"
        with pytest.raises(ReviewError, match="verdict"):
            record(settings, Review("a2", "site-1", "dr.physicist", "looks fine"))
        with pytest.raises(ReviewError, match="not a known"):
            record(settings, Review("nope", "site-1", "dr.physicist", "other"))
        assert [r[0] for r in query(settings, "SELECT alert_id FROM dose_alerts_open").rows] == ["a2"]
    finally:
        server.stop()
    assert record(settings, Review("a2", "site-1", "dr.physicist", "protocol_issue", "check mA")) == "direct"
    assert query(settings, "SELECT count() FROM dose_alerts_open").rows == [[0]]
    verdicts = query(settings, "SELECT alert_id, verdict, comment FROM dose_reviews FINAL ORDER BY alert_id").rows
    assert verdicts == [["a1", "patient_size", "BMI 41"], ["a2", "protocol_issue", "check mA"]]


def test_review_list_shows_likely_causes_and_dose_cumulative_lists_patients(
    db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main
    from schemas.events import Exam

    recent = datetime.now(UTC)
    for key, patient in (("e1", "p1"), ("e2", "p2")):
        insert(db, ExamDose(exam_key=key, site_id="site-1", version=2, updated_at=NOW, source="REPORT",
                            exam_type="CT_HEAD", start_utc=recent, dlp_total_mgy_cm=30000.0, event_count=4))
        insert(db, Exam(exam_key=key, site_id="site-1", version=2, status="complete", updated_at=NOW,
                        patient_pseudonym=patient, start_utc=recent, series_count=2))
    insert(db, dataclasses.replace(alert(1), patient_weight_kg=120.0))
    monkeypatch.setenv("RADPULSE_CONFIG", os.devnull)
    monkeypatch.setenv("RADPULSE_CLICKHOUSE__URL", f"chdb://{db.target.path}?database={db.database}")
    monkeypatch.setenv("RADPULSE_CLICKHOUSE__QUERY_PORT", str(free_port()))
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["review", "list"]) == 0
    listed = capsys.readouterr().out
    assert "large patient" in listed  # 120 kg ≥ 90 kg
    assert main(["dose", "cumulative"]) == 0
    out = capsys.readouterr().out
    # 30000 mGy·cm × 0.0021 (head) = 63 mSv ≥ 50 mSv: both patients are over the default threshold
    assert "p1" in out and "p2" in out and "63" in out
