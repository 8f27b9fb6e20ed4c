"""Device-day KPI and timing rows: a changeover names the coil before and after it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemas.events import Exam
from streams.hours import parse_hours
from streams.kpi_agent import DEFAULT_HOURS, day_kpi_events

T0 = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai


def mr(n: int, start_min: int, coil: str) -> Exam:
    start = T0 + timedelta(minutes=start_min)
    return Exam(exam_key=f"x{n}", site_id="site", version=2, status="complete", updated_at=start,
                station_name="MR1", modality="MR", start_utc=start, end_utc=start + timedelta(minutes=20),
                instance_count=100, series_count=4, mr_receive_coils=(coil,))


def test_a_changeover_names_the_previous_coil() -> None:
    exams = [mr(1, 0, "Head_20"), mr(2, 25, "Knee_18"), mr(3, 50, "Knee_18")]
    kpis, timings = day_kpi_events("site", "MR1", date(2024, 3, 4), exams, [], "Asia/Shanghai",
                                   parse_hours(DEFAULT_HOURS), 3600, version=1, now=T0)
    by_key = {t.exam_key: t for t in timings}
    assert by_key["x1"].previous_coil is None
    assert (by_key["x2"].previous_coil, by_key["x2"].coil, by_key["x2"].coil_changed) == ("Head_20", "Knee_18", True)
    assert (by_key["x3"].previous_coil, by_key["x3"].coil_changed) == ("Knee_18", False)
    assert len(kpis) == 25  # the day and its 24 hours
