"""A restarted worker recovers every table record: no instance folded before the restart is lost.

Instances are produced straight to ``<prefix>.instances`` (no edge: the subject is the worker's changelog), none of
them twice, so an exam record lost in recovery cannot be repaired by a resend. On the embedded tansu broker, whose
high watermark after a multi-record batch is the batch's first offset + 1, Faust's recovery stopped short of the
changelog's end (2,960 of 3,000 updates measured) until the worker produced one record per batch there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.streams import synthetic_events
from schemas import codec
from schemas.events import Exam
from tests.conftest import REPO

pytestmark = pytest.mark.kafka

EXAMS, PER_EXAM, BEFORE = 8, 60, 45


def _worker(tmp_path: Path, bootstrap: str, prefix: str, name: str, idle_close_s: float) -> subprocess.Popen[bytes]:
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull, "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": prefix, "RADPULSE_STREAMS__DATA_DIR": str(tmp_path / name),
        "RADPULSE_STREAMS__IDLE_CLOSE_S": str(idle_close_s), "RADPULSE_STREAMS__TICK_INTERVAL_S": "1",
        "RADPULSE_STREAMS__QUIET_MINUTES": "100000",
    }
    return subprocess.Popen([sys.executable, "-m", "cli.main", "streams", "--web-port", "0", "--loglevel", "warn"],
                            env=env, cwd=REPO, stdout=open(tmp_path / f"worker-{name}.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _committed(bootstrap: str, prefix: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-streams", "enable.auto.commit": False})
    try:
        tps = [TopicPartition(f"{prefix}.instances", p) for p in range(4)]
        return sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=10))
    except Exception:
        return 0
    finally:
        c.close()


def _produce(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for key, value in events:
        p.produce(topic, value, key)
    assert p.flush(30) == 0


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-1500:] for p in tmp_path.glob("worker-*.log"))


def test_a_restarted_worker_recovers_every_fold(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> None:
    events, _ = synthetic_events(EXAMS, PER_EXAM, seed=3)
    events = list(dict.fromkeys(events))  # no resends: a lost fold could not come back
    seen: dict[bytes, int] = {}
    before, after = [], []
    for key, value in events:
        seen[key] = seen.get(key, 0) + 1
        (before if seen[key] <= BEFORE else after).append((key, value))
    a = _worker(tmp_path, kafka_bootstrap, topic_prefix, "a", idle_close_s=3600)
    b: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 120
        while not _logs(tmp_path).count("created topic") and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        _produce(kafka_bootstrap, f"{topic_prefix}.instances", before)
        deadline = time.monotonic() + 180
        while _committed(kafka_bootstrap, topic_prefix) < len(before):
            assert time.monotonic() < deadline and a.poll() is None, \
                f"worker a did not commit every event:\n{_logs(tmp_path)}"
            time.sleep(1)
        a.send_signal(signal.SIGTERM)
        a.wait(30)
        b = _worker(tmp_path, kafka_bootstrap, topic_prefix, "b", idle_close_s=4)
        _produce(kafka_bootstrap, f"{topic_prefix}.instances", after)
        reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}-check",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        reader.subscribe([f"{topic_prefix}.exams"])
        latest: dict[bytes, Exam] = {}
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline:
                for msg in reader.consume(500, 0.5):
                    if not msg.error():
                        exam = codec.decode(Exam, msg.value() or b"")
                        if exam.version >= getattr(latest.get(msg.key() or b""), "version", 0):
                            latest[msg.key() or b""] = exam
                complete = [e for e in latest.values() if e.status == "complete"]
                if len(complete) == EXAMS and all(e.instance_count == PER_EXAM for e in complete):
                    break
        finally:
            reader.close()
        counts = sorted((e.status, e.instance_count) for e in latest.values())
        assert counts == [("complete", PER_EXAM)] * EXAMS, f"{counts}\n{_logs(tmp_path)}"
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
