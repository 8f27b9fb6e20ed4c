"""Carry the embedded broker's contents across an orderly restart of `radpulse up` (tansu keeps nothing).

At an orderly stop — edge, streams and sink already stopped — :func:`save` writes what the next start needs:
every topic and its settings, the records no consumer group has consumed yet (with the groups' offsets moved to
match), and the Faust changelogs *compacted* (the last record per key; keys whose last record is a tombstone are
dropped), which is the streams' whole state: open exams with their instance hashes, dose folds, KPI inputs. At the
next start, before any radpulse process connects, :func:`restore` re-creates the topics, writes the records back in
order, one per batch (tansu misreports a partition's end after a multi-record batch, which would cut Faust's
changelog recovery short) and commits the moved offsets. The file is bounded by the streams' retention, not by
history: consumed records are not kept. A crash of the broker (SIGKILL, power loss) still loses the topics; the
edge's spool covers what was not yet acknowledged to a modality.

The file is an Avro container (fastavro) with a JSON manifest in its metadata; it holds only what was on the
broker — de-identified events — never PHI.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

log = logging.getLogger("radpulse.broker")

MANIFEST_KEY = "radpulse.broker-snapshot"
FORMAT_VERSION = 1
Offsets = dict[str, dict[str, dict[int, int]]]  # group → topic → partition → offset
RECORD_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "BrokerRecord", "namespace": "radpulse.snapshot",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "partition", "type": "int"},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "value", "type": ["null", "bytes"]},
        {"name": "timestamp", "type": "long"},
        {"name": "headers", "type": {"type": "array", "items": {
            "type": "record", "name": "Header",
            "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}]}}},
    ],
})


class SnapshotError(RuntimeError):
    """The snapshot could not be written or restored; the message names the file and the fix."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True)
class SnapshotStats:
    topics: int
    records: int
    read: int  # records read from the broker (before dropping consumed ones and compacting)
    seconds: float


# ---- pure parts: what to keep -------------------------------------------------------------------------------

def is_compacted(topic: str, config: dict[str, str]) -> bool:
    """A changelog (Faust names them ``…-changelog``) or any topic set to compact: only its last value per key
    matters."""
    return "compact" in config.get("cleanup.policy", "") or topic.endswith("-changelog")


def keep_from(topic: str, partitions: int, committed: Offsets) -> dict[int, int]:
    """Per partition, the first offset some consumer group still needs: the lowest committed offset among the
    groups that consume `topic` (a consuming group without a commit on a partition needs it from 0). A topic no
    group has committed on is kept whole: its reader may not have started yet."""
    readers = [offsets[topic] for offsets in committed.values() if topic in offsets]
    if not readers:
        return dict.fromkeys(range(partitions), 0)
    return {p: min(r.get(p, 0) for r in readers) for p in range(partitions)}


def compact(records: list[Record]) -> list[Record]:
    """The last record of each key, in the order of those last records; tombstoned keys dropped."""
    last: dict[tuple[int, bytes | None], int] = {}
    for i, r in enumerate(records):
        last[(r.partition, r.key)] = i
    return [records[i] for i in sorted(last.values()) if records[i].value is not None]


def select(records_by_tp: dict[tuple[str, int], list[tuple[int, Record]]], topics: dict[str, dict[str, Any]],
           committed: Offsets) -> tuple[list[Record], Offsets]:
    """What the snapshot keeps, and the groups' offsets as they will be after the kept records are written back
    from offset 0 (a compacted topic's offsets are not carried: Faust reads its changelogs from the start)."""
    kept: list[Record] = []
    base: dict[tuple[str, int], int] = {}
    for topic, meta in sorted(topics.items()):
        if is_compacted(topic, meta["config"]):
            for p in range(meta["partitions"]):
                kept.extend(compact([r for _, r in records_by_tp.get((topic, p), [])]))
            continue
        for p, first in keep_from(topic, meta["partitions"], committed).items():
            base[(topic, p)] = first
            kept.extend(r for off, r in records_by_tp.get((topic, p), []) if off >= first)
    moved: Offsets = {}
    for group, offsets in committed.items():
        for topic, parts in offsets.items():
            for p, off in parts.items():
                if (topic, p) in base:
                    moved.setdefault(group, {}).setdefault(topic, {})[p] = max(0, off - base[(topic, p)])
    return kept, moved


