"""Utilization and wait-time agents: completed exams and workflow events → DeviceKpi and ExamTiming.

Exams arrive keyed by study, workflow events by study or procedure step, and KPIs are per device and local day,
so both streams are forwarded onto one single-partition internal topic where one agent sees everything (a
department's volume — hundreds of exams a day — is far within one worker's reach). Its tables keep the latest
version of each recent exam (one record per exam) and, per study/accession, the workflow facts; a change marks
its device-day dirty, and a debounced flush recomputes each dirty device-day from scratch with
``streams.utilization`` — a pure recomputation, so replays are harmless — and sends only the rows that changed.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
import tomllib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import faust

from schemas import codec
from schemas.codec import DecodeError
from schemas.config import Settings
from schemas.events import DeviceKpi, Exam, ExamTiming, WorkflowEvent
from schemas.exam_version import generation
from schemas.registry import UnknownSchemaError
from streams.app import TOPIC_DEVICE_KPIS, TOPIC_EXAM_TIMING, TOPIC_WORKFLOW, StreamsApp
from streams.hours import OperatingHours, as_zone, parse_hours
from streams.utilization import (
    ExamInterval,
    coil_batching_savings,
    device_day_kpis,
    device_hour_kpis,
    device_key,
    exam_intervals,
    transitions,
    wait_times,
)
from streams.worker import fail_fast

log = logging.getLogger("radpulse.streams.kpi")

RETAIN_DAYS = 8  # exams and workflow facts kept per device for recomputation (late corrections, midnight)
CONTINUED = "~"  # prefix of a held exam that spans generations: its later versions keep extending it
LINK_PRUNE_S = 3600.0  # how often workflow links older than RETAIN_DAYS (received) are dropped
FLUSH_S = 3.0  # dirty device-days are recomputed and published at most this often
FLUSH = b"flush"
DEFAULT_HOURS = {"default": {d: ["07:00-19:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}


def load_hours(settings: Settings) -> OperatingHours:
    path = settings.utilization.hours_file
    if not path:
        return parse_hours(DEFAULT_HOURS)
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return parse_hours(data.get("hours", data))


def _b64(obj: object) -> str:
    return base64.b64encode(codec.encode(obj)).decode("ascii")


def _unb64(cls: type, text: str):  # type: ignore[no-untyped-def]
    return codec.decode(cls, base64.b64decode(text))


def local_day(t: datetime, tz: str) -> date:
    return t.astimezone(as_zone(tz)).date()


def day_kpi_events(
    site_id: str,
    device: str,
    day: date,
    exams: list[Exam],
    workflow: list[WorkflowEvent],
    tz: str,
    hours: OperatingHours,
    cap_s: float,
    version: int,
    now: datetime,
) -> tuple[list[DeviceKpi], list[ExamTiming]]:
    """Recompute one device's day (and its hours) plus the timing of the exams that started that day. Pure.

    Exam intervals come from MPPS messages when the modality sends them, else from the acquisition times, like the
    exam rows. Procedure-step times copied into image headers are ignored: consoles fill them with the time the
    step was opened (patient registration on the console), minutes before the first acquisition."""
    exams = [dataclasses.replace(e, pps_start_utc=None, pps_end_utc=None) for e in exams]
    intervals = [i for i in exam_intervals(exams, workflow, exam_type=lambda e: e.exam_type) if i.device == device]
    modality = next((e.modality for e in exams if e.modality), None)
    d = device_day_kpis(intervals, device, day, tz, hours, changeover_cap_s=cap_s)
    todays = [i for i in intervals if local_day(i.start_utc, tz) == day]
    coils = coil_batching_savings(todays, changeover_cap_s=cap_s) if modality == "MR" else None
    c = d.changeovers
    kpis = [
        DeviceKpi(
            site_id=site_id, device=device, grain="day", local_date=day, hour_local=-1, version=version,
            updated_at=now, modality=modality, exams=d.exams, qa_exams=d.qa_exams,
            discontinued_exams=d.discontinued_exams, busy_minutes=d.busy_in_hours_minutes,
            busy_outside_hours_minutes=d.busy_outside_hours_minutes, operating_minutes=d.operating_minutes,
            idle_minutes=d.idle_minutes, changeover_minutes=d.changeover_minutes, utilization_pct=d.utilization_pct,
            changeover_p50_s=c.p50_s, changeover_p90_s=c.p90_s, changeover_coil_change_p50_s=c.coil_change_p50_s,
            changeover_coil_change_p90_s=c.coil_change_p90_s, changeover_same_coil_p50_s=c.same_coil_p50_s,
            changeover_same_coil_p90_s=c.same_coil_p90_s, coil_changes=coils.coil_changes if coils else 0,
            coil_batching_minutes_saved=coils.minutes_saved if coils else None,
        )
    ]
    for h in device_hour_kpis(intervals, device, day, tz, hours, changeover_cap_s=cap_s):
        kpis.append(
            DeviceKpi(
                site_id=site_id, device=device, grain="hour", local_date=day, hour_local=h.hour_local,
                version=version, updated_at=now, modality=modality, exams=h.exams, qa_exams=h.qa_exams,
                discontinued_exams=h.discontinued_exams, busy_minutes=h.busy_in_hours_minutes,
                busy_outside_hours_minutes=h.busy_outside_hours_minutes, operating_minutes=h.operating_minutes,
                idle_minutes=h.idle_minutes, changeover_minutes=h.changeover_minutes,
                utilization_pct=h.utilization_pct,
            )
        )
    before = {t.after_exam_key: t for t in transitions(intervals, changeover_cap_s=cap_s)}
    coil_of = {i.exam_key: i.coil for i in intervals}
    waits = {w.exam_key: w for w in wait_times(todays, workflow, tz)}
    by_key = {e.exam_key: e for e in exams}
    timings = []
    for i in todays:
        t, w, exam = before.get(i.exam_key), waits.get(i.exam_key), by_key.get(i.exam_key)
        timings.append(
            ExamTiming(
                exam_key=i.exam_key, site_id=site_id, version=version, updated_at=now, device=device,
                modality=i.modality, exam_type=i.exam_type or (exam.exam_type if exam else None), local_date=day,
                hour_local=i.start_utc.astimezone(as_zone(tz)).hour, start_utc=i.start_utc, end_utc=i.end_utc,
                duration_s=(i.end_utc - i.start_utc).total_seconds(),
                timing_source="MPPS" if i.pps_start_utc else "IMAGES", discontinued=i.discontinued,
                not_patient=i.not_patient, coil=i.coil, changeover_s=t.changeover_s if t else None,
                coil_changed=t.coil_change if t else None, previous_coil=coil_of.get(t.before_exam_key) if t else None,
                arrival_to_start_s=w.arrival_to_start_s if w else None, arrival_kind=w.arrival_kind if w else None,
                order_to_start_s=w.order_to_start_s if w else None,
                scheduled_delay_s=w.scheduled_delay_s if w else None,
            )
        )
    return kpis, timings


def continued(old: Exam, new: Exam) -> Exam:
    """A later generation of an exam (its state was evicted or lost; ``schemas.exam_version``) holds only the late
    instances: the exam spans both."""
    start = min(t for t in (old.start_utc, new.start_utc) if t is not None) if old.start_utc or new.start_utc \
        else None
    end = max(t for t in (old.end_utc, new.end_utc) if t is not None) if old.end_utc or new.end_utc else None
    return dataclasses.replace(
        new, start_utc=start, end_utc=end, duration_s=(end - start).total_seconds() if start and end else None,
        instance_count=max(old.instance_count, new.instance_count),
        series_count=max(old.series_count, new.series_count),
    )


def stale_links(links: Iterable[tuple[str, dict[str, str] | None]], before: datetime) -> list[str]:
    """Links whose workflow facts all arrived before `before`: their exams are forgotten too, or never came (a
    cancelled order), so keeping them would grow the table with history."""
    out = []
    for link, held in links:
        times = [_unb64(WorkflowEvent, v).received_at for v in (held or {}).values()]
        if not times or max(times) < before:
            out.append(link)
    return out


class KpiAgents:
    """Exams and workflow facts go into tables; the device-days they touch are marked dirty (a table too, so a
    crash after the offset commit cannot lose a mark); a flush, at most every ``FLUSH_S`` seconds, recomputes each
    dirty device-day once and publishes only the KPI and timing rows that changed since this worker last sent
    them. A busy device-day is recomputed once per flush, not once per exam version."""

    def __init__(self, sa: StreamsApp) -> None:
        self.sa = sa
        s = sa.settings
        self.tz = s.site.timezone
        self.hours = load_hours(s)
        self.cap_s = s.utilization.changeover_cap_minutes * 60
        app = sa.app
        schema = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
        self.inputs = app.topic(s.topic("streams_kpi_inputs"), key_type=bytes, value_type=bytes, partitions=1,
                                internal=True)
        self.workflow = app.topic(s.topic(TOPIC_WORKFLOW), key_type=bytes, value_type=bytes)
        # "<device>|<exam_key>" → base64 Avro Exam; link ("study:…" / "acc:…") → {event_id: base64 WorkflowEvent};
        # "<device>|<day>" → 1 while that device-day awaits its flush
        self.exams = app.Table("kpi_exams", default=None, schema=schema, partitions=1)
        self.links = app.Table("kpi_links", default=None, schema=schema, partitions=1)
        self.dirty = app.Table("kpi_dirty", default=None, schema=schema, partitions=1)
        # "<device>|<day>" → 1 once that day's exams were forgotten: its published KPIs are final (a few per device
        # and year, so this table stays small)
        self.closed = app.Table("kpi_closed_days", default=None, schema=schema, partitions=1)
        self._decoded: dict[str, tuple[str, Exam]] = {}
        self._sent: dict[tuple[str, ...], tuple] = {}  # row identity → its content as last sent
        self._flush_requested = -1e9  # monotonic time of the last flush request still on its way
        self._links_pruned = time.monotonic()
        self.counters = {"flushes": 0, "kpi_rows": 0, "timing_rows": 0, "late_for_closed_day": 0}
        app.agent(sa.exams, name="kpi-forward-exams")(fail_fast(self.forward))
        app.agent(self.workflow, name="kpi-forward-workflow")(fail_fast(self.forward))
        app.agent(self.inputs, name="kpi-recompute")(fail_fast(self.recompute))
        app.timer(interval=FLUSH_S)(self.request_flush)

    async def forward(self, stream) -> None:  # type: ignore[no-untyped-def]
        async for value in stream:
            await self.inputs.send(key=b"all", value=value)

    async def request_flush(self) -> None:
        # one request in flight at a time; again after 30 s in case it went to a worker that lost the partition
        now = time.monotonic()
        if len(self.dirty) and now - self._flush_requested > 30:
            self._flush_requested = now
            await self.inputs.send(key=b"all", value=FLUSH)

    def _exam(self, key: str) -> Exam | None:
        raw = self.exams.get(key)
        if not raw:
            return None
        hit = self._decoded.get(key)
        if hit is None or hit[0] is not raw:
            hit = (raw, _unb64(Exam, raw.removeprefix(CONTINUED)))
            self._decoded[key] = hit
        return hit[1]

    def _by_device(self) -> dict[str, list[Exam]]:
        out: dict[str, list[Exam]] = {}
        for key in list(self.exams.keys()):
            exam = self._exam(key)
            if exam is not None:
                out.setdefault(key.split("|", 1)[0], []).append(exam)
        return out

    def _workflow_for(self, exams: Iterable[Exam]) -> list[WorkflowEvent]:
        out: dict[str, WorkflowEvent] = {}
        for e in exams:
            for link in (f"study:{e.exam_key}", f"acc:{e.accession_pseudonym}" if e.accession_pseudonym else None):
                for v in (self.links.get(link) or {}).values() if link else ():
                    ev = _unb64(WorkflowEvent, v)
                    out[ev.event_id] = ev
        return list(out.values())

    def _mark(self, device: str, day: date) -> None:
        key = f"{device}|{day.isoformat()}"
        if self.dirty.get(key) is None:
            self.dirty[key] = 1

    async def recompute(self, stream) -> None:  # type: ignore[no-untyped-def]
        async for value in stream:
            if value == FLUSH:
                self._flush_requested = -1e9
                await self._flush()
                continue
            try:
                name, _ = codec.decode_record(value)
            except (DecodeError, UnknownSchemaError):
                continue
            if name == "Exam":
                exam = codec.decode(Exam, value)
                if exam.status != "complete" or exam.start_utc is None:
                    continue
                device = device_key(exam)
                key = f"{device}|{exam.exam_key}"
                old = self._exam(key)
                if old is not None and old.version >= exam.version:
                    continue  # a replay or an older version
                day = local_day(exam.start_utc, self.tz)
                if old is None and self.closed.get(f"{device}|{day.isoformat()}") is not None:
                    # a late generation of an exam whose day was forgotten: recomputing that day from this exam
                    # alone would replace its KPIs with a one-exam day
                    self.counters["late_for_closed_day"] += 1
                    continue
                held = self.exams.get(key) or ""
                spans = old is not None and (generation(old.version) != generation(exam.version)
                                             or held.startswith(CONTINUED))
                if old is not None and spans:
                    exam = continued(old, exam)
                raw = (CONTINUED if spans else "") + _b64(exam)
                self.exams[key] = raw
                self._decoded[key] = (raw, exam)
                self._mark(device, local_day(exam.start_utc, self.tz))
                if old is not None and old.start_utc is not None:
                    self._mark(device, local_day(old.start_utc, self.tz))
            elif name == "WorkflowEvent":
                ev = codec.decode(WorkflowEvent, value)
                for link in (f"study:{ev.study_pseudonym}" if ev.study_pseudonym else None,
                             f"acc:{ev.accession_pseudonym}" if ev.accession_pseudonym else None):
                    if link:
                        held = dict(self.links.get(link) or {})
                        held[ev.event_id] = _b64(ev)
                        self.links[link] = held
                for device, day in self._days_linked_to(ev):
                    self._mark(device, day)

    def _days_linked_to(self, ev: WorkflowEvent) -> set[tuple[str, date]]:
        out = set()
        for key in list(self.exams.keys()):
            exam = self._exam(key)
            if exam is not None and exam.start_utc and (
                (ev.study_pseudonym and exam.exam_key == ev.study_pseudonym)
                or (ev.accession_pseudonym and exam.accession_pseudonym == ev.accession_pseudonym)
            ):
                out.add((key.split("|", 1)[0], local_day(exam.start_utc, self.tz)))
        return out

    async def _flush(self) -> None:
        """Recompute every dirty device-day once; send the rows that changed; forget exams past retention."""
        marks = sorted(k for k in list(self.dirty.keys()) if self.dirty.get(k) is not None)
        if not marks:
            return
        by_device = self._by_device()
        newest = max((e.start_utc for exams in by_device.values() for e in exams if e.start_utc), default=None)
        for mark in marks:
            device, day = mark.split("|", 1)
            await self._publish_day(device, date.fromisoformat(day), by_device.get(device, []))
            del self.dirty[mark]
        if newest is not None:
            horizon = newest - timedelta(days=RETAIN_DAYS)
            for device, exams in by_device.items():
                for e in exams:
                    if e.start_utc is not None and e.start_utc < horizon:
                        del self.exams[f"{device}|{e.exam_key}"]
                        self._decoded.pop(f"{device}|{e.exam_key}", None)
                        closed = f"{device}|{local_day(e.start_utc, self.tz).isoformat()}"
                        if self.closed.get(closed) is None:
                            self.closed[closed] = 1
        if time.monotonic() - self._links_pruned >= LINK_PRUNE_S:
            self._links_pruned = time.monotonic()
            stale = stale_links(((k, self.links.get(k)) for k in list(self.links.keys())),
                                datetime.now(UTC) - timedelta(days=RETAIN_DAYS))
            for link in stale:
                del self.links[link]
        self.counters["flushes"] += 1

    async def _publish_day(self, device: str, day: date, exams: list[Exam]) -> None:
        if not exams:
            return
        now = datetime.now(UTC)
        kpis, timings = day_kpi_events(
            exams[0].site_id, device, day, exams, self._workflow_for(exams), self.tz, self.hours, self.cap_s,
            version=time.time_ns() // 1000, now=now,
        )
        out = self.sa.out
        for k in kpis:
            ident, content = ("kpi", device, str(day), k.grain, str(k.hour_local)), _content(k)
            if self._sent.get(ident) != content:
                await out[TOPIC_DEVICE_KPIS].send(key=f"{device}|{day}".encode(), value=codec.encode(k))
                self._sent[ident] = content
                self.counters["kpi_rows"] += 1
        for t in timings:
            ident, content = ("timing", t.exam_key), _content(t)
            if self._sent.get(ident) != content:
                await out[TOPIC_EXAM_TIMING].send(key=t.exam_key.encode(), value=codec.encode(t))
                self._sent[ident] = content
                self.counters["timing_rows"] += 1


def _content(row: DeviceKpi | ExamTiming) -> tuple:
    """A row's values without its version and send time, to tell a changed row from a resend."""
    return tuple(v for f, v in zip(dataclasses.fields(row), dataclasses.astuple(row), strict=True)
                 if f.name not in ("version", "updated_at"))


__all__ = ["ExamInterval", "KpiAgents", "day_kpi_events", "load_hours"]
