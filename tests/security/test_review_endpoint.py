"""Issue 9, attack 2 (CSRF on DRL reviews), replayed against a real `radpulse sink` process.

A review write needs the endpoint's token *and* ``Content-Type: application/json``; a foreign ``Origin`` is refused
whatever else the request carries. Only the legitimate write lands in ``dose_reviews``.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from schemas import codec
from schemas.events import DoseAlert, ExamDose
from tests.security.sqlsink import Sink, start_sink

PREFIX = "rv" + str(time.time_ns())[-8:]
NOW = datetime(2024, 3, 4, 2, 0, tzinfo=UTC)
REVIEW = {"alert_id": "al-1", "site_id": "site-1", "reviewer": "mallory", "verdict": "patient_size", "comment": "x"}


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Sink]:
    s = start_sink(tmp_path_factory.mktemp("rvsink"), kafka_bootstrap, PREFIX)
    alert = DoseAlert(alert_id="al-1", exam_key="e1", site_id="site-1", exam_version=2, created_at=NOW,
                      quantity="DLP", value=900.0, unit="mGy·cm", drl_value=790.0, ratio=900 / 790,
                      drl_table="UK-NDRL-2022", drl_source="UKHSA 2022", exam_type="CT_HEAD", station_name="CT01",
                      modality="CT", accession_token="rpa1.x")
    dose = ExamDose(exam_key="e1", site_id="site-1", version=2, updated_at=NOW, source="REPORT",
                    exam_type="CT_HEAD", start_utc=NOW, dlp_total_mgy_cm=900.0)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(f"{PREFIX}.exam_dose", codec.encode(dose), b"e1")
    producer.produce(f"{PREFIX}.dose_alerts", codec.encode(alert), b"e1")
    assert producer.flush(10) == 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and s.sql("SELECT count() FROM dose_alerts_open").json()["rows"] != [[1]]:
        time.sleep(0.3)
    yield s
    assert s.stop() == 0, s.log.read_text()


def reviews(sink: Sink) -> list[list[object]]:
    return sink.sql("SELECT alert_id, reviewer FROM dose_reviews ORDER BY reviewed_at").json()["rows"]


def post_review(sink: Sink, headers: dict[str, str], body: bytes | None = None) -> int:
    return sink.request("/review", body or json.dumps(REVIEW).encode(), headers).status


def test_token_file_is_private(sink: Sink) -> None:
    mode = stat.S_IMODE(os.stat(sink.token_file).st_mode)
    assert mode == 0o600 and len(sink.token) >= 32


@pytest.mark.parametrize(("headers", "status"), [
    ({"Content-Type": "text/plain"}, 401),  # the CSRF of issue 9: a form post, no credentials
    ({"Content-Type": "application/json"}, 401),
    ({"Content-Type": "application/json", "Authorization": "Bearer wrong"}, 401),
    ({"Content-Type": "application/json", "Authorization": "Basic dXNlcjpwdw=="}, 401),
    ({"Content-Type": "text/plain", "Origin": "http://evil.example", "Authorization": "TOKEN"}, 403),
    ({"Content-Type": "application/json", "Origin": "http://evil.example", "Authorization": "TOKEN"}, 403),
    ({"Content-Type": "application/json", "Origin": "null", "Authorization": "TOKEN"}, 403),
    ({"Content-Type": "text/plain", "Authorization": "TOKEN"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded", "Authorization": "TOKEN"}, 415),
])
def test_review_write_without_token_json_or_own_origin_is_refused(
    sink: Sink, headers: dict[str, str], status: int
) -> None:
    if headers.get("Authorization") == "TOKEN":
        headers = {**headers, "Authorization": f"Bearer {sink.token}"}
    assert post_review(sink, headers) == status
    assert reviews(sink) == []
    assert sink.sql("SELECT count() FROM dose_alerts_open").json()["rows"] == [[1]]


def test_every_request_needs_the_token(sink: Sink) -> None:
    assert sink.request("/health", method="GET").status == 401
    assert sink.sql("SELECT 1", token="").status == 401
    assert sink.sql("SELECT 1", token="not-the-token").status == 401
    assert sink.sql("SELECT 1", Origin="http://evil.example").status == 403
    assert sink.request("/health", method="GET", headers={"Authorization": f"Bearer {sink.token}"}).status == 200
    assert sink.sql("SELECT 1", Origin=f"http://127.0.0.1:{sink.port}").status == 200


def test_radpulse_review_records_with_the_token(sink: Sink) -> None:
    done = sink.cli("review", "record", "al-1", "--verdict", "repeat", "--reviewer", "dr.physicist")
    assert done.returncode == 0 and "recorded (endpoint)" in done.stdout, done.stderr
    assert reviews(sink) == [["al-1", "dr.physicist"]]
    assert sink.sql("SELECT count() FROM dose_alerts_open").json()["rows"] == [[0]]
