"""The Faust app: its topics and tables. No logic (that is in ``exams.py``; the agents are in ``*_agent.py``).

Every topic carries raw bytes: values are Avro single-object-encoded by ``schemas.codec`` and keys are pseudonyms,
so Faust's own serialisers stay out of the way. Tables keep their state in changelog topics: a restarted worker
recovers from them. Standby replicas are off so that only the partition's owner ever acts on an exam.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
import faust.auth
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from schemas.config import ConfigError, KafkaSettings, Settings
from streams.holes import HoleRepair

log = logging.getLogger("radpulse.streams")

TOPIC_INSTANCES = "instances"
TOPIC_EXAMS = "exams"
TOPIC_TICKS = "streams_ticks"
TOPIC_EXAM_DOSE = "exam_dose"
TOPIC_DOSE_ALERTS = "dose_alerts"
TOPIC_DRL_VALUES = "drl_values"
TOPIC_WORKFLOW = "workflow"
TOPIC_DEVICE_KPIS = "device_kpis"
TOPIC_EXAM_TIMING = "exam_timing"
# the worker consumer's fetch long-poll (Faust's own: 1,500 ms); see _short_fetch_wait
FETCH_MAX_WAIT_MS = 100
HOLE_CHECK_S = 2.0  # how often streams.holes looks for records read past but never processed


def _short_fetch_wait(create: Any) -> Any:
    """Faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer, and the embedded tansu broker holds a
    fetch long-poll after a record has arrived: a lone instance waited in the broker before the worker saw it
    (edge ack → exam published P50 0.39 s, P99 0.82 s at 35 exams/s; with 100 ms: 0.03 s and 0.12 s). Under load
    a fetch returns full at once, so a short wait costs only idle polls (10 a second)."""

    @functools.wraps(create)
    def wrapper(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer

    return wrapper


AIOKafkaConsumerThread._create_worker_consumer = _short_fetch_wait(  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer)


@dataclass
class StreamsApp:
    settings: Settings
    app: faust.App
    instances: faust.TopicT
    exams: faust.TopicT
    ticks: faust.TopicT
    exam_table: faust.Table
    out: dict[str, faust.TopicT]


class ChangelogBarrier:
    """Table changelog writes the broker has not acknowledged yet; the producer's flush waits for them.

    Faust flushes the producer before it commits source offsets and before a rebalance's recovery reads the
    changelogs up to their end, but its flush gives up once no record has left its send buffer for 0.1 s
    (``ProducerBuffer.flush_atmost``) and misses the record aiokafka is still appending. With one record per
    batch (tansu) and a loaded CPU the buffer drains slower than that, so (1) an instance's offset was committed
    before its table write reached the changelog, and a SIGKILL then lost the fold; (2) the recovery after a
    rebalance read a changelog that lacked the worker's own latest writes and put the older exam record back in
    the table, and the next fold wrote that older state on (an instance counted, committed, then dropped)."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Future] = set()

    def add(self, fut: asyncio.Future) -> None:
        if not fut.done():
            self.pending.add(fut)
            fut.add_done_callback(self.pending.discard)

    async def wait(self) -> None:
        """Until every write issued so far is acknowledged; raises if one failed (no offset may pass it)."""
        waiting = list(self.pending)
        if not waiting:
            return
        await asyncio.wait(waiting)
        failed = [f for f in waiting if f.cancelled() or f.exception() is not None]
        if failed:
            cause = "cancelled" if failed[0].cancelled() else repr(failed[0].exception())
            raise RuntimeError(f"{len(failed)} table changelog write(s) failed ({cause}); offsets are not "
                               "committed past them: the worker stops and the next one replays from the last commit")


_write_partition: contextvars.ContextVar[int | None] = contextvars.ContextVar("radpulse_write_partition", default=None)


