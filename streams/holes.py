"""Source records the worker read past without processing them: found, and read again.

Faust drops records in several places while a rebalance is under way — a fetched batch abandoned when the flow
stops or the generation changes, a delivery cut short by the flow's suspension, a message its stream skips — and
counts on the seek to the committed offsets that ends the rebalance to read them again. A record of an older
fetch delivered after that seek moves the worker's read position past the records the seek was meant to re-read,
so they are dropped as "already read" and never processed. Faust then commits past them as if they were a
compaction gap (the instance is lost), or, with ``streams.app``'s commit guard, never commits that partition again
(issue 10: the survivor of a SIGKILL held one partition's commit for good, its exam short by one instance).

Our source topics are never compacted and carry no transaction markers, so a record not processed while later
ones were is a hole, not a gap. ``HoleRepair`` looks every couple of seconds; a hole still there after a grace
period is read again: the flow stops, every source partition is sought back to its first unprocessed offset, and
the flow resumes (re-processing is harmless: every fold is idempotent). An offset that does not exist (before the
log start, or a hole that three re-reads did not fill) counts as processed, with a warning naming it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("radpulse.streams")

GRACE_S = 5.0  # a record delivered but not yet processed is not a hole: processing takes milliseconds
SETTLE_S = 1.5  # a fetch in flight when the flow stops returns within Faust's 1 s getmany timeout
ATTEMPTS = 3  # re-reads before an offset that never arrives counts as processed


def first_unprocessed(acked: Iterable[int], committed: int | None, log_start: int = 0) -> int | None:
    """The offset a partition's commit waits for when later offsets were processed without it, else None.

    `committed` is Faust's next offset to read (None for "nothing committed yet", where reading began at the log
    start)."""
    lowest = min(acked, default=None)
    if lowest is None:
        return None
    expected = max(committed or 0, log_start)
    return expected if lowest > expected else None


@dataclass
class _Seen:
    offset: int
    since: float
    attempts: int = 0


class HoleRepair:
    """Finds holes in the source partitions a worker owns and has them read again (see the module's docstring)."""

    def __init__(self, app: Any, *, grace_s: float = GRACE_S, settle_s: float = SETTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.grace_s = grace_s
        self.settle_s = settle_s
        self.clock = clock
        self.log_start: dict[Any, int] = {}
        self.seen: dict[Any, _Seen] = {}
        self.repairs = 0

    def commit_blocked(self, consumer: Any, tp: Any) -> bool:
        """May no commit of `tp` go ahead? (A commit would pass a record that was never processed.)"""
        return first_unprocessed(consumer._acked.get(tp) or (), consumer._committed_offset.get(tp),
                                 self.log_start.get(tp, 0)) is not None

    def _idle(self) -> bool:
        """A rebalance or a recovery owns the flow and ends with its own seek: not ours to touch."""
        app = self.app
        consumer = getattr(app, "_consumer", None)
        return (consumer is None or bool(app.rebalancing) or bool(app.tables.recovery.in_recovery)
                or not consumer.flow_active)

    def due(self) -> dict[Any, int]:
        """Source partitions whose hole has outlived the grace period: partition → first unprocessed offset."""
        if self._idle():
            self.seen.clear()
            return {}
        consumer = self.app._consumer
        now = self.clock()
        out: dict[Any, int] = {}
        for tp in list(consumer.assignment()):
            if consumer._is_changelog_tp(tp):
                continue
            hole = first_unprocessed(consumer._acked.get(tp) or (), consumer._committed_offset.get(tp),
                                     self.log_start.get(tp, 0))
            seen = self.seen.get(tp)
            if hole is None:
                self.seen.pop(tp, None)
                continue
            if seen is None or seen.offset != hole:
                self.seen[tp] = seen = _Seen(hole, now)
            if now - seen.since >= self.grace_s:
                out[tp] = hole
        return out

    async def run(self) -> None:
        """One look (a Faust timer calls it)."""
        due = self.due()
        if not due:
            return
        app = self.app
        consumer = app._consumer
        generation = app.consumer_generation_id
        sources = [tp for tp in consumer.assignment() if not consumer._is_changelog_tp(tp)]
        starts = await consumer.earliest_offsets(*sources)
        if app.consumer_generation_id != generation or self._idle():
            return
        self.log_start.update({tp: off for tp, off in starts.items() if off is not None and off >= 0})
        for tp in list(due):
            acked = consumer._acked.get(tp) or []
            committed = consumer._committed_offset.get(tp)
            start = self.log_start.get(tp, 0)
            if committed is not None and committed < start:
                consumer._committed_offset[tp] = start  # retention deleted what was committed last: read on
            hole = first_unprocessed(acked, consumer._committed_offset.get(tp), start)
            seen = self.seen.get(tp)
            if hole is None:
                del due[tp]
                self.seen.pop(tp, None)
            elif seen is not None and seen.attempts >= ATTEMPTS:
                self._count_as_processed(consumer, tp, hole, min(acked))
                del due[tp]
                self.seen.pop(tp, None)
        if due:
            await self._read_again(consumer, sources, due, generation)

    def _count_as_processed(self, consumer: Any, tp: Any, first: int, end: int) -> None:
        log.warning("offsets %d-%d of %s never arrived after %d re-reads (compacted or not a record): counted as "
                    "processed so that commits go on", first, end - 1, tp, ATTEMPTS)
        index = consumer._acked_index[tp]
        missing = [o for o in range(first, end) if o not in index]
        index.update(missing)
        consumer._acked[tp].extend(missing)
        consumer._acked[tp].sort()

    async def _read_again(self, consumer: Any, sources: list[Any], due: dict[Any, int], generation: int) -> None:
        app = self.app
        for tp, hole in due.items():
            self.seen[tp].attempts += 1
            log.warning("offset %d of %s was read past but never processed (later ones were): reading the worker's "
                        "partitions again from their first unprocessed offsets (attempt %d)", hole, tp,
                        self.seen[tp].attempts)
        consumer.stop_flow()
        try:
            # a fetch in flight returns first; seen with the flow stopped, Faust seeks it back to the commit
            await asyncio.sleep(self.settle_s)
            if app.consumer_generation_id != generation or app.rebalancing:
                return  # the rebalance that took over ends with its own seek
            for tp in sources:
                target = due.get(tp)
                if target is None:
                    target = max(consumer._committed_offset.get(tp) or 0, self.log_start.get(tp, 0))
                await consumer.seek(tp, target)
            self.repairs += 1
        finally:
            if app.consumer_generation_id == generation and not app.rebalancing:
                consumer.resume_flow()
