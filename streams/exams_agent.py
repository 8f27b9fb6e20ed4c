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
from schemas.events import DrlValue, InstanceEvent
from schemas.registry import UnknownSchemaError
from streams import dose as dose_mod
from streams.app import TOPIC_DOSE_ALERTS, TOPIC_DRL_VALUES, TOPIC_EXAM_DOSE, StreamsApp
from streams.dose_events import alerts_for, classify_exam, exam_dose_event, with_exam_type
from streams.drl import DEFAULT_DRL_PATH, DrlWatcher
from streams.exams import ExamState, event_time, fold, is_timing_instance, micros, publish, should_close
from streams.examtypes import load_rules
from streams.worker import fail_fast

log = logging.getLogger("radpulse.streams")


class ExamAgents:
    def __init__(self, sa: StreamsApp) -> None:
        self.sa = sa
        self.quiet_s = sa.settings.streams.quiet_minutes * 60
        self.idle_s = sa.settings.streams.idle_close_s
        self.device_clock: dict[str, int] = {}  # device → latest event time seen (µs): the stream's clock
        self.pending_ticks: dict[str, float] = {}
        self.counters = {"instances": 0, "duplicates": 0, "undecodable": 0, "published": 0, "closed": 0, "alerts": 0}
        dose = sa.settings.dose
        self.rules = load_rules(dose.exam_type_rules or None)
        self.drls = DrlWatcher(dose.drl_file or DEFAULT_DRL_PATH, active=tuple(dose.drl_tables),
                               on_error=lambda err: log.error("DRL table not reloaded: %s", err))
        self._drl_digest: str | None = None
        app = sa.app
        app.agent(sa.instances, name="assemble-exams")(fail_fast(self.assemble))
        app.agent(sa.ticks, name="close-exams")(fail_fast(self.close))
        app.timer(interval=sa.settings.streams.tick_interval_s)(self.scan)

    async def _publish(self, key: str, state: ExamState, status: str) -> None:
        now = datetime.now(UTC)
        state, exam = publish(state, status, now)
        raw_dose = self.sa.dose_table.get(key)
        dose = dose_mod.exam_dose(dose_mod.ExamDoseState.from_dict(raw_dose)) if raw_dose else None
        exam = with_exam_type(exam, classify_exam(self.rules, exam, dose))
        await self.sa.exams.send(key=key.encode(), value=codec.encode(exam))
        self.counters["published"] += 1
        if status != "complete" or dose is None:
            return
        out = self.sa.out
        await out[TOPIC_EXAM_DOSE].send(key=key.encode(), value=codec.encode(exam_dose_event(exam, dose)))
        for alert in alerts_for(exam, dose, self.rules, self.drls.current(), now):
            await out[TOPIC_DOSE_ALERTS].send(key=key.encode(), value=codec.encode(alert))
            self.counters["alerts"] += 1

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
            raw_dose = self.sa.dose_table.get(exam_key)
            dose_state, dose_changed = dose_mod.fold_dose(
                dose_mod.ExamDoseState.from_dict(raw_dose) if raw_dose else None, event
            )
            if dose_changed or raw_dose is None:
                self.sa.dose_table[exam_key] = dose_state.to_dict()
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
        await self._publish_drls()
        now = time.monotonic()
        for key, raw in list(self.sa.exam_table.items()):
            if not raw or raw.get("status") == "complete":
                continue
            if now - self.pending_ticks.get(key, -1e9) < 10:
                continue  # a tick is on its way
            if self._due(ExamState.from_dict(raw)):
                self.pending_ticks[key] = now
                await self.sa.ticks.send(key=key.encode(), value=b"tick")