# ---- I/O: the broker and the file ---------------------------------------------------------------------------

def _admin(client: dict[str, str]):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient(client)


def _topics(admin, timeout_s: float) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import ConfigResource

    md = admin.list_topics(timeout=timeout_s)
    names = sorted(t for t in md.topics if not t.startswith("__"))
    out: dict[str, dict[str, Any]] = {t: {"partitions": len(md.topics[t].partitions), "config": {}} for t in names}
    if names:
        futures = admin.describe_configs([ConfigResource("topic", t) for t in names])
        for res, fut in futures.items():
            try:
                entries = fut.result(timeout_s)
            except Exception as exc:  # a broker without DescribeConfigs: the name rule still finds changelogs
                log.debug("no configs for %s: %s", res.name, exc)
                continue
            out[res.name]["config"] = {k: v.value for k, v in entries.items()
                                       if k in ("cleanup.policy", "retention.ms") and v.value is not None}
    return out


def _committed(admin, timeout_s: float) -> Offsets:  # type: ignore[no-untyped-def]
    from confluent_kafka import ConsumerGroupTopicPartitions

    groups = admin.list_consumer_groups().result(timeout_s)
    out: Offsets = {}
    for g in sorted(x.group_id for x in groups.valid):
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)])[g]
        for tp in fut.result(timeout_s).topic_partitions:
            if tp.error is None and tp.offset >= 0:
                out.setdefault(g, {}).setdefault(tp.topic, {})[tp.partition] = tp.offset
    return out


def _read_all(client: dict[str, str], topics: dict[str, dict[str, Any]], committed: Offsets, quiet_s: float,
              timeout_s: float) -> dict[tuple[str, int], list[tuple[int, Record]]]:
    """Every record some group still needs (changelogs: all). Read until nothing arrives for `quiet_s`: tansu's
    high watermark can be short of the last record, so the end is found by reading, not by asking."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client | {"group.id": "radpulse-snapshot", "enable.auto.commit": False,
                                  "enable.partition.eof": False, "auto.offset.reset": "earliest"})
    out: dict[tuple[str, int], list[tuple[int, Record]]] = defaultdict(list)
    try:
        tps = [TopicPartition(t, p, 0 if is_compacted(t, m["config"]) else first)
               for t, m in topics.items() for p, first in keep_from(t, m["partitions"], committed).items()]
        if not tps:
            return out
        consumer.assign(tps)
        deadline = time.monotonic() + timeout_s
        last_data = time.monotonic()
        while time.monotonic() - last_data < quiet_s:
            if time.monotonic() > deadline:
                raise SnapshotError(f"reading the broker's topics took over {timeout_s:.0f}s; nothing was saved")
            batch = consumer.consume(5000, 0.2)
            for msg in batch:
                if msg.error():
                    continue
                _, ts = msg.timestamp()
                rec = Record(msg.topic(), msg.partition(), msg.key(), msg.value(), ts,
                             tuple((k, v) for k, v in (msg.headers() or [])))
                out[(rec.topic, rec.partition)].append((msg.offset(), rec))
            if batch:
                last_data = time.monotonic()
    finally:
        consumer.close()
    return out


def save(client: dict[str, str], path: Path, *, quiet_s: float = 1.5, timeout_s: float = 300.0) -> SnapshotStats:
    """Write the broker's topics to `path` (atomically: a crash mid-write leaves the previous file)."""
    t0 = time.monotonic()
    admin = _admin(client)
    topics = _topics(admin, 10)
    committed = {g: o for g, o in _committed(admin, 10).items() if g != "radpulse-snapshot"}
    by_tp = _read_all(client, topics, committed, quiet_s, timeout_s)
    kept, moved = select(by_tp, topics, committed)
    manifest = {"format": FORMAT_VERSION, "saved_at": time.time(), "topics": topics, "offsets": moved}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fastavro.writer(fh, RECORD_SCHEMA, (_as_avro(r) for r in kept), codec="deflate",
                        metadata={MANIFEST_KEY: json.dumps(manifest)})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return SnapshotStats(len(topics), len(kept), sum(len(v) for v in by_tp.values()), time.monotonic() - t0)


