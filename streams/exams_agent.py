"""The exam agents: fold instances into the exam table, close quiet exams, publish versions to ``radpulse.exams``.

A Faust table may only be changed while processing a message of its partition (the changelog partition is the
event's), so the timer never closes an exam itself: it sends a *tick* keyed like the exam, and the tick agent, on
the exam's own partition, re-checks and closes. An exam is read, changed and written back without an ``await`` in
between (two agents fold the same exam), then its new version is published; the state records the highest version
the broker confirmed, so a crash between the write and the publication is repaired by the scan (a tick
re-publishes the version; ClickHouse's ReplacingMergeTree absorbs a version sent twice).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from schemas import codec
from schemas.codec import DecodeError
from schemas.events import DrlValue, InstanceEvent
from schemas.exam_version import first_version
from schemas.registry import UnknownSchemaError
from streams import dose as dose_mod
from streams.app import TOPIC_DOSE_ALERTS, TOPIC_DRL_VALUES, TOPIC_EXAM_DOSE, StreamsApp, writing_to
from streams.dose import ExamDoseState
from streams.dose_events import alerts_for, classify_exam, exam_dose_event, with_exam_type
from streams.drl import DEFAULT_DRL_PATH, DrlWatcher
from streams.exams import ExamState, as_exam, event_time, fold, is_timing_instance, micros, should_close
from streams.examstore import ExamStore
from streams.examtypes import load_rules
from streams.worker import fail_fast

log = logging.getLogger("radpulse.streams")

TICK, EVICT = b"tick", b"evict"
BATCH_MAX = 500  # instances folded together: each exam they touch is written once per batch
BATCH_WITHIN_S = 0.05  # the longest a lone instance waits for a batch to fill


@dataclass
class _Work:
    """An exam being folded in a batch: its state as the batch goes, written once at the end."""

    state: ExamState | None
    dose: ExamDoseState | None
    partition: int
    dose_dirty: bool = False
    opened: bool = False
    changed: bool = False


class ExamAgents:
    def __init__(self, sa: StreamsApp) -> None:
        self.sa = sa
        self.quiet_s = sa.settings.streams.quiet_minutes * 60
        self.idle_s = sa.settings.streams.idle_close_s
        self.device_clock: dict[str, int] = {}  # device → latest event time seen (µs): the stream's clock
        self.pending_ticks: dict[str, float] = {}
        self.inflight: dict[str, int] = {}  # exam → the highest version this worker is publishing right now
        self.watched: set[str] = set()  # exams the scan looks at: open, or last version not yet confirmed
        self._last_full_scan = -1e9
        self.counters = {"instances": 0, "duplicates": 0, "undecodable": 0, "published": 0, "closed": 0, "alerts": 0,
                         "evicted": 0}
        self.retain_s = sa.settings.streams.retain_days * 86400
        self.store = ExamStore(sa.exam_table)
        dose = sa.settings.dose
        self.rules = load_rules(dose.exam_type_rules or None)
        self.drls = DrlWatcher(dose.drl_file or DEFAULT_DRL_PATH, active=tuple(dose.drl_tables),
                               on_error=lambda err: log.error("DRL table not reloaded: %s", err))
        self._drl_digest: str | None = None
        app = sa.app
        app.agent(sa.instances, name="assemble-exams")(fail_fast(self.assemble))
        app.agent(sa.ticks, name="close-exams")(fail_fast(self.close))
        app.timer(interval=sa.settings.streams.tick_interval_s)(self.scan)

    def _messages(self, key: str, state: ExamState, now: datetime) -> list[tuple[faust.TopicT, bytes, bytes]]:
        """Everything one exam version publishes: the exam, and when complete its dose and DRL alerts."""
        dose_state = self.store.dose(key)
        dose = dose_mod.exam_dose(dose_state) if dose_state else None
        exam = as_exam(state, now)
        exam = with_exam_type(exam, classify_exam(self.rules, exam, dose))
        k = key.encode()
        out: list[tuple[faust.TopicT, bytes, bytes]] = [(self.sa.exams, k, codec.encode(exam))]
        if state.status == "complete" and dose is not None:
            out.append((self.sa.out[TOPIC_EXAM_DOSE], k, codec.encode(exam_dose_event(exam, dose))))
            for alert in alerts_for(exam, dose, self.rules, self.drls.current(), now):
                out.append((self.sa.out[TOPIC_DOSE_ALERTS], k, codec.encode(alert)))
        return out

    async def _deliver_all(self, versions: list[tuple[str, int, int, list[tuple[faust.TopicT, bytes, bytes]]]]) -> None:
        """Send each (exam, version, partition, messages), wait for the broker, then mark the versions published.

        The states were written before (no await between reading and writing an exam: another agent may fold the
        same exam meanwhile). A crash before the mark leaves ``published < version``: the scan sends it again."""
        for key, version, _p, _m in versions:
            self.inflight[key] = max(version, self.inflight.get(key, 0))
        try:
            pending = [await topic.send(key=k, value=v)
                       for _key, _version, _p, messages in versions for topic, k, v in messages]
            for fut in pending:
                await fut
        finally:
            for key, version, _p, _m in versions:
                if self.inflight.get(key) == version:
                    del self.inflight[key]
        for key, version, partition, messages in versions:
            self.counters["published"] += 1
            self.counters["alerts"] += max(0, len(messages) - 2)
            with self._partition_of(partition):
                raw = self.store.mark_published(key, version)
            if raw is not None:
                self._watch(key, raw["status"], raw["version"], version)

    def _watch(self, key: str, status: str, version: int, published: int) -> None:
        """Keep the scan's index of exams that may need a tick: open, or a version not yet confirmed."""
        if status != "complete" or published < version:
            self.watched.add(key)
        else:
            self.watched.discard(key)

    async def _publish_drls(self) -> None:
        """The DRL values in force, for the dashboards' reference lines; again after every reload."""
        table = self.drls.current()
        if table.digest == self._drl_digest:
            return
        now = datetime.now(UTC)
        for r in table.rows:
            value = DrlValue(table_id=r.table_id, exam_type=r.exam_type, quantity=r.quantity, value=r.value,
                             unit=r.unit, phantom=r.phantom or "", per=r.per, population=r.population,
                             percentile=r.percentile, source=r.source, year=r.year, loaded_at=now)
            key = f"{r.table_id}|{r.exam_type}|{r.quantity}|{r.phantom or ''}|{r.percentile}".encode()
            await self.sa.out[TOPIC_DRL_VALUES].send(key=key, value=codec.encode(value))
        self._drl_digest = table.digest
        log.info("DRL tables %s in force (%d values from %s)", ",".join(table.active), len(table.rows), table.path)

    def fold_batch(self, events: Iterable[tuple[InstanceEvent, int]]) -> list[tuple[str, ExamState]]:
        """Fold a batch of (instance, partition) into their exams, then write each exam it touched once.

        Synchronous on purpose: the read, fold and write of an exam must not be interleaved with another agent's.
        One write per exam per batch, not per instance: Faust's table write per event costs more than the rest of
        the fold (one changelog record each; benchmarks/streams.py). Returns the exams (re)opened by the batch,
        whose new version must be published."""
        work: dict[str, _Work] = {}
        now = time.time()
        for event, partition in events:
            key = event.study_pseudonym
            w = work.get(key)
            if w is None:
                w = work[key] = _Work(self.store.exam(key), self.store.dose(key), partition)
            before = w.state
            reopened = before is None or before.status == "complete"
            state, changed = fold(before, event, now)
            if not changed:
                self.counters["duplicates"] += 1
                continue
            self.counters["instances"] += 1
            dose_state, dose_changed = dose_mod.fold_dose(w.dose, event)
            w.dose_dirty = w.dose_dirty or dose_changed or w.dose is None
            w.dose = dose_state
            if event.device_id and is_timing_instance(event) and (t := micros(event_time(event))) is not None:
                self.device_clock[event.device_id] = max(self.device_clock.get(event.device_id, t), t)
            if before is None:  # a new generation: it outranks what an evicted or lost state published (exam_version)
                state.version = first_version(now)
            if reopened:
                state.version += 1
                state.status = "in_progress"
                w.opened = True
            if partition >= 0:
                state.partition = w.partition = partition
            w.state = state
            w.changed = True
        opened: list[tuple[str, ExamState]] = []
        for key, w in work.items():
            if not w.changed or w.state is None:
                continue
            with self._partition_of(w.partition):
                self.store.save(key, w.state, w.dose if w.dose_dirty else None)
            self._watch(key, w.state.status, w.state.version, w.state.published)
            if w.opened:
                opened.append((key, w.state))
        return opened

    @staticmethod
    def _partition_of(partition: int) -> contextlib.AbstractContextManager[None]:
        """Table writes to the exam's partition (the current event's when it is not known)."""
        return writing_to(partition) if partition >= 0 else contextlib.nullcontext()

    def _current(self, events: list[Any]) -> list[Any]:
        """The batch's events this worker may still fold: none once a rebalance has begun, or of an earlier
        generation. The batch was buffered before; its partitions may belong to another worker by now, and a fold
        written to their changelog after the new owner's would be what the next recovery reads. Faust's stream
        skips such events one at a time; a batch needs it again, with no await before the fold. They are not
        acknowledged either (``streams.app``), so the rebalance's seek reads them again."""
        app = self.sa.app
        if not app.flow_control.is_active():
            return []
        generation = app.consumer_generation_id
        return [ev for ev in events if ev.message.generation_id == generation]

    def decode_batch(self, events: Iterable[Any]) -> list[tuple[InstanceEvent, int]]:
        out: list[tuple[InstanceEvent, int]] = []
        for ev in events:
            try:
                out.append((codec.decode(InstanceEvent, ev.value), ev.message.partition))
            except (DecodeError, UnknownSchemaError, ValueError, TypeError):
                self.counters["undecodable"] += 1
                log.warning("skipped an undecodable message on %s (key %s)", self.sa.instances.get_topic_name(),
                            (ev.key or b"")[:40])
        return out

    async def assemble(self, stream) -> None:  # type: ignore[no-untyped-def]
        # batches: Faust acknowledges them once the body is done, so no commit passes an unfolded instance
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            opened = self.fold_batch(self.decode_batch(self._current(events)))
            if opened:
                now = datetime.now(UTC)
                await self._deliver_all([(key, state.version, state.partition, self._messages(key, state, now))
                                         for key, state in opened])

    def close_exam(self, key: str, evict: bool = False) -> ExamState | None:
        """Complete the exam if it is due (synchronously, like ``fold_batch``); else, if a crash lost its last
        publication, return it to be published again. With `evict`, drop a complete exam past retention."""
        self.pending_ticks.pop(key, None)
        state = self.store.exam(key)
        if state is None:
            return None
        if evict:
            if self._evictable(self.store.raw(key) or {}):
                self.store.evict(key)
                self.watched.discard(key)
                self.counters["evicted"] += 1
            return None
        if self._due(state):
            state.version += 1
            state.status = "complete"
            self.store.save(key, state)
            self._watch(key, state.status, state.version, state.published)
            self.counters["closed"] += 1
            return state
        if state.published < state.version and self.inflight.get(key, 0) < state.version:
            return state
        return None

    async def close(self, stream) -> None:  # type: ignore[no-untyped-def]
        async for raw_key, value in stream.items():
            key = raw_key.decode()
            state = self.close_exam(key, evict=value == EVICT)
            if state is not None:
                await self._deliver_all([(key, state.version, -1, self._messages(key, state, datetime.now(UTC)))])

    def _evictable(self, raw: dict[str, Any]) -> bool:
        """Complete, its last version confirmed, and nothing received for `[streams] retain_days`."""
        last = raw.get("last_received") or 0
        return (raw.get("status") == "complete" and raw.get("published", 0) >= raw.get("version", 0)
                and last < (time.time() - self.retain_s) * 1_000_000)

    def _due(self, state: ExamState) -> bool:
        clock = self.device_clock.get(state.device_id or "")
        return should_close(state, device_clock_us=clock, wall_now=time.time(), quiet_s=self.quiet_s,
                            idle_s=self.idle_s)

    async def scan(self) -> None:
        await self._publish_drls()
        now = time.monotonic()
        evict: list[str] = []
        if now - self._last_full_scan >= self.sa.settings.streams.evict_scan_s:
            # after a rebalance or recovery the table holds exams this worker never wrote: index them; and find
            # the complete exams past retention (one pass over a table that retention keeps bounded)
            self._last_full_scan = now
            for key, raw in self.store.exam_records():
                self._watch(key, raw["status"], raw["version"], raw.get("published", 0))
                if self._evictable(raw):
                    evict.append(key)
        for key in evict:
            await self._tick(key, EVICT)
        for key in list(self.watched):
            raw = self.store.raw(key)
            if not raw:
                self.watched.discard(key)
                continue
            if now - self.pending_ticks.get(key, -1e9) < 10:
                continue  # a tick is on its way
            unconfirmed = raw.get("published", 0) < raw["version"] and self.inflight.get(key, 0) < raw["version"]
            state = self.store.exam(key)
            if unconfirmed or (raw["status"] != "complete" and state is not None and self._due(state)):
                self.pending_ticks[key] = now
                await self._tick(key, TICK)

    async def _tick(self, key: str, value: bytes) -> None:
        """To the partition of the exam's instances: the tick's handler writes the exam, and a table write goes to
        the changelog partition of the message being handled. Keyed by the producer's own partitioner instead
        (murmur2, where the edge's librdkafka uses crc32), an exam's records were split over two changelog
        partitions and, with two workers, a stale copy could close an exam with fewer instances."""
        raw = self.store.raw(key)
        partition = raw.get("partition", -1) if raw else -1
        known = 0 <= partition < (self.sa.ticks.partitions or 0)
        await self.sa.ticks.send(key=key.encode(), value=value, partition=partition if known else None)
