"""A durable, append-only local spool of encoded events, drained in order.

Layout: ``<dir>/seg-<n>.log`` segment files of records ``[u32 length][u32 crc32][payload]`` and a ``cursor`` file
(segment, offset) naming the first record not yet acknowledged by Kafka.

Order of durable steps:
1. ``append`` writes the record and fsyncs the segment before returning; only then may C-STORE answer success.
2. ``read_batch`` hands out records from the cursor on; nothing changes on disk.
3. After Kafka acknowledged every record of a batch, ``commit`` writes the new cursor to a temporary file, fsyncs
   it and renames it over ``cursor`` (atomic), then deletes segments wholly before the cursor.
A crash between 2 and 3 re-sends that batch: events carry deterministic ids, so downstream writes ignore the repeat.
A torn last record (crash mid-append, never acknowledged to the sender) fails its CRC and is cut off at open.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct("<II")
_SEGMENT_RE = re.compile(r"^seg-(\d{8})\.log$")
SEGMENT_BYTES = 16 * 1024 * 1024


class SpoolFull(RuntimeError):
    """The spool has reached its size cap; the sender should retry later (C-STORE 0xA700)."""


@dataclass(frozen=True)
class SpooledRecord:
    topic: str
    key: bytes
    value: bytes
    segment: int
    end_offset: int  # offset just past this record in its segment


def _pack(topic: str, key: bytes, value: bytes) -> bytes:
    t = topic.encode()
    return struct.pack("<H", len(t)) + t + struct.pack("<I", len(key)) + key + value


def _unpack(payload: bytes) -> tuple[str, bytes, bytes]:
    (tlen,) = struct.unpack_from("<H", payload, 0)
    topic = payload[2 : 2 + tlen].decode()
    (klen,) = struct.unpack_from("<I", payload, 2 + tlen)
    start = 6 + tlen
    return topic, payload[start : start + klen], payload[start + klen :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Thread-safe. One writer side (``append``) and one drainer side (``read_batch``/``commit``)."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._cursor = self._read_cursor()
        self._segments = self._scan_segments()
        self._repair_tail()
        self._write_fd: int | None = None
        self._closed = False
        self._write_seg = self._segments[-1] if self._segments else self._cursor[0]
        self._write_size = self._segment_size(self._write_seg)
        self._pending = self._count_pending()

    # -------------------------------------------------------------------------------- layout helpers
    def _seg_path(self, n: int) -> Path:
        return self.dir / f"seg-{n:08d}.log"

    def _scan_segments(self) -> list[int]:
        return sorted(int(m[1]) for p in self.dir.iterdir() if (m := _SEGMENT_RE.match(p.name)))

    def _segment_size(self, n: int) -> int:
        p = self._seg_path(n)
        return p.stat().st_size if p.exists() else 0

    def _read_cursor(self) -> tuple[int, int]:
        p = self.dir / "cursor"
        if not p.exists():
            return (1, 0)
        seg, off = p.read_text().split()
        return int(seg), int(off)

    def _iter_segment(self, n: int, start: int) -> list[tuple[int, bytes]]:
        """(end offset, payload) of every intact record from `start`; stops at the first torn one."""
        out = []
        data = self._seg_path(n).read_bytes() if self._seg_path(n).exists() else b""
        pos = start
        while pos + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if end > len(data):
                break
            payload = data[pos + _HEADER.size : end]
            if zlib.crc32(payload) != crc:
                break
            out.append((end, payload))
            pos = end
        return out

    def _repair_tail(self) -> None:
        """Cut a torn record off the last segment (it was never acknowledged to any sender)."""
        if not self._segments:
            return
        last = self._segments[-1]
        start = self._cursor[1] if last == self._cursor[0] else 0
        records = self._iter_segment(last, start)
        good_end = records[-1][0] if records else start
        if self._segment_size(last) > good_end:
            with open(self._seg_path(last), "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())

    def _count_pending(self) -> int:
        n = 0
        for seg in self._segments:
            if seg < self._cursor[0]:
                continue
            n += len(self._iter_segment(seg, self._cursor[1] if seg == self._cursor[0] else 0))
        return n

    # ---------------------------------------------------------------------------------------- state
    @property
    def pending(self) -> int:
        """Records appended and not yet acknowledged by Kafka."""
        return self._pending

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._size_locked()

    def _size_locked(self) -> int:
        total = 0
        for seg in self._segments:
            if seg > self._cursor[0]:
                total += self._segment_size(seg) if seg != self._write_seg else self._write_size
            elif seg == self._cursor[0]:
                size = self._write_size if seg == self._write_seg else self._segment_size(seg)
                total += size - self._cursor[1]
        return total

    def is_empty(self) -> bool:
        return self._pending == 0

    # ---------------------------------------------------------------------------------------- write
    def append(self, topic: str, key: bytes, value: bytes) -> None:
        """Durably append one record (fsync before return). Raises ``SpoolFull`` at the size cap."""
        payload = _pack(topic, key, value)
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._size_locked() + len(record) > self.max_bytes:
                raise SpoolFull(f"spool {self.dir} holds {self._size_locked()} bytes (cap {self.max_bytes})")
            if self._write_fd is None or self._write_size >= SEGMENT_BYTES:
                self._roll()
            assert self._write_fd is not None
            os.write(self._write_fd, record)
            if self._fsync:
                os.fsync(self._write_fd)
            self._write_size += len(record)
            self._pending += 1

    def _roll(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_seg += 1
            self._write_size = 0
        new = self._write_seg not in self._segments
        self._write_fd = os.open(self._seg_path(self._write_seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if new:
            self._segments.append(self._write_seg)
            _fsync_dir(self.dir)
        self._write_size = os.fstat(self._write_fd).st_size

    # ---------------------------------------------------------------------------------------- drain
    def read_batch(self, max_records: int = 500) -> list[SpooledRecord]:
        out: list[SpooledRecord] = []
        with self._lock:
            seg, off = self._cursor
            segments = [s for s in self._segments if s >= seg]
        for s in segments:
            for end, payload in self._iter_segment(s, off if s == seg else 0):
                topic, key, value = _unpack(payload)
                out.append(SpooledRecord(topic, key, value, s, end))
                if len(out) >= max_records:
                    return out
        return out

    def commit(self, last: SpooledRecord, count: int) -> bool:
        """Mark everything up to and including `last` as acknowledged by Kafka. False (and nothing written) once
        closed: another ``Spool`` may own the folder by then, and a late cursor would move its cursor back."""
        with self._lock:
            if self._closed:
                return False
            tmp = self.dir / "cursor.tmp"
            with open(tmp, "w") as f:
                f.write(f"{last.segment} {last.end_offset}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / "cursor")
            _fsync_dir(self.dir)
            self._cursor = (last.segment, last.end_offset)
            self._pending = max(self._pending - count, 0)
            for s in list(self._segments):
                if s < last.segment:
                    self._seg_path(s).unlink(missing_ok=True)
                    self._segments.remove(s)
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
