"""Micro-batches per table, due on size or age, and the Kafka offsets they make committable. Pure (time is passed in).

Order of durable steps (the writer follows it): 1) a consumed message's rows are added and its offset marked;
2) ``flush`` inserts each table's rows; a table leaves the batch once its insert succeeded, so a retry re-sends only
what failed; 3) only when every table is in does ``flush`` hand back the offsets, and only then are they committed.
A crash anywhere before 3) redelivers the messages; the tables are ReplacingMergeTree, so the replay collapses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sinks.rows import Row

Partition = tuple[str, int]  # (topic, partition)
# instances before exams before exam_dose: merging a late exam generation reads the instances and the exam rows
FLUSH_FIRST = ("instances", "exams", "exam_dose")


def _flush_rank(table: str) -> int:
    return FLUSH_FIRST.index(table) if table in FLUSH_FIRST else len(FLUSH_FIRST)


@dataclass
class Batcher:
    """Rows per table plus the next offset to commit per partition."""

    max_rows: int = 5000
    max_age_s: float = 1.0
    _rows: dict[str, list[Row]] = field(default_factory=dict)
    _offsets: dict[Partition, int] = field(default_factory=dict)
    _since: float | None = None  # when the oldest unflushed message was added

    def add(self, table: str, rows: Iterable[Row], now: float) -> None:
        self._rows.setdefault(table, []).extend(rows)
        self._touch(now)

    def mark(self, topic: str, partition: int, offset: int, now: float) -> None:
        """The message at ``offset`` is fully in the batch (or skipped): commit past it after the next flush."""
        key = (topic, partition)
        self._offsets[key] = max(self._offsets.get(key, 0), offset + 1)
        self._touch(now)

    def _touch(self, now: float) -> None:
        if self._since is None:
            self._since = now

    @property
    def pending_rows(self) -> int:
        return sum(len(r) for r in self._rows.values())

    @property
    def empty(self) -> bool:
        return not self._rows and not self._offsets

    def due(self, now: float) -> bool:
        if any(len(r) >= self.max_rows for r in self._rows.values()):
            return True
        return self._since is not None and now - self._since >= self.max_age_s

    def flush(self, insert: Callable[[str, list[Row]], None]) -> dict[Partition, int]:
        """Insert every table's rows; offsets to commit once all are in. An exception from ``insert`` propagates
        and leaves the failed table (and all offsets) pending."""
        for table in sorted(self._rows, key=_flush_rank):
            rows = self._rows[table]
            if rows:
                insert(table, rows)
            del self._rows[table]
        offsets, self._offsets, self._since = self._offsets, {}, None
        return offsets

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop the offsets of revoked partitions: their new owner commits them. Their rows stay (a replay is
        harmless)."""
        for key in partitions:
            self._offsets.pop(key, None)
