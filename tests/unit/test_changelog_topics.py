"""Every table changelog the worker creates is compacted with daily segments (Kafka's cleaner skips the active
segment, 7 days by default), and the worker's consumer long-polls briefly (tansu holds a fetch to its end)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from schemas.config import load_settings
from streams.app import FETCH_MAX_WAIT_MS, create_app
from streams.exams_agent import ExamAgents
from streams.kpi_agent import KpiAgents
from streams.worker import internal_topics


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(None, env={"RADPULSE_CONFIG": "/dev/null", "RADPULSE_KAFKA__TOPIC_PREFIX": "cl",
                                        "RADPULSE_STREAMS__DATA_DIR": str(tmp_path)})
    sa = create_app(settings, datadir=str(tmp_path))
    ExamAgents(sa)
    KpiAgents(sa)
    return sa


def test_changelogs_are_compacted_with_daily_segments(tmp_path: Path) -> None:
    topics = {name: conf for name, _n, conf in internal_topics(_app(tmp_path).app)}
    changelogs = {name: conf for name, conf in topics.items() if name.endswith("-changelog")}
    assert set(changelogs) == {f"cl-streams-{t}-changelog" for t in ("exams", "kpi_exams", "kpi_links", "kpi_dirty",
                                                                          "kpi_closed_days")}
    for name, conf in changelogs.items():
        assert conf == {"cleanup.policy": "compact", "segment.ms": str(86_400_000)}, name


def test_the_worker_consumer_long_polls_briefly(tmp_path: Path) -> None:
    app = _app(tmp_path).app

    async def create():  # type: ignore[no-untyped-def]  # aiokafka wants a running loop
        return app.consumer._thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(create())
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
