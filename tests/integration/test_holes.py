"""A record the streams worker read past without processing is read again, and no commit passes it (issue 10).

After a SIGKILL of one of two workers, the survivor sometimes never processed one record of a partition it took
over: a record of an older fetch, delivered after the rebalance's seek, moved its read position past the records
the seek was meant to re-read. Faust then commits past them as a compaction gap (an instance lost), or with our
commit guard never commits that partition again (the exam stays short). A real worker on the real broker here
reads one record past without delivering it, exactly as Faust's fetch loop does; ``streams.holes`` must find the
hole and have it read again, and the commits must reach the end of both partitions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.config import load_settings
from streams.topics import create_topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
PER_PARTITION = 30
DROP = (0, 12)  # (partition, offset) read past once


def _committed(bootstrap: str, group: str, topic: str) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return [max(tp.offset, 0) for tp in c.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)]
    finally:
        c.close()


def test_a_record_read_past_is_read_again(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> None:
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull, "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix, "RADPULSE_KAFKA__PARTITIONS": "2",
        "RADPULSE_STREAMS__DATA_DIR": str(tmp_path / "streams"),
    }
    settings = load_settings(None, env=env)
    topic = settings.topic("instances")
    create_topics(settings, [(topic, 2, {})])
    out = tmp_path / "processed.jsonl"
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "tests.integration.hole_worker", str(out), *map(str, DROP)],
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
        for i in range(PER_PARTITION):  # a record at a time: the worker reads them as they come
            for p in (0, 1):
                producer.produce(topic, f"v{i}".encode(), f"k{p}".encode(), partition=p)
            producer.flush(10)
            time.sleep(0.05)
        group = f"{topic_prefix}-streams"
        deadline = time.monotonic() + 120
        committed = _committed(kafka_bootstrap, group, topic)
        while committed != [PER_PARTITION, PER_PARTITION] and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker exited: " + (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(1)
            committed = _committed(kafka_bootstrap, group, topic)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    processed = {tuple(json.loads(line)) for line in out.read_text().splitlines()}
    tail = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    assert DROP in processed, f"offset {DROP[1]} of partition {DROP[0]} was never processed; worker log:\n{tail}"
    assert processed == {(p, o) for p in (0, 1) for o in range(PER_PARTITION)}
    assert committed == [PER_PARTITION, PER_PARTITION], f"commits stopped at {committed}; worker log:\n{tail}"
