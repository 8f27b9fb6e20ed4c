from pathlib import Path

import pytest

from edge_ingest.spool import Spool, SpoolFull


def test_append_read_commit_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(10):
        spool.append("t", f"k{i}".encode(), f"v{i}".encode())
    assert spool.pending == 10
    batch = spool.read_batch(4)
    assert [r.value for r in batch] == [b"v0", b"v1", b"v2", b"v3"]
    spool.commit(batch[-1], len(batch))
    assert [r.value for r in spool.read_batch(100)] == [f"v{i}".encode() for i in range(4, 10)]
    assert spool.pending == 6


def test_survives_restart_and_uncommitted_records_come_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(5):
        spool.append("topic.a", b"key", f"v{i}".encode())
    batch = spool.read_batch(2)
    spool.commit(batch[-1], 2)
    spool.close()
    again = Spool(tmp_path, max_bytes=10**6)
    assert again.pending == 3
    records = again.read_batch(10)
    assert [(r.topic, r.key, r.value) for r in records] == [("topic.a", b"key", f"v{i}".encode()) for i in (2, 3, 4)]


def test_torn_tail_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append("t", b"k", b"complete")
    spool.close()
    seg = next(tmp_path.glob("seg-*.log"))
    with open(seg, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a record header whose body never arrived
    again = Spool(tmp_path, max_bytes=10**6)
    assert [r.value for r in again.read_batch(10)] == [b"complete"]
    again.append("t", b"k", b"after")
    assert [r.value for r in again.read_batch(10)] == [b"complete", b"after"]


def test_full_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.append("t", b"k", b"x" * 100)
    with pytest.raises(SpoolFull):
        spool.append("t", b"k", b"x" * 100)
    batch = spool.read_batch(10)
    spool.commit(batch[-1], 1)
    spool.append("t", b"k", b"x" * 100)  # room again once drained


def test_segments_roll_and_drained_ones_are_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_ingest.spool as mod

    monkeypatch.setattr(mod, "SEGMENT_BYTES", 100)
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(20):
        spool.append("t", b"k", f"value-{i:03d}".encode() * 3)
    assert len(list(tmp_path.glob("seg-*.log"))) > 3
    while spool.pending:
        batch = spool.read_batch(7)
        spool.commit(batch[-1], len(batch))
    assert len(list(tmp_path.glob("seg-*.log"))) <= 1
