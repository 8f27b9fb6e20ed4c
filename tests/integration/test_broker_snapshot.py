"""The embedded broker's snapshot: what is kept (pure rules), and a save → new broker → restore round trip on
real tansu processes, with consumer-group offsets and a Faust-style compacted changelog."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cli.broker import EmbeddedBroker, free_port
from cli.broker_snapshot import Record, SnapshotError, compact, keep_from, read, restore, save, select


def rec(p: int, key: bytes | None, value: bytes | None, topic: str = "t") -> Record:
    return Record(topic, p, key, value, 1_700_000_000_000)


def test_compact_keeps_each_keys_last_record_and_drops_tombstoned_keys() -> None:
    records = [rec(0, b"a", b"1"), rec(0, b"b", b"1"), rec(0, b"a", b"2"), rec(0, b"c", b"1"), rec(0, b"c", None)]
    assert [(r.key, r.value) for r in compact(records)] == [(b"b", b"1"), (b"a", b"2")]


def test_keep_from_is_the_slowest_group_and_a_group_without_commit_needs_everything() -> None:
    committed = {"sink": {"t": {0: 5, 1: 7}}, "streams": {"t": {0: 3}}}
    assert keep_from("t", 2, committed) == {0: 3, 1: 0}
    assert keep_from("nobody-reads", 2, committed) == {0: 0, 1: 0}


def test_select_moves_offsets_to_match_the_kept_tail() -> None:
    by_tp = {("t", 0): [(i, rec(0, b"k%d" % i, b"v")) for i in range(10)],
             ("x-changelog", 0): [(0, rec(0, b"a", b"1", "x-changelog")), (1, rec(0, b"a", b"2", "x-changelog"))]}
    topics = {"t": {"partitions": 1, "config": {}}, "x-changelog": {"partitions": 1, "config": {}}}
    kept, moved = select(by_tp, topics, {"g": {"t": {0: 6}, "x-changelog": {0: 2}}})
    assert [r.key for r in kept if r.topic == "t"] == [b"k6", b"k7", b"k8", b"k9"]
    assert [r.value for r in kept if r.topic == "x-changelog"] == [b"2"]
    assert moved == {"g": {"t": {0: 0}}}  # changelog offsets are not carried: Faust reads changelogs from 0


def _read(bootstrap: str, topic: str, partition: int, start: int, n: int) -> list[tuple[bytes | None, bytes | None]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, start)])
    out: list[tuple[bytes | None, bytes | None]] = []
    for _ in range(100):
        for m in c.consume(100, 0.2):
            if not m.error():
                out.append((m.key(), m.value()))
        if len(out) >= n:
            break
    c.close()
    return out


def test_save_and_restore_round_trip_on_tansu(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.avro"
    first = EmbeddedBroker(port=free_port()).start()
    try:
        bs = first.bootstrap
        admin = AdminClient({"bootstrap.servers": bs})
        for f in admin.create_topics([NewTopic("in", 2, 1),
                                      NewTopic("app-table-changelog", 1, 1,
                                               config={"cleanup.policy": "compact"})]).values():
            f.result(10)
        p = Producer({"bootstrap.servers": bs, "linger.ms": 20})  # multi-record batches: tansu's short end
        for i in range(40):
            p.produce("in", key=b"k%d" % i, value=b"v%d" % i, partition=i % 2, headers=[("h", b"%d" % i)])
        for i in range(30):
            p.produce("app-table-changelog", key=b"exam%d" % (i % 5), value=b"state%d" % i, partition=0)
        p.produce("app-table-changelog", key=b"exam4", value=None, partition=0)  # evicted
        assert p.flush(10) == 0
        c = Consumer({"bootstrap.servers": bs, "group.id": "streams", "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("in", 0, 15), TopicPartition("in", 1, 20)], asynchronous=False)
        c.close()
        stats = save({"bootstrap.servers": bs}, path)
    finally:
        first.stop()
    assert stats.records == 5 + 4  # 5 unconsumed on partition 0, none on 1; 4 live changelog keys
    manifest, records = read(path)
    assert manifest["offsets"] == {"streams": {"in": {"0": 0, "1": 0}}}
    assert b"state" in b"".join(r.value or b"" for r in records)

    second = EmbeddedBroker(port=free_port()).start()
    try:
        bs = second.bootstrap
        restore({"bootstrap.servers": bs}, path)
        assert not path.exists() and path.with_name("snapshot.avro.restored").exists()
        assert _read(bs, "in", 0, 0, 5) == [(b"k%d" % i, b"v%d" % i) for i in range(30, 40, 2)]
        assert _read(bs, "app-table-changelog", 0, 0, 4) == [(b"exam%d" % i, b"state%d" % (25 + i)) for i in range(4)]
        c = Consumer({"bootstrap.servers": bs, "group.id": "streams", "enable.auto.commit": False})
        assert [tp.offset for tp in c.committed([TopicPartition("in", 0), TopicPartition("in", 1)], 10)] == [0, 0]
        c.close()
        _, hi = Consumer({"bootstrap.servers": bs, "group.id": "w"}).get_watermark_offsets(
            TopicPartition("app-table-changelog", 0), 10)
        assert hi == 4, "one record per batch: tansu's reported end must cover every restored record"
        with pytest.raises(SnapshotError, match="not a radpulse broker snapshot"):
            path.write_bytes(b"garbage")
            restore({"bootstrap.servers": bs}, path)
    finally:
        second.stop()