@contextlib.contextmanager
def writing_to(partition: int) -> Iterator[None]:
    """Table writes inside go to this changelog partition. Faust takes it from the event being processed, and an
    agent folding a batch of events (from several partitions) has no single one: each exam's records must stay in
    the partition of its instances, or the worker that takes that partition over recovers an older exam."""
    token = _write_partition.set(partition)
    try:
        yield
    finally:
        _write_partition.reset(token)


class ChangelogTable(faust.Table):
    """A table whose changelog writes the producer's flush waits for (see ``ChangelogBarrier``), written to the
    partition ``writing_to`` names when an agent names one."""

    def partition_for_key(self, key):  # type: ignore[no-untyped-def]
        partition = _write_partition.get()
        return partition if partition is not None else super().partition_for_key(key)

    def send_changelog(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        fut = super().send_changelog(*args, **kwargs)
        barrier = getattr(self.app, "changelog_barrier", None)
        if barrier is not None:
            barrier.add(fut)
        return fut


class StreamsFaustApp(faust.App):
    """A Faust app whose producer flush returns only once every table write made before it is acknowledged, whose
    consumer does not acknowledge a message its stream skipped, and which reads again what it read past without
    processing (``streams.holes``)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, Table=ChangelogTable, **kwargs)
        self.changelog_barrier = ChangelogBarrier()
        self.holes = HoleRepair(self)
        self.timer(interval=HOLE_CHECK_S)(self.holes.run)

    def _new_producer(self):  # type: ignore[no-untyped-def]
        producer = super()._new_producer()
        flush = producer.flush
        barrier = self.changelog_barrier

        async def flush_then_wait() -> None:
            await flush()
            await barrier.wait()

        # every caller that needs the writes on the broker calls this: the offset commit (Faust's consumer), the
        # revocation in a rebalance, and the recovery before it reads the changelogs' ends
        producer.flush = flush_then_wait
        return producer

    def _new_consumer(self):  # type: ignore[no-untyped-def]
        consumer = super()._new_consumer()
        ack = consumer.ack

        def ack_unless_skipped(message):  # type: ignore[no-untyped-def]
            # Faust's stream skips a message pulled while a rebalance is under way (flow control suspended) or
            # fetched in an earlier generation, and then acknowledges it as if processed, so a commit can pass it
            # unprocessed. Seen on Apache Kafka with two workers and a SIGKILL: in each partition the survivor took
            # over, the instance right after the first one it published was never folded while the later ones
            # were, and the commit passed it (130 of 132). Not acknowledged, it is read again by the rebalance's
            # seek or by streams.holes (the fold is idempotent).
            if not self.flow_control.is_active() or message.generation_id != self.consumer_generation_id:
                return False
            return ack(message)

        consumer.ack = ack_unless_skipped  # Message.on_final_ack calls consumer.ack: every acknowledgement passes
        new_offset = consumer._new_offset
        holes = self.holes
        warned: set[tuple[object, int]] = set()

        def new_offset_without_holes(tp):  # type: ignore[no-untyped-def]
            # Faust lets a commit pass one unacknowledged offset right at the committed position (its check is
            # `min(acked) - committed > 1`, committed being the next offset to read): a message dropped before its
            # stream acknowledged it was committed unprocessed while the later ones went on. Commit nothing past
            # it; streams.holes reads it again.
            if holes.commit_blocked(consumer, tp):
                committed = consumer._committed_offset.get(tp) or 0
                if (tp, committed) not in warned:
                    warned.add((tp, committed))
                    log.warning("offset %d of %s was never acknowledged while later ones were: not committing past it "
                                "(it is read again)", committed, tp)
                return None
            return new_offset(tp)

        async def no_gaps(tp, offset_from, offset_to):  # type: ignore[no-untyped-def]
            # Faust takes a jump in a source partition's offsets for a compaction gap and counts the offsets in
            # between as processed; on our source topics (never compacted) it means records this worker dropped,
            # so they stay unprocessed: the commit waits and streams.holes reads them again
            log.info("offsets %d-%d of %s skipped by the fetch: they are read again", offset_from, offset_to - 1, tp)

        consumer._new_offset = new_offset_without_holes  # every commit asks it for each partition's offset
        consumer._add_gap = no_gaps  # called only for source topics (acks enabled), never for changelogs
        return consumer


def broker_credentials(k: KafkaSettings) -> faust.auth.Credentials | None:
    """The `[kafka]` security settings as Faust (aiokafka) credentials: the same ones the edge and sink use."""
    protocol = k.security_protocol.strip().upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol not in ("SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError(f"[kafka] security_protocol={k.security_protocol!r}: use PLAINTEXT, SSL, SASL_PLAINTEXT "
                          "or SASL_SSL")
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        try:
            context = ssl.create_default_context(cafile=k.ssl_ca_location or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[kafka] ssl_ca_location={k.ssl_ca_location!r} cannot be read ({exc}); "
                              "point it at a PEM CA bundle") from exc
    if protocol == "SSL":
        return faust.auth.SSLCredentials(context)
    mechanism = k.sasl_mechanism.strip().upper()
    if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ConfigError(f"[kafka] sasl_mechanism={k.sasl_mechanism!r}: with security_protocol={protocol} use "
                          "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    return faust.auth.SASLCredentials(username=k.sasl_username, password=k.sasl_password, ssl_context=context,
                                      mechanism=mechanism)


def create_app(settings: Settings, *, web_port: int | None = None, datadir: str | None = None,
               single_record_batches: bool = False) -> StreamsApp:
    """`single_record_batches`: one record per produced batch, for the embedded tansu broker, which reports a
    partition's end as the last batch's first offset + 1: Faust's changelog recovery reads up to that end, so a
    restarted worker lost the tail of multi-record batches (measured: 2,960 of 3,000 table updates recovered; with
    one record per batch, all 3,000)."""
    k = settings.kafka
    app_id = f"{k.topic_prefix}-streams"
    datadir = datadir or str(Path(settings.streams.data_dir) / app_id)
    Path(datadir).mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = StreamsFaustApp(
        app_id,
        broker=[f"kafka://{b.strip()}" for b in k.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(k),
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=k.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # the rebalance timeout is the max poll interval: a worker killed during a rebalance would otherwise hold
        # the others up to Faust's default of 1000 s before they take over its partitions
        broker_max_poll_interval=30.0,
        broker_commit_every=500,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
        datadir=datadir,
        producer_acks=-1,
        producer_compression_type="lz4",
        # aiokafka always puts one record in an empty batch, so a 1-byte limit means one record per batch
        producer_max_batch_size=1 if single_record_batches else 16384,
        table_cleanup_interval=timedelta(minutes=5).total_seconds(),
    )
    instances = app.topic(settings.topic(TOPIC_INSTANCES), key_type=bytes, value_type=bytes)
    exams = app.topic(settings.topic(TOPIC_EXAMS), key_type=bytes, value_type=bytes, partitions=k.partitions)
    ticks = app.topic(settings.topic(TOPIC_TICKS), key_type=bytes, value_type=bytes, partitions=k.partitions)
    # JSON keys and values: Faust's changelog recovery decodes keys as JSON whatever the write side used, so the
    # table keeps str keys (the pseudonym) and plain-data values (ExamState.to_dict)
    schema = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
    # one table for an exam's state, dose state and instance-hash chunks: see streams.examstore
    exam_table = app.Table("exams", default=None, schema=schema, partitions=k.partitions)
    out = {
        name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes, partitions=k.partitions)
        for name in (TOPIC_EXAM_DOSE, TOPIC_DOSE_ALERTS, TOPIC_DRL_VALUES, TOPIC_DEVICE_KPIS, TOPIC_EXAM_TIMING)
    }
    return StreamsApp(settings, app, instances, exams, ticks, exam_table, out)
