"""Create the topics the streams read and write before the worker starts.

Faust subscribes only to topics that exist when it starts ("Ignoring missing topic") and never looks again, so on
Apache Kafka a worker started before the edge's first event would wait forever on its own tick topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import Settings

log = logging.getLogger("radpulse.streams")


def ensure_topics(settings: Settings, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """The named radpulse topics (without prefix), with ``[kafka] partitions`` each."""
    create_topics(settings, [(settings.topic(n), settings.kafka.partitions, {}) for n in names], timeout_s)


def create_topics(settings: Settings, topics: Iterable[tuple[str, int, dict[str, str]]],
                  timeout_s: float = 30.0) -> None:
    """Create (name, partitions, config) topics and wait until metadata lists them with every partition."""
    topics = list(topics)
    admin = AdminClient(settings.kafka.client_config())
    existing = admin.list_topics(timeout=timeout_s).topics
    new = [NewTopic(name, num_partitions=n, replication_factor=1, config=conf)
           for name, n, conf in topics if name not in existing]
    if new:
        for name, fut in admin.create_topics(new, request_timeout=timeout_s).items():
            try:
                fut.result(timeout_s)
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(timeout=timeout_s).topics
        missing = [name for name, n, _ in topics if name not in meta or len(meta[name].partitions) < n]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {missing} not visible in Kafka metadata after {timeout_s:.0f}s; "
                               f"check the broker at [kafka] bootstrap_servers")
        time.sleep(0.2)
