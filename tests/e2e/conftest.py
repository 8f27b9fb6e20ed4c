"""The whole pipeline over real sockets: simulator → C-STORE (DCMTK storescu or pynetdicom) → edge → Kafka →
Faust worker process(es) → sink → chDB, compared with the simulator's ground truth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from edge_ingest.node import EdgeNode
from edge_ingest.pseudonyms import uid_pseudonym
from schemas.config import Settings, load_settings
from sinks.clickhouse import Database, connect
from sinks.migrate import migrate
from sinks.writer import SinkWriter
from synthetic_hospital.exams import Plan
from synthetic_hospital.hospital import default_hospital
from synthetic_hospital.plan import plan_days
from synthetic_hospital.sender import send, write_dicom_dir
from tests.conftest import REPO

SITE_TZ = "Asia/Shanghai"


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    node: EdgeNode
    db: Database
    tmp: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stop_sink: threading.Event = field(default_factory=threading.Event)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        env = self.env | {"RADPULSE_STREAMS__DATA_DIR": str(self.tmp / f"streams-{name}")}
        log = open(self.tmp / f"worker-{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "streams", "--web-port", "0", "--loglevel",
             os.environ.get("RADPULSE_TEST_WORKER_LOGLEVEL", "warn")],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(30)

    def send_storescu(self, plan: Plan, storescu: str) -> None:
        """DCMTK sends each device's folder with that device's AE title, as a modality would."""
        folder = self.tmp / f"dicom-{uuid.uuid4().hex[:6]}"
        dirs = write_dicom_dir(plan, folder)
        env = dict(os.environ, TCP_NODELAY="1")  # DCMTK 3.6.7 otherwise waits on delayed ACKs (~20 objects/s)
        for device in plan.devices:
            if device.key not in dirs:
                continue
            result = subprocess.run(
                [storescu, "-aet", device.ae_title, "-aec", "RADPULSE", "+sd", "+r", "127.0.0.1",
                 str(self.node.port), str(dirs[device.key])],
                capture_output=True, text=True, env=env, timeout=600,
            )
            assert result.returncode == 0, result.stderr[-2000:]

    def send_pynetdicom(self, plan: Plan) -> None:
        stats = send(plan, "127.0.0.1", self.node.port, progress=False)
        assert stats.ok and stats.failed == 0, stats

    def complete_exams(self) -> int:
        return int(self.db.scalar("SELECT countIf(status = 'complete') FROM exams_latest"))

    def wait_complete(self, expected: int, timeout_s: float = 240, instances: int | None = None) -> None:
        """Until `expected` exams are complete (and hold `instances` instances in all): an instance that waited in
        the edge's spool (e.g. while a fresh broker elected its coordinator) reopens its exam a little later."""
        deadline = time.monotonic() + timeout_s
        sql = "SELECT countIf(status = 'complete'), sumIf(instance_count, status = 'complete') FROM exams_latest"
        while time.monotonic() < deadline:
            done, held = self.db.query(sql).rows[0]
            if done >= expected and (instances is None or held == instances):
                return
            time.sleep(1)
        logs = "\n".join((self.tmp / p).read_text(errors="replace")[-1500:] for p in os.listdir(self.tmp)
                         if p.startswith("worker-"))
        done, held = self.db.query(sql).rows[0]
        raise AssertionError(f"{done} of {expected} exams complete holding {held} of {instances} instances; "
                             f"worker logs:\n{logs}")

    def exams(self) -> dict[str, dict[str, object]]:
        result = self.db.query(
            "SELECT exam_key, station_name, start_utc, end_utc, instance_count, series_count, status, version, "
            "not_patient FROM exams_latest"
        )
        return {row[0]: dict(zip(result.columns, row, strict=True)) for row in result.rows}

    def exam_key(self, study_uid: str) -> str:
        return uid_pseudonym(self.node.keys, study_uid)


