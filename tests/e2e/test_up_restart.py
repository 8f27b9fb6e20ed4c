"""`radpulse up` on the embedded (memory-only) broker, stopped and started mid-day: late instances of studies
that began before the stop are counted into their exams, resends are not, and the day's KPIs do not go back.

Real everything: the supervisor starts tansu, the edge, the Faust worker and the sink as processes; instances go
over DICOM associations; the answers come from chDB through the sink's SQL endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset

from cli.broker import free_port
from cli.supervisor import Supervisor
from schemas.config import Settings, load_settings
from sinks.sql import query
from synthetic_hospital.sender import iter_datasets
from tests.e2e.conftest import small_plan, store_datasets


@pytest.fixture
def up_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    env = {
        "RADPULSE_BROKER__PORT": str(free_port()),
        "RADPULSE_BROKER__SNAPSHOT_FILE": str(tmp_path / "broker" / "snapshot.avro"),
        "RADPULSE_EDGE__PORT": str(free_port()),
        "RADPULSE_EDGE__DATA_DIR": str(tmp_path / "edge"),
        "RADPULSE_HL7__ENABLED": "false",
        "RADPULSE_STREAMS__DATA_DIR": str(tmp_path / "streams"),
        "RADPULSE_STREAMS__WEB_PORT": str(free_port()),
        "RADPULSE_STREAMS__IDLE_CLOSE_S": "4",
        "RADPULSE_CLICKHOUSE__URL": f"chdb://{tmp_path / 'chdb'}",
        "RADPULSE_CLICKHOUSE__QUERY_PORT": str(free_port()),
        "RADPULSE_SITE__TIMEZONE": "Asia/Shanghai",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("RADPULSE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{env['RADPULSE_BROKER__PORT']}")
    monkeypatch.delenv("RADPULSE_CONFIG", raising=False)
    yield load_settings(None)


def wait_for(settings: Settings, sql: str, expected: object, timeout_s: float = 180) -> object:
    got: object = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = [tuple(r) for r in query(settings, sql).rows]
        except Exception as exc:  # the endpoint is not up yet
            got = exc
        if got == expected:
            return got
        time.sleep(1)
    return got


def test_up_restart_mid_day_counts_late_instances_once(up_env: Settings, tmp_path: Path) -> None:
    plan = small_plan(devices=("CT1", "DX1"), per_device=3, seed=21)
    pairs = list(iter_datasets(plan))
    split = {e.exam_id: e.n_instances // 2 for e in plan.exams}
    seen: dict[str, int] = {}
    before: list[tuple[str, Dataset]] = []
    after: list[tuple[str, Dataset]] = []
    for exam, ds in pairs:
        seen[exam.exam_id] = seen.get(exam.exam_id, 0) + 1
        (before if seen[exam.exam_id] <= max(1, split[exam.exam_id]) else after).append((exam.device.ae_title, ds))
    assert after, "the plan must leave late instances for after the restart"
    resent = before[:3]  # a PACS resending what radpulse already counted
    truth = sorted((e.n_instances,) for e in plan.exams)
    n_exams = len(plan.exams)
    count_sql = "SELECT instance_count FROM exams_latest ORDER BY instance_count"
    kpi_sql = "SELECT sum(exams) FROM device_kpis FINAL WHERE grain = 'day'"

    sup = Supervisor(up_env, log_dir=tmp_path / "logs")
    try:
        sup.start()
        store_datasets(up_env.edge.port, before)
        got = wait_for(up_env, "SELECT count() FROM exams_latest WHERE status = 'complete'", [(n_exams,)])
        assert got == [(n_exams,)], f"{got}; logs in {tmp_path / 'logs'}"
    finally:
        sup.stop()
    snapshot = Path(up_env.broker.snapshot_file)
    assert snapshot.exists(), "an orderly stop must save the embedded broker's state"

    sup = Supervisor(up_env, log_dir=tmp_path / "logs")
    try:
        sup.start()
        assert not snapshot.exists() and snapshot.with_name(snapshot.name + ".restored").exists()
        store_datasets(up_env.edge.port, after + resent)
        got = wait_for(up_env, count_sql, truth)
        assert got == truth, f"instance counts {got} != truth {truth}; logs in {tmp_path / 'logs'}"
        got = wait_for(up_env, kpi_sql, [(n_exams,)], timeout_s=60)
        assert got == [(n_exams,)], f"the day's KPIs count {got} exams, not {n_exams}"
    finally:
        sup.stop()
