"""The exam agents: fold instances into the exam table, close quiet exams, publish versions to ``radpulse.exams``.

A Faust table may only be changed while processing a message of its partition (the changelog partition is the
event's), so the timer never closes an exam itself: it sends a *tick* keyed like the exam, and the tick agent, on
the exam's own partition, re-checks and closes. An exam is read, changed and written back without an ``await`` in
between (two agents fold the same exam), then its new version is published; the state records the highest version
the broker confirmed, so a crash between the write and the publication is repaired by the scan (a tick
re-publishes the version; ClickHouse's ReplacingMergeTree absorbs a version sent twice).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust

from schemas import codec
from schemas.codec import DecodeError
from schemas.events import DrlValue, InstanceEvent
from schemas.exam_version import first_version
from schemas.registry import UnknownSchemaError
from streams import dose as dose_mod
from streams.app import TOPIC_DOSE_ALERTS, TOPIC_DRL_VALUES, TOPIC_EXAM_DOSE, StreamsApp
from streams.dose_events import alerts_for, classify_exam, exam_dose_event, with_exam_type
from streams.drl import DEFAULT_DRL_PATH, DrlWatcher
from streams.exams import ExamState, as_exam, event_time, fold, is_timing_instance, micros, should_close
from streams.examstore import ExamStore
from streams.examtypes import load_rules
from streams.worker import fail_fast

log = logging.getLogger("radpulse.streams")

TICK, EVICT = b"tick", b"evict"


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

    async def _deliver(self, key: str, version: int, messages: list[tuple[faust.TopicT, bytes, bytes]]) -> None:
        """Send one version's messages, wait for the broker, then mark the version published in the state.

        The state was written before (no await between reading and writing an exam: another agent may fold the
        same exam meanwhile). A crash before the mark leaves ``published < version``: the scan sends it again."""
        self.inflight[key] = max(version, self.inflight.get(key, 0))
        try:
            pending = [await topic.send(key=k, value=v) for topic, k, v in messages]
            for fut in pending:
                await fut
        finally:
            if self.inflight.get(key) == version:
                del self.inflight[key]
        self.counters["published"] += 1
        self.counters["alerts"] += max(0, len(messages) - 2)
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

    def fold_instance(self, event: InstanceEvent, partition: int = -1) -> tuple[str, ExamState] | None:
        """Fold one instance into its exam and dose states and write them back. Synchronous on purpose: the read,
        fold and write of an exam must not be interleaved with another agent's. Returns the exam when it was
        (re)opened by this instance and its new version must be published."""
        exam_key = event.study_pseudonym
        before = self.store.exam(exam_key)
        reopened = before is None or before.status == "complete"
        state, changed = fold(before, event, time.time())
        if not changed:
            self.counters["duplicates"] += 1
            return None
        self.counters["instances"] += 1
        before_dose = self.store.dose(exam_key)
        dose_state, dose_changed = dose_mod.fold_dose(before_dose, event)
        if event.device_id and is_timing_instance(event) and (t := micros(event_time(event))) is not None:
            self.device_clock[event.device_id] = max(self.device_clock.get(event.device_id, t), t)
        if before is None:  # a new generation: it outranks what an evicted or lost state published (exam_version)
            state.version = first_version(time.time())
        if reopened:
            state.version += 1
            state.status = "in_progress"
        if partition >= 0:
            state.partition = partition
        self.store.save(exam_key, state, dose_state if dose_changed or before_dose is None else None)
        self._watch(exam_key, state.status, state.version, state.published)
        return (exam_key, state) if reopened else None

    async def assemble(self, stream) -> None:  # type: ignore[no-untyped-def]
        async for key, value in stream.items():
            try:
                event = codec.decode(InstanceEvent, value)
            except (DecodeError, UnknownSchemaError, ValueError, TypeError):
                self.counters["undecodable"] += 1
                log.warning("skipped an undecodable message on %s (key %s)", self.sa.instances.get_topic_name(),
                            (key or b"")[:40])
                continue
            current = getattr(stream, "current_event", None)
            opened = self.fold_instance(event, current.message.partition if current is not None else -1)
            if opened is not None:
                exam_key, state = opened
                await self._deliver(exam_key, state.version, self._messages(exam_key, state, datetime.now(UTC)))

    def close_exam(self, key: str, evict: bool = False) -> ExamState | None:
        """Complete the exam if it is due (synchronously, like ``fold_instance``); else, if a crash lost its last
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
                await self._deliver(key, state.version, self._messages(key, state, datetime.now(UTC)))

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
