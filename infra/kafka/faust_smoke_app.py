"""Minimal faust-streaming app used to check faust/aiokafka against the start-kafka.sh broker.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 FAUST_DATADIR=/tmp/faust-smoke \\
        python -m faust -A faust_smoke_app worker -l info        # (cwd = infra/kafka)

Feed it with `python faust_smoke_app.py produce N` (confluent-kafka producer, keyed by modality,
so the table is co-partitioned with the source topic). The agent prints one "SMOKE received" line
per event batch and the table (with a changelog topic) keeps per-modality counts; on a second run
the counts continue from the changelog, which proves table recovery.
"""

from __future__ import annotations

import json
import os
import sys

import faust

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")

app = faust.App(
    os.environ.get("FAUST_APP_ID", "radpulse-kafka-smoke"),
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    datadir=os.environ.get("FAUST_DATADIR", "/tmp/faust-smoke"),
    topic_partitions=4,
    topic_replication_factor=1,
    web_enabled=False,
    producer_acks=-1,
)


class Exam(faust.Record, serializer="json"):
    modality: str
    dose_mgy: float


exams = app.topic(os.environ.get("FAUST_TOPIC", "smoke-exams"), value_type=Exam)
counts = app.Table("smoke-modality-counts", default=int, partitions=4)


@app.agent(exams)
async def count_exams(stream):
    seen = 0
    async for exam in stream:
        modality = exam.modality
        counts[modality] += 1
        seen += 1
        if seen % 25 == 0:
            print(f"SMOKE received {seen} events in this run; last {modality} {exam.dose_mgy} mGy", flush=True)


@app.timer(interval=5.0)
async def report():
    snapshot = {k: counts[k] for k in sorted(counts.keys())}
    print(f"SMOKE table counts={json.dumps(snapshot)} total={sum(snapshot.values())}", flush=True)


def produce(n: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "acks": "all"})
    mods = ["CT", "MR", "CR", "US", "NM"]
    for i in range(n):
        m = mods[i % len(mods)]
        p.produce(exams.get_topic_name(), key=m.encode(),
                  value=json.dumps({"modality": m, "dose_mgy": round(1.5 + i % 7, 1)}).encode())
    assert p.flush(30) == 0
    print(f"produced {n} exam events to {exams.get_topic_name()}")


if __name__ == "__main__" and len(sys.argv) >= 2 and sys.argv[1] == "produce":
    produce(int(sys.argv[2]) if len(sys.argv) > 2 else 100)