def _as_avro(r: Record) -> dict[str, Any]:
    return {"topic": r.topic, "partition": r.partition, "key": r.key, "value": r.value, "timestamp": r.timestamp,
            "headers": [{"key": k, "value": v} for k, v in r.headers]}


def read(path: Path) -> tuple[dict[str, Any], Iterator[Record]]:
    """The manifest and the records of a snapshot file."""
    fh = open(path, "rb")
    try:
        reader = fastavro.reader(fh)
        manifest = json.loads(reader.metadata[MANIFEST_KEY])
    except (OSError, ValueError, KeyError) as exc:
        fh.close()
        raise SnapshotError(f"{path} is not a radpulse broker snapshot ({exc}); move it away to start empty") from exc
    if manifest.get("format") != FORMAT_VERSION:
        fh.close()
        raise SnapshotError(f"{path} has snapshot format {manifest.get('format')}, this radpulse reads "
                            f"{FORMAT_VERSION}; move it away to start empty")

    def records() -> Iterator[Record]:
        with fh:
            for r in reader:
                yield Record(r["topic"], r["partition"], r["key"], r["value"], r["timestamp"],
                             tuple((h["key"], h["value"]) for h in r["headers"]))

    return manifest, records()


def restore(client: dict[str, str], path: Path, timeout_s: float = 300.0) -> SnapshotStats:
    """Re-create the snapshot's topics on an empty broker, write its records back and commit the groups' offsets.
    Then the file is renamed ``*.restored`` so a second start does not write the records twice."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    t0 = time.monotonic()
    manifest, records = read(path)
    admin = _admin(client)
    existing = admin.list_topics(timeout=10).topics
    clash = [t for t in manifest["topics"] if t in existing]
    if clash:
        raise SnapshotError(f"the broker already has topics {clash[:3]}…; {path} is only restored into an empty "
                            "broker — move the file away, or stop whatever created them")
    new = [NewTopic(t, m["partitions"], 1, config=m["config"]) for t, m in manifest["topics"].items()]
    for topic, fut in (admin.create_topics(new) if new else {}).items():
        try:
            fut.result(30)
        except KafkaException as exc:
            raise SnapshotError(f"could not create topic {topic} from {path}: {exc}") from exc
    failures: list[str] = []
    producer = Producer(client | {"enable.idempotence": True, "linger.ms": 0, "batch.num.messages": 1,
                                  "acks": "all"})

    def delivered(err, _msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            failures.append(str(err))

    n = 0
    for r in records:
        while True:
            try:
                producer.produce(r.topic, key=r.key, value=r.value, partition=r.partition, timestamp=r.timestamp,
                                 headers=list(r.headers) or None, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 1000 == 0:
            producer.poll(0)
    left = producer.flush(timeout_s)
    if left or failures:
        raise SnapshotError(f"restoring {path}: {left} records unsent, errors {failures[:3]}; the file is kept — "
                            "restart to try again, or move it away to start empty")
    for group, offsets in manifest["offsets"].items():
        tps = [TopicPartition(t, int(p), off) for t, parts in offsets.items() for p, off in parts.items()]
        consumer = Consumer(client | {"group.id": group, "enable.auto.commit": False})
        try:
            consumer.commit(offsets=tps, asynchronous=False)
        finally:
            consumer.close()
    os.replace(path, path.with_name(path.name + ".restored"))
    return SnapshotStats(len(manifest["topics"]), n, n, time.monotonic() - t0)
