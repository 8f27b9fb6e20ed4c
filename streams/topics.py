"""Create the topics the streams read and write before the worker starts.

Faust subscribes only to topics that exist when it starts ("Ignoring missing topic") and never looks again, so on
Apache Kafka a worker started before the edge's first event would wait forever on its own tick topic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import Settings

log = logging.getLogger("radpulse.streams")


def ensure_topics(settings: Settings, names: Iterable[str], timeout_s: float = 30.0) -> None:
    k = settings.kafka
    admin = AdminClient(k.client_config())
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [settings.topic(n) for n in names]
    new = [NewTopic(t, num_partitions=k.partitions, replication_factor=1) for t in wanted if t not in existing]
    if not new:
        return
    for name, fut in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            fut.result(timeout_s)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
