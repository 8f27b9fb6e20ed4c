"""The exam agents: fold instances into the exam table, close quiet exams, publish versions to ``radpulse.exams``.

A Faust table may only be changed while processing a message of its partition (the changelog partition is the
event's), so the timer never closes an exam itself: it sends a *tick* keyed like the exam, and the tick agent, on
the exam's own partition, re-checks and closes. Publication happens before the table write: a crash in between
re-publishes the same version on replay, which ClickHouse's ReplacingMergeTree absorbs.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from schemas import codec
from schemas.codec import DecodeError
from schemas.events import InstanceEvent
from schemas.registry import UnknownSchemaError
from streams.app import StreamsApp
from streams.exams import ExamState, event_time, fold, is_timing_instance, micros, publish, should_close

log = logging.getLogger("radpulse.streams")


class ExamAgents:
    def __init__(self, sa: StreamsApp) -> None:
        self.sa = sa
        self.quiet_s = sa.settings.streams.quiet_minutes * 60
        self.idle_s = sa.settings.streams.idle_close_s
        self.device_clock: dict[str, int] = {}  # device → latest event time seen (µs): the stream's clock
        self.pending_ticks: dict[str, float] = {}
        self.counters = {"instances": 0, "duplicates": 0, "undecodable": 0, "published": 0, "closed": 0}
        app = sa.app
        app.agent(sa.instances, name="assemble-exams")(self.assemble)
        app.agent(sa.ticks, name="close-exams")(self.close)
        app.timer(interval=sa.settings.streams.tick_interval_s)(self.scan)

    async def _publish(self, key: str, state: ExamState, status: str) -> None:
        state, exam = publish(state, status, datetime.now(UTC))
        await self.sa.exams.send(key=key.encode(), value=codec.encode(exam))
        self.counters["published"] += 1

    async def assemble(self, stream) -> None:  # type: ignore[no-untyped-def]
        table = self.sa.exam_table
        async for key, value in stream.items():
            try:
                event = codec.decode(InstanceEvent, value)
            except (DecodeError, UnknownSchemaError, ValueError, TypeError):
                self.counters["undecodable"] += 1
                log.warning("skipped an undecodable message on %s (key %s)", self.sa.instances.get_topic_name(),
                            (key or b"")[:40])
                continue
            exam_key = event.study_pseudonym
            raw = table.get(exam_key)
            before = ExamState.from_dict(raw) if raw else None
            was_complete = before is not None and before.status == "complete"
            state, changed = fold(before, event, time.time())
            if not changed:
                self.counters["duplicates"] += 1
                continue
            self.counters["instances"] += 1
            if event.device_id and is_timing_instance(event) and (t := micros(event_time(event))) is not None:
                self.device_clock[event.device_id] = max(self.device_clock.get(event.device_id, t), t)
            if before is None or was_complete:
                await self._publish(exam_key, state, "in_progress")
            table[exam_key] = state.to_dict()

    async def close(self, stream) -> None:  # type: ignore[no-untyped-def]
        table = self.sa.exam_table
        async for raw_key, _value in stream.items():
            key = raw_key.decode()
            self.pending_ticks.pop(key, None)
            raw = table.get(key)
            if not raw:
                continue
            state = ExamState.from_dict(raw)
            if not self._due(state):
                continue
            await self._publish(key, state, "complete")
            table[key] = state.to_dict()
            self.counters["closed"] += 1

    def _due(self, state: ExamState) -> bool:
        clock = self.device_clock.get(state.device_id or "")
        return should_close(state, device_clock_us=clock, wall_now=time.time(), quiet_s=self.quiet_s,
                            idle_s=self.idle_s)

    async def scan(self) -> None:
        now = time.monotonic()
        for key, raw in list(self.sa.exam_table.items()):
            if not raw or raw.get("status") == "complete":
                continue
            if now - self.pending_ticks.get(key, -1e9) < 10:
                continue  # a tick is on its way
            if self._due(ExamState.from_dict(raw)):
                self.pending_ticks[key] = now
                await self.sa.ticks.send(key=key.encode(), value=b"tick")
