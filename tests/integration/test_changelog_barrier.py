"""The streams app's producer flush returns only once every table changelog write made before it is on the broker.

Faust commits source offsets, and a rebalance's recovery reads the changelogs up to their end, right after
``producer.flush()``. Faust's own flush returned while the last record was still being appended by aiokafka (one
record per batch on tansu: 19 of 448 writes, the last one of nearly every flush, unacknowledged after it), so with
two workers and a SIGKILL an instance's offset could be committed before its fold reached the changelog, and a
rebalance's recovery could put an older exam record back (issue 10: 131 of 132 instances counted).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.config import load_settings
from streams.app import create_app
from streams.worker import broker_misreports_ends, create_internal_topics, internal_topics

pytestmark = pytest.mark.kafka

ROUNDS, WRITES = 4, (1, 2, 3, 10, 20)


def _read_changelog(bootstrap: str, topic: str, partitions: int, expected: int) -> set[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check", "enable.auto.commit": False})
    keys: set[str] = set()
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        idle = 0
        while len(keys) < expected and idle < 10:
            msgs = c.consume(500, 1.0)
            idle = 0 if msgs else idle + 1
            keys.update(json.loads(m.key() or b"null") for m in msgs if not m.error())  # the table's keys are JSON
    finally:
        c.close()
    return keys


def test_flush_waits_for_every_table_write(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = load_settings(None, env={
        "RADPULSE_CONFIG": os.devnull, "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix, "RADPULSE_STREAMS__DATA_DIR": str(tmp_path),
    })
    # as `radpulse streams` builds it: one record per batch on tansu, where the race showed
    sa = create_app(settings, datadir=str(tmp_path), single_record_batches=broker_misreports_ends(settings))
    create_internal_topics(settings, internal_topics(sa.app))
    partitions = settings.kafka.partitions
    written: list[str] = []

    async def scenario() -> list[str]:
        producer = sa.app.producer
        await producer.start()
        late: list[str] = []
        try:
            for r in range(ROUNDS):
                for n in WRITES:
                    keys = [f"r{r}n{n}k{i}" for i in range(n)]
                    futures = [sa.exam_table.send_changelog(i % partitions, key, {"i": i})
                               for i, key in enumerate(keys)]
                    written.extend(keys)
                    await producer.flush()
                    late += [key for key, fut in zip(keys, futures, strict=True) if not fut.done()]
        finally:
            await producer.stop()
        return late

    late = asyncio.run(scenario())
    assert not late, f"{len(late)} of {len(written)} changelog writes not acknowledged when flush returned: {late[:5]}"
    topic = sa.exam_table.changelog_topic.get_topic_name()
    on_broker = _read_changelog(kafka_bootstrap, topic, partitions, len(written))
    assert on_broker == set(written), f"{len(set(written) - on_broker)} writes missing from {topic}"