def compare_with_truth(pipeline: Pipeline, plan: Plan) -> None:
    """Every planned exam is in ClickHouse once, with its device, instance and series counts, and start/end
    within one second."""
    truth = plan.truth()
    exams = pipeline.exams()
    assert len(exams) == len(truth["exams"]), (len(exams), len(truth["exams"]))
    problems = []
    for t in truth["exams"]:
        got = exams.get(pipeline.exam_key(t["study_instance_uid"]))
        if got is None:
            problems.append(f"{t['exam_id']}: missing")
            continue
        start = datetime.fromisoformat(t["start_utc"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(t["end_utc"].replace("Z", "+00:00"))
        checks = {
            "station": got["station_name"] == t["station_name"],
            "instances": got["instance_count"] == t["n_instances"],
            "series": got["series_count"] == t["n_series"],
            "start": abs((got["start_utc"] - start).total_seconds()) <= 1,
            "end": abs((got["end_utc"] - end).total_seconds()) <= 1,
            "status": got["status"] == "complete",
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            problems.append(f"{t['exam_id']}: {bad} got={got} truth_start={start} truth_end={end} "
                            f"n={t['n_instances']} series={t['n_series']}")
    assert not problems, "\n".join(problems[:20])


@pytest.fixture
def pipeline(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, chdb_root: Path) -> Iterator[Pipeline]:
    yield from _pipeline(tmp_path, kafka_bootstrap, topic_prefix, chdb_root)


@pytest.fixture
def hl7_pipeline(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, chdb_root: Path) -> Iterator[Pipeline]:
    """``pipeline`` with the edge's MLLP listener enabled on a free port."""
    yield from _pipeline(tmp_path, kafka_bootstrap, topic_prefix, chdb_root, hl7=True)


def _pipeline(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, chdb_root: Path,
              hl7: bool = False) -> Iterator[Pipeline]:
    database = "e2e_" + uuid.uuid4().hex[:8]
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull,
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix,
        "RADPULSE_SITE__TIMEZONE": SITE_TZ,
        "RADPULSE_EDGE__PORT": "0",
        "RADPULSE_EDGE__HOST": "127.0.0.1",
        "RADPULSE_EDGE__DATA_DIR": str(tmp_path / "edge"),
        "RADPULSE_HL7__ENABLED": "true" if hl7 else "false",
        "RADPULSE_HL7__HOST": "127.0.0.1",
        "RADPULSE_HL7__PORT": "0",
        "RADPULSE_STREAMS__IDLE_CLOSE_S": "8",
        "RADPULSE_STREAMS__TICK_INTERVAL_S": "1",
        "RADPULSE_CLICKHOUSE__URL": f"chdb://{chdb_root}?database={database}",
    }
    settings = load_settings(None, env=env)
    db = connect(settings.clickhouse.url)
    migrate(db)
    node = EdgeNode(settings)
    node.start()
    assert not hl7 or node.mllp is not None, "HL7 listener did not start"
    p = Pipeline(settings, env, node, db, tmp_path)
    writer = SinkWriter(settings, db, group_id=f"{topic_prefix}-sink",
                        consumer_config={"session.timeout.ms": 6000, "fetch.wait.max.ms": 100})
    sink_thread = threading.Thread(target=writer.run, args=(p.stop_sink,), daemon=True)
    sink_thread.start()
    try:
        yield p
    finally:
        for proc in p.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        p.stop_sink.set()
        sink_thread.join(30)
        node.stop()
        db.command(f"DROP DATABASE IF EXISTS {database}")


def store_datasets(port: int, items: list[tuple[str, Dataset]]) -> None:
    """C-STORE each (sender AE title, dataset) over one association per sender; every one must succeed."""
    for title in dict.fromkeys(t for t, _ in items):
        datasets = [ds for t, ds in items if t == title]
        ae = AE(ae_title=title)
        for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
            ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", port, ae_title="RADPULSE")
        assert assoc.is_established
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                assert status and status.Status == 0, status
        finally:
            assoc.release()


def small_plan(devices: tuple[str, ...] = ("CT1", "MR1", "DX1"), per_device: int = 6, seed: int = 11) -> Plan:
    plan = plan_days(default_hospital(), date(2024, 3, 4), 1, seed, SITE_TZ, scale=0.04)
    return plan.subset(device_keys=devices, per_device=per_device)
