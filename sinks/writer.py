"""Kafka → ClickHouse: consumes ``<prefix>.instances``, ``<prefix>.exams`` and ``<prefix>.edge_health``, routes each
message by its schema name to rows, batches them (``batcher.py``) and commits offsets only after the insert.

- A failed insert is retried with backoff and nothing is committed; meanwhile the partitions are paused, and polling
  continues so the consumer stays in its group. A redelivered batch is harmless: the tables are ReplacingMergeTree.
- A message that does not decode (or cannot become a row) is counted, logged by topic/partition/offset without its
  bytes, and skipped: one bad message never blocks a partition.
- On a rebalance, pending rows are flushed and committed before the partitions go; if that fails their offsets are
  dropped, and the new owner replays them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from schemas.codec import DecodeError, decode_record, from_record
from schemas.config import Settings
from schemas.events import (
    DeviceKpi,
    DoseAlert,
    DrlValue,
    EdgeHeartbeat,
    Exam,
    ExamDose,
    ExamTiming,
    InstanceEvent,
    WorkflowEvent,
)
from schemas.registry import UnknownSchemaError
from sinks.batcher import Batcher, Partition
from sinks.clickhouse import Database
from sinks.errors import ClickHouseError, RowError
from sinks.generations import GenerationMerger
from sinks.rows import COLUMNS, Row, rows_for

log = logging.getLogger("radpulse.sinks.writer")

GROUP_ID = "radpulse-sink"
TOPICS = (
    "instances", "exams", "edge_health", "exam_dose", "dose_alerts", "device_kpis", "exam_timing", "workflow",
    "drl_values",
)  # fmt: skip
ROUTES: dict[str, type] = {
    cls.__name__: cls
    for cls in (InstanceEvent, Exam, EdgeHeartbeat, ExamDose, DoseAlert, DeviceKpi, ExamTiming, WorkflowEvent,
                DrlValue)
}
_SAFE_REASONS = (DecodeError, UnknownSchemaError, RowError)  # our own messages: they never quote the payload


@dataclass
class SinkCounters:
    """What the writer has done since it started."""

    messages: int = 0
    rows_written: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0  # skipped: not Avro, unknown schema, or no valid row
    unrouted: int = 0  # decoded, but no table takes this schema
    insert_errors: int = 0
    commit_errors: int = 0
    flushes: int = 0
    last_flush_at: datetime | None = None
    last_error: str | None = None


class SinkWriter:
    """One consumer in group ``group_id``; call ``run(stop)`` in a thread, or ``drain()`` in tests and backfills."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        group_id: str = GROUP_ID,
        batch_rows: int = 5000,
        flush_interval_s: float = 1.0,
        retry_max_s: float = 30.0,
        consumer_config: dict[str, object] | None = None,
    ) -> None:
        self.db = db
        self.topics = [settings.topic(t) for t in TOPICS]
        self.counters = SinkCounters()
        self.batcher = Batcher(batch_rows, flush_interval_s)
        self.generations = GenerationMerger(db)
        self.retry_max_s = retry_max_s
        self._flushing = False
        self._paused = False
        self._missing_topics: set[str] = set()
        conf = (
            settings.kafka.client_config()
            | {
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 5000,  # notice topics created after we subscribed within seconds
                "client.id": "radpulse-sink",
                "session.timeout.ms": 10_000,  # a dead sink's partitions move on within 10 s; tansu joins in ~timeout/2
                # tansu holds a fetch long-poll after records arrive: 500 ms (librdkafka's) added 0.13 s P50 / 0.22 s
                # P99 to an exam's way to ClickHouse at 35 exams/s, 100 ms about 0.03 s (the pipeline benchmark's own)
                "fetch.wait.max.ms": 100,
                "logger": logging.getLogger("radpulse.sinks.librdkafka"),
            }
            | (consumer_config or {})
        )
        self._fetch_wait_s = int(conf.get("fetch.wait.max.ms", 500)) / 1000  # type: ignore[call-overload]
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    # -- the loop ------------------------------------------------------------------------------------------------
    def step(self, timeout_s: float = 0.1, stop: threading.Event | None = None) -> int:
        """Consume what is there (up to one batch), flush if due; returns the number of messages consumed."""
        messages = self._consumer.consume(num_messages=self.batcher.max_rows, timeout=timeout_s)
        for msg in messages:
            self._handle(msg)
        if self.batcher.due(time.monotonic()):
            self.flush(stop)
        return len(messages)

    def run(self, stop: threading.Event, status_every_s: float = 60.0) -> None:
        """Consume until ``stop`` is set, then flush what is pending (committed only if the insert works). Logs the
        counters every ``status_every_s``."""
        log.info("sink consuming %s into %s", ", ".join(self.topics), self.db.describe())
        next_status = time.monotonic() + status_every_s
        while not stop.is_set():
            self.step(0.1, stop)
            if time.monotonic() >= next_status:
                log.info("sink status: %s", self.status())
                next_status += status_every_s
        if not self.batcher.empty:
            self.flush(stop)
        self.close()

    def status(self) -> str:
        """The counters on one line, for logs."""
        c = self.counters
        written = ", ".join(f"{t}={n}" for t, n in sorted(c.rows_written.items())) or "none"
        last = c.last_flush_at.isoformat(timespec="seconds") if c.last_flush_at else "never"
        return (
            f"{c.messages} messages, rows written {written}, {c.undecodable} undecodable, {c.unrouted} unrouted, "
            f"{c.insert_errors} insert errors, {c.commit_errors} commit errors, last flush {last}"
        )

    def drain(self, timeout_s: float = 60.0, until: Callable[[SinkCounters], bool] | None = None) -> SinkCounters:
        """Consume until caught up (or until ``until(counters)``), then flush and commit. For tests and backfills.

        Caught up: every subscribed topic that exists is assigned, nothing arrived for two fetch long-polls
        (``fetch.wait.max.ms``, so the high watermarks librdkafka caches from fetch responses are fresh), and every
        partition's position has reached its high watermark. The watermarks come from fetch responses, not
        ListOffsets: tansu answers ListOffsets(latest) with a stale offset when the last batch held several records.
        """
        settle_s = max(0.2, 2 * self._fetch_wait_s)
        start = last = time.monotonic()
        deadline = start + timeout_s
        while time.monotonic() < deadline:
            if self.step(0.2):
                last = time.monotonic()
            now = time.monotonic()
            if until is not None:
                done = until(self.counters)
            else:
                done = now - start >= settle_s and now - last >= settle_s and self.caught_up()
            if done:
                if not self.batcher.empty:
                    self.flush()
                if self.batcher.empty:
                    return self.counters
        raise TimeoutError(f"sink did not catch up within {timeout_s} s: {self.counters}")

    def caught_up(self) -> bool:
        """Every existing subscribed topic is assigned and each partition's position is at its fetched watermark."""
        assignment = self._consumer.assignment()
        existing = set(self._consumer.list_topics(timeout=5).topics)
        if not assignment or not {t for t in self.topics if t in existing} <= {tp.topic for tp in assignment}:
            return False
        unknown = []
        for tp in self._consumer.position(assignment):
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                return False  # no fetch response for this partition yet
            if tp.offset < 0:
                if high > 0:  # nothing consumed here yet: the committed offset says where it started
                    unknown.append(TopicPartition(tp.topic, tp.partition))
            elif tp.offset < high:
                return False
        for tp in self._consumer.committed(unknown, timeout=5) if unknown else []:
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset < high:
                return False
        return True

    def close(self) -> None:
        self._consumer.close()

    # -- one message ---------------------------------------------------------------------------------------------
    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            self._kafka_error(msg, err)
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        self.counters.messages += 1
        now = time.monotonic()
        try:
            name, record = decode_record(msg.value() or b"")
            cls = ROUTES.get(name)
            pairs = list(rows_for(from_record(cls, record))) if cls else None
        except Exception as exc:  # any decoder failure on foreign bytes: skip it, never block the partition
            reason = str(exc) if isinstance(exc, _SAFE_REASONS) else type(exc).__name__
            self.counters.undecodable += 1
            log.warning("skipped undecodable message %s[%d]@%d: %s", topic, partition, offset, reason)
            self.batcher.mark(topic, partition, offset, now)
            return
        if pairs is None:
            self.counters.unrouted += 1
            log.warning("skipped %s[%d]@%d: no table takes schema %s", topic, partition, offset, name)
        else:
            for table, rows in pairs:
                self.batcher.add(table, rows, now)
        self.batcher.mark(topic, partition, offset, now)

    def _kafka_error(self, msg: Message, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            topic = msg.topic() or "?"
            if topic not in self._missing_topics:
                self._missing_topics.add(topic)
                log.info("topic %s does not exist yet; consuming it once its producer creates it", topic)
            return
        log.warning("kafka: %s", err.str())

    # -- flush and commit ----------------------------------------------------------------------------------------
    def _insert(self, table: str, rows: list[Row]) -> None:
        if table == "exams":  # a late generation of an exam continues the stored one (sinks/generations.py)
            rows = self.generations.exams(rows)
        elif table == "exam_dose":
            rows = self.generations.exam_dose(rows)
        self.db.insert(table, rows, COLUMNS[table])
        self.counters.rows_written[table] += len(rows)

    def flush(self, stop: threading.Event | None = None) -> bool:
        """Insert the batch (retrying with backoff until it works or ``stop`` is set), then commit its offsets."""
        delay = 0.25
        self._flushing = True
        try:
            while True:
                try:
                    offsets = self.batcher.flush(self._insert)
                    break
                except ClickHouseError as exc:
                    self.counters.insert_errors += 1
                    self.counters.last_error = str(exc)
                    if stop is not None and stop.is_set():
                        log.warning("insert failed while stopping (%s); offsets not committed, Kafka redelivers", exc)
                        return False
                    log.warning("insert failed (%s); retrying in %.2f s, offsets not committed", exc, delay)
                    self._pause()
                    self._wait(delay, stop)
                    delay = min(delay * 2, self.retry_max_s)
        finally:
            self._flushing = False
        self._commit(offsets)
        self._resume()
        self.counters.flushes += 1
        self.counters.last_flush_at = datetime.now(UTC)
        return True

    def _wait(self, seconds: float, stop: threading.Event | None) -> None:
        # poll (partitions paused) so heartbeats and rebalances are served; anything that still arrives is batched
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            msg = self._consumer.poll(min(0.1, max(end - time.monotonic(), 0)))
            if msg is not None:
                self._handle(msg)

    def _commit(self, offsets: dict[Partition, int]) -> None:
        if not offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:  # the rows are in; an uncommitted offset only means a harmless replay
            self.counters.commit_errors += 1
            log.warning("offset commit failed (%s); those messages will be replayed", exc)

    def _pause(self) -> None:
        if not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True

    def _resume(self) -> None:
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    # -- rebalance callbacks (run inside poll/consume) -----------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing")
        if self._paused:  # an insert is being retried: new partitions wait too
            consumer.assign(partitions)
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._flushing and not self.batcher.empty:
            try:
                offsets = self.batcher.flush(self._insert)
                self._commit(offsets)
                return
            except ClickHouseError as exc:
                self.counters.insert_errors += 1
                log.warning("insert before rebalance failed (%s); the new owner replays those partitions", exc)
        self.batcher.forget((tp.topic, tp.partition) for tp in partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.batcher.forget((tp.topic, tp.partition) for tp in partitions)
