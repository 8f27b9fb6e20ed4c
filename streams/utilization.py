"""Device utilization, changeovers, durations and wait times as plain functions over exams. Pure.

Every result is a recomputation from the *set* of exams (latest version per ``exam_key``, see ``latest_exams``) and
workflow events (deduplicated by ``event_id``): nothing accumulates, inputs are sorted before use, so replaying a
topic, receiving an exam twice or in another order yields the same numbers. Replays are idempotent by construction.

Definitions (domain notes §2.5):
- **Exam interval**: start = MPPS start (PerformedProcedureStepStartDateTime) when present, else the first original
  acquisition; end = MPPS end when present, else the last acquisition. If mixing the two gives end < start, both
  come from the images. Single-image exams therefore last 0 s unless MPPS or a buffer says otherwise.
- **Device key**: station name, else device id (the same key ``streams.hours`` looks up).
- **Days and hours** are the site's local ones (IANA zone parameter). An exam is *counted* on the local day and hour
  of its start; its *busy time* is split across every day/hour it spans.
- **Busy**: the union of patient-exam intervals (± buffer), so overlapping exams are not counted twice. Discontinued
  (MPPS) exams occupied the room, so they are busy and take part in changeovers, but they are counted apart and left
  out of duration statistics. QA/phantom/test exams (``not_patient``) are left out of counts, busy time, durations
  and changeovers, and reported separately (``qa_exams``, ``qa_busy_minutes``).
- **Utilization** = busy within operating hours ÷ operating minutes × 100 (None when the device is closed).
  Operating time is partitioned: busy + changeover + idle = operating.
- **Changeover**: from the end of exam N (the latest end so far on the device, so a short exam inside a long one
  does not create a gap) to the start of exam N+1, when both are patient exams of *different* patients (an unknown
  patient counts as different). Consecutive exams of one patient are no changeover; a pair with a QA exam between
  them is no changeover; a gap above ``changeover_cap_s`` is idle, not changeover; an overlap is a 0 s changeover.
  A changeover is attributed to the local day/hour in which exam N+1 starts. MR changeovers are also split by
  whether the first receive coil changed.
- **Wait times**: see ``wait_times``.

Where it bites:
- Modality clocks drift: negative waits are kept (flagged), and overlaps become 0 s changeovers.
- A busy minute needs a time on both sides: an exam with no times at all is dropped by ``exam_interval``.
- ``buffer_s`` (positioning/turnover) turns part of each changeover into busy time; changeover *durations* are still
  measured between exam intervals without buffer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any

from schemas.events import Exam, WorkflowEvent
from streams.hours import (
    Interval,
    OperatingHours,
    as_zone,
    intersect_intervals,
    local_day_bounds,
    local_hours,
    merge_intervals,
    operating_intervals,
    subtract_intervals,
    total_seconds,
    zone_name,
)

UNMAPPED = "UNMAPPED"  # exam type when none was assigned (domain §5)
UNKNOWN_DEVICE = "UNKNOWN"
WAIT_GROUPS = ("device", "modality", "hour_local")


@dataclass(frozen=True, slots=True)
class ExamInterval:
    """One exam as utilization sees it: resolved start/end (MPPS first, else images) on one device."""

    exam_key: str
    device: str
    start_utc: datetime
    end_utc: datetime
    exam_type: str | None = None
    coil: str | None = None  # first receive coil (MR)
    patient_pseudonym: str | None = None
    status: str = "complete"
    pps_start_utc: datetime | None = None
    pps_end_utc: datetime | None = None
    discontinued: bool = False  # MPPS ended DISCONTINUED (and no PPS of the study COMPLETED)
    not_patient: bool = False  # QA / phantom / test
    modality: str | None = None
    accession_pseudonym: str | None = None

    def __post_init__(self) -> None:
        for name in ("start_utc", "end_utc"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"exam {self.exam_key}: {name} is naive; pass timezone-aware UTC datetimes")
        if self.end_utc < self.start_utc:
            raise ValueError(
                f"exam {self.exam_key}: end_utc {self.end_utc.isoformat()} is before start_utc "
                f"{self.start_utc.isoformat()}; build it with exam_interval(), which falls back to image times"
            )

    @property
    def duration_s(self) -> float:
        return (self.end_utc - self.start_utc).total_seconds()

    @property
    def counts_as_exam(self) -> bool:
        return not self.not_patient and not self.discontinued


@dataclass(frozen=True, slots=True)
class Transition:
    """What lies between two consecutive exams on one device."""

    device: str
    before_exam_key: str
    after_exam_key: str
    from_utc: datetime  # latest end so far on the device
    to_utc: datetime  # start of the next exam
    kind: str  # "changeover" | "long_gap" (above the cap: idle) | "same_patient" | "qa"
    gap_s: float  # raw, negative when the exams overlap
    changeover_s: float | None  # max(gap, 0) for a changeover, else None
    coil_change: bool | None  # None unless both exams name a receive coil


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Exam durations (end − start, no buffer) of one exam type."""

    count: int
    mean_s: float
    p50_s: float
    p90_s: float


@dataclass(frozen=True, slots=True)
class ChangeoverStats:
    """Changeover durations attributed to one day; coil split only where both exams name a coil."""

    count: int = 0
    mean_s: float | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    coil_change_count: int = 0
    coil_change_p50_s: float | None = None
    coil_change_p90_s: float | None = None
    same_coil_count: int = 0
    same_coil_p50_s: float | None = None
    same_coil_p90_s: float | None = None
    long_gaps: int = 0  # gaps above the cap, counted as idle
    same_patient: int = 0  # consecutive exams of one patient, not a changeover


@dataclass(frozen=True, slots=True)
class DeviceDayKpi:
    """One device on one local day. busy_in_hours + changeover + idle = operating minutes."""

    device: str
    day_local: date
    tz: str
    exams: int  # patient exams started this local day, discontinued ones excluded
    qa_exams: int
    discontinued_exams: int
    operating_minutes: float
    busy_minutes: float  # whole local day, in and outside hours
    busy_in_hours_minutes: float
    busy_outside_hours_minutes: float
    qa_busy_minutes: float
    changeover_minutes: float  # changeover gaps within operating hours not already busy
    idle_minutes: float
    utilization_pct: float | None
    durations: dict[str, DurationStats] = field(default_factory=dict)  # by exam type
    changeovers: ChangeoverStats = field(default_factory=ChangeoverStats)


@dataclass(frozen=True, slots=True)
class DeviceHourKpi:
    """One device in one local hour (the repeated autumn hour appears twice, ``fold`` 0 then 1)."""

    device: str
    day_local: date
    hour_local: int
    fold: int
    start_utc: datetime
    end_utc: datetime
    exams: int
    qa_exams: int
    discontinued_exams: int
    operating_minutes: float
    busy_minutes: float
    busy_in_hours_minutes: float
    busy_outside_hours_minutes: float
    changeover_minutes: float
    idle_minutes: float
    utilization_pct: float | None


@dataclass(frozen=True, slots=True)
class WaitTime:
    """Waits of one patient exam. Arrival and order waits are separate measures and never substitute each other."""

    exam_key: str
    device: str
    modality: str | None
    hour_local: int  # local hour of the exam start
    arrival_to_start_s: float | None  # from ADT^A10 arrival, else ADT^A04 registration (see arrival_kind)
    order_to_start_s: float | None  # order lead time: from the order's issue time
    scheduled_delay_s: float | None  # actual − scheduled start; negative = started early (not flagged)
    arrival_kind: str | None = None  # "arrival" (A10) | "registration" (A04) | None
    negative: tuple[str, ...] = ()  # names of waits < 0 (clock drift or mislinked events), kept as is
    day_local: date | None = None
    start_utc: datetime | None = None


@dataclass(frozen=True, slots=True)
class WaitSummary:
    """P50/P90 of each wait measure over one group (negative waits included, and counted)."""

    n: int
    arrival_n: int
    arrival_p50_s: float | None
    arrival_p90_s: float | None
    order_n: int
    order_p50_s: float | None
    order_p90_s: float | None
    delay_n: int
    delay_p50_s: float | None
    delay_p90_s: float | None
    negative_n: int


@dataclass(frozen=True, slots=True)
class CoilBatching:
    """What grouping one MR device-day's exams by receive coil would have saved (see ``coil_batching_savings``)."""

    minutes_saved: float | None  # None when either median is unknown
    changeovers_with_coil_change: int
    median_with_change_s: float | None
    median_same_coil_s: float | None
    changeovers_same_coil: int = 0
    coil_changes: int = 0  # in the actual order
    min_coil_changes: int = 0  # distinct coils − 1


# ----------------------------------------------------------------------------------------------------------------
# Exams in
# ----------------------------------------------------------------------------------------------------------------


def latest_exams(exams: Iterable[Exam]) -> list[Exam]:
    """Keep the highest version of each exam_key (a replay re-delivers old versions), ordered by key."""
    best: dict[str, Exam] = {}
    for e in exams:
        cur = best.get(e.exam_key)
        if cur is None or (e.version, e.updated_at) > (cur.version, cur.updated_at):
            best[e.exam_key] = e
    return [best[k] for k in sorted(best)]


def device_key(exam: Exam) -> str:
    return exam.station_name or exam.device_id or exam.calling_ae or UNKNOWN_DEVICE


def _dedupe(events: Iterable[WorkflowEvent]) -> list[WorkflowEvent]:
    seen: dict[str, WorkflowEvent] = {}
    for ev in events:
        seen.setdefault(ev.event_id, ev)  # a resent message has the same event_id
    return [seen[k] for k in sorted(seen)]


def _mpps_for(exam: Exam, events: Sequence[WorkflowEvent]) -> list[WorkflowEvent]:
    pps = [e for e in events if e.kind.startswith("pps_")]
    by_study = [e for e in pps if e.study_pseudonym == exam.exam_key]
    if by_study:
        return by_study
    # an accession may span several studies (split orders), so it links only when no study link exists
    return [e for e in pps if exam.accession_pseudonym and e.accession_pseudonym == exam.accession_pseudonym]


def exam_interval(
    exam: Exam, *, exam_type: str | None = None, mpps_events: Iterable[WorkflowEvent] = ()
) -> ExamInterval | None:
    """Resolve one exam's interval: MPPS times (events or headers) first, else image times; None if it has no time."""
    mpps = _mpps_for(exam, _dedupe(mpps_events))
    starts = [t for t in [exam.pps_start_utc, *(e.pps_start_utc for e in mpps)] if t is not None]
    ends = [t for t in [exam.pps_end_utc, *(e.pps_end_utc for e in mpps)] if t is not None]
    pps_start, pps_end = (min(starts) if starts else None), (max(ends) if ends else None)
    start, end = pps_start or exam.start_utc, pps_end or exam.end_utc
    if start is not None and end is not None and end < start:
        start, end = exam.start_utc, exam.end_utc  # mixed sources disagree: trust the images alone
    if start is None and end is None:
        return None
    start = start or end
    end = end or start  # one known end: a zero-length exam, counted but never busy
    assert start is not None and end is not None
    kinds = {e.kind for e in mpps}
    return ExamInterval(
        exam_key=exam.exam_key,
        device=device_key(exam),
        start_utc=start,
        end_utc=end,
        exam_type=exam_type,
        coil=exam.mr_receive_coils[0] if exam.mr_receive_coils else None,
        patient_pseudonym=exam.patient_pseudonym,
        status=exam.status,
        pps_start_utc=pps_start,
        pps_end_utc=pps_end,
        discontinued="pps_discontinued" in kinds and "pps_completed" not in kinds,
        not_patient=exam.not_patient,
        modality=exam.modality,
        accession_pseudonym=exam.accession_pseudonym,
    )


def exam_intervals(
    exams: Iterable[Exam],
    workflow_events: Iterable[WorkflowEvent] = (),
    *,
    exam_type: Callable[[Exam], str | None] | None = None,
) -> list[ExamInterval]:
    """Latest version of every exam → intervals (MPPS linked by study pseudonym, else accession), sorted."""
    events = _dedupe(workflow_events)
    by_study: dict[str, list[WorkflowEvent]] = defaultdict(list)
    by_accession: dict[str, list[WorkflowEvent]] = defaultdict(list)
    for ev in events:
        if ev.kind.startswith("pps_"):
            if ev.study_pseudonym:
                by_study[ev.study_pseudonym].append(ev)
            if ev.accession_pseudonym:
                by_accession[ev.accession_pseudonym].append(ev)
    out = []
    for exam in latest_exams(exams):
        linked = by_study.get(exam.exam_key, []) + by_accession.get(exam.accession_pseudonym or "", [])
        iv = exam_interval(exam, exam_type=exam_type(exam) if exam_type else None, mpps_events=linked)
        if iv is not None:
            out.append(iv)
    return _sorted(out)


def _sorted(exams: Iterable[ExamInterval]) -> list[ExamInterval]:
    return sorted(exams, key=lambda e: (e.device, e.start_utc, e.end_utc, e.exam_key))


# ----------------------------------------------------------------------------------------------------------------
# Statistics and intervals
# ----------------------------------------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0–100), interpolating linearly between order statistics like numpy; None if empty."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile p={p!r}: expected a number from 0 to 100, e.g. 50 for the median")
    xs = sorted(float(v) for v in values)
    if not xs:
        return None
    rank = (len(xs) - 1) * p / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def busy_intervals(
    exams: Iterable[ExamInterval], buffer_before_s: float = 0, buffer_after_s: float = 0
) -> list[Interval]:
    """Union of the given exams' intervals widened by the buffers: overlapping exams are not double counted.

    Pass the exams of one device (and usually only patient exams); no filtering happens here.
    """
    before, after = timedelta(seconds=buffer_before_s), timedelta(seconds=buffer_after_s)
    return merge_intervals((e.start_utc - before, e.end_utc + after) for e in exams)


def transitions(exams: Iterable[ExamInterval], *, changeover_cap_s: float = 3600) -> list[Transition]:
    """Classify the gap between each pair of consecutive exams on each device (see the module docstring)."""
    by_device: dict[str, list[ExamInterval]] = defaultdict(list)
    for e in _sorted(exams):
        by_device[e.device].append(e)
    out = []
    for device in sorted(by_device):
        seq = by_device[device]
        latest_end = seq[0].end_utc if seq else None
        for prev, nxt in pairwise(seq):
            assert latest_end is not None
            gap = (nxt.start_utc - latest_end).total_seconds()
            coil = None if prev.coil is None or nxt.coil is None else prev.coil != nxt.coil
            if prev.not_patient or nxt.not_patient:
                kind = "qa"  # the room was doing QA: no patient changeover to measure
            elif prev.patient_pseudonym is not None and prev.patient_pseudonym == nxt.patient_pseudonym:
                kind = "same_patient"
            elif gap > changeover_cap_s:
                kind = "long_gap"
            else:
                kind = "changeover"
            out.append(
                Transition(
                    device=device,
                    before_exam_key=prev.exam_key,
                    after_exam_key=nxt.exam_key,
                    from_utc=latest_end,
                    to_utc=nxt.start_utc,
                    kind=kind,
                    gap_s=gap,
                    changeover_s=max(gap, 0.0) if kind == "changeover" else None,
                    coil_change=coil,
                )
            )
            latest_end = max(latest_end, nxt.end_utc)
    return out


def _minutes(intervals: Iterable[Interval]) -> float:
    return total_seconds(intervals) / 60


def _pct(part: float, whole: float) -> float | None:
    return None if whole <= 0 else 100 * part / whole


def _in(t: datetime, window: Interval) -> bool:
    return window[0] <= t < window[1]


@dataclass(frozen=True, slots=True)
class _DeviceTimeline:
    """Everything of one device that the day and hour KPIs cut into windows."""

    exams: list[ExamInterval]
    busy: list[Interval]  # patient exams ± buffer
    qa_busy: list[Interval]
    changeover_gaps: list[Interval]  # changeover transitions with a positive gap
    transitions: list[Transition]


def _timeline(exams: Iterable[ExamInterval], device: str, buffer_s: float, changeover_cap_s: float) -> _DeviceTimeline:
    mine = [e for e in _sorted(exams) if e.device == device]
    trans = transitions(mine, changeover_cap_s=changeover_cap_s)
    return _DeviceTimeline(
        exams=mine,
        busy=busy_intervals([e for e in mine if not e.not_patient], buffer_s, buffer_s),
        qa_busy=busy_intervals([e for e in mine if e.not_patient], buffer_s, buffer_s),
        changeover_gaps=merge_intervals((t.from_utc, t.to_utc) for t in trans if t.kind == "changeover"),
        transitions=trans,
    )


def _window_totals(tl: _DeviceTimeline, window: Interval, operating: list[Interval]) -> dict[str, Any]:
    op = intersect_intervals(operating, [window])
    busy = intersect_intervals(tl.busy, [window])
    busy_in = intersect_intervals(busy, op)
    changeover = subtract_intervals(intersect_intervals(tl.changeover_gaps, op), tl.busy)
    started = [e for e in tl.exams if _in(e.start_utc, window)]
    op_min, busy_in_min, co_min = _minutes(op), _minutes(busy_in), _minutes(changeover)
    return {
        "exams": sum(1 for e in started if e.counts_as_exam),
        "qa_exams": sum(1 for e in started if e.not_patient),
        "discontinued_exams": sum(1 for e in started if e.discontinued and not e.not_patient),
        "operating_minutes": op_min,
        "busy_minutes": _minutes(busy),
        "busy_in_hours_minutes": busy_in_min,
        "busy_outside_hours_minutes": max(_minutes(busy) - busy_in_min, 0.0),  # float sums may dip below 0
        "changeover_minutes": co_min,
        "idle_minutes": max(op_min - busy_in_min - co_min, 0.0),
        "utilization_pct": _pct(busy_in_min, op_min),
    }


def _duration_stats(exams: Iterable[ExamInterval]) -> dict[str, DurationStats]:
    by_type: dict[str, list[float]] = defaultdict(list)
    for e in exams:
        by_type[e.exam_type or UNMAPPED].append(e.duration_s)
    out = {}
    for t in sorted(by_type):
        xs = by_type[t]
        p50, p90 = percentile(xs, 50), percentile(xs, 90)
        assert p50 is not None and p90 is not None
        out[t] = DurationStats(count=len(xs), mean_s=sum(xs) / len(xs), p50_s=p50, p90_s=p90)
    return out


def _changeover_stats(trans: Sequence[Transition]) -> ChangeoverStats:
    co = [t for t in trans if t.kind == "changeover"]
    xs = [t.changeover_s for t in co if t.changeover_s is not None]
    change = [t.changeover_s for t in co if t.coil_change is True and t.changeover_s is not None]
    same = [t.changeover_s for t in co if t.coil_change is False and t.changeover_s is not None]
    return ChangeoverStats(
        count=len(xs),
        mean_s=sum(xs) / len(xs) if xs else None,
        p50_s=percentile(xs, 50),
        p90_s=percentile(xs, 90),
        coil_change_count=len(change),
        coil_change_p50_s=percentile(change, 50),
        coil_change_p90_s=percentile(change, 90),
        same_coil_count=len(same),
        same_coil_p50_s=percentile(same, 50),
        same_coil_p90_s=percentile(same, 90),
        long_gaps=sum(1 for t in trans if t.kind == "long_gap"),
        same_patient=sum(1 for t in trans if t.kind == "same_patient"),
    )


# ----------------------------------------------------------------------------------------------------------------
# KPIs
# ----------------------------------------------------------------------------------------------------------------


def device_day_kpis(
    exams: Iterable[ExamInterval],
    device: str,
    day_local: date,
    tz: str | tzinfo,
    hours: OperatingHours,
    *,
    buffer_s: float = 0,
    changeover_cap_s: float = 3600,
) -> DeviceDayKpi:
    """KPIs of one device on one local day. Pass the neighbouring days' exams too: they reach across midnight."""
    zone = as_zone(tz)
    window = local_day_bounds(day_local, zone)
    tl = _timeline(exams, device, buffer_s, changeover_cap_s)
    totals = _window_totals(tl, window, operating_intervals(hours, device, day_local, zone))
    counted = [e for e in tl.exams if e.counts_as_exam and _in(e.start_utc, window)]
    return DeviceDayKpi(
        device=device,
        day_local=day_local,
        tz=zone_name(tz),
        qa_busy_minutes=_minutes(intersect_intervals(tl.qa_busy, [window])),
        durations=_duration_stats(counted),
        changeovers=_changeover_stats([t for t in tl.transitions if _in(t.to_utc, window)]),
        **totals,
    )


def device_hour_kpis(
    exams: Iterable[ExamInterval],
    device: str,
    day_local: date,
    tz: str | tzinfo,
    hours: OperatingHours,
    *,
    buffer_s: float = 0,
    changeover_cap_s: float = 3600,
) -> list[DeviceHourKpi]:
    """KPIs per local hour of one device-day (23, 24 or 25 rows); exams spanning hours are split by minute."""
    zone = as_zone(tz)
    tl = _timeline(exams, device, buffer_s, changeover_cap_s)
    operating = operating_intervals(hours, device, day_local, zone)
    return [
        DeviceHourKpi(
            device=device,
            day_local=day_local,
            hour_local=hour,
            fold=fold,
            start_utc=start,
            end_utc=end,
            **_window_totals(tl, (start, end), operating),
        )
        for hour, fold, start, end in local_hours(day_local, zone)
    ]


def heatmap(exams: Iterable[ExamInterval], tz: str | tzinfo) -> dict[tuple[str, int, int], int]:
    """Counted exams by (device, local weekday 0=Monday, local hour of the start)."""
    zone = as_zone(tz)
    out: dict[tuple[str, int, int], int] = defaultdict(int)
    for e in _sorted(exams):
        if e.counts_as_exam:
            local = e.start_utc.astimezone(zone)
            out[(e.device, local.weekday(), local.hour)] += 1
    return dict(sorted(out.items()))


def coil_batching_savings(
    exams_of_one_mr_device_day: Iterable[ExamInterval], *, changeover_cap_s: float = 3600
) -> CoilBatching:
    """Minutes that ordering the day's exams by receive coil would have saved.

    minutes_saved = max(0, (coil changes in the actual order − (distinct coils − 1))
                           × (median changeover with a coil change − median changeover on the same coil)) / 60.
    Coil changes are counted over consecutive patient exams that name a coil; the two medians come from the day's
    changeovers (different patients, gap ≤ cap). None when either median has no sample. It assumes the only cost of
    reordering is the coil swap; patient availability and contrast timing are ignored.
    """
    exams = _sorted(exams_of_one_mr_device_day)
    devices = {e.device for e in exams}
    if len(devices) > 1:
        raise ValueError(f"coil_batching_savings: got devices {sorted(devices)}; pass one MR device's exams at a time")
    coils = [e.coil for e in exams if not e.not_patient and e.coil is not None]
    actual = sum(1 for a, b in pairwise(coils) if a != b)
    minimum = max(len(set(coils)) - 1, 0)
    co = [t for t in transitions(exams, changeover_cap_s=changeover_cap_s) if t.kind == "changeover"]
    change = [t.changeover_s for t in co if t.coil_change is True and t.changeover_s is not None]
    same = [t.changeover_s for t in co if t.coil_change is False and t.changeover_s is not None]
    m_change, m_same = percentile(change, 50), percentile(same, 50)
    saved = None
    if m_change is not None and m_same is not None:
        saved = max(0.0, (actual - minimum) * (m_change - m_same)) / 60
    return CoilBatching(
        minutes_saved=saved,
        changeovers_with_coil_change=len(change),
        median_with_change_s=m_change,
        median_same_coil_s=m_same,
        changeovers_same_coil=len(same),
        coil_changes=actual,
        min_coil_changes=minimum,
    )


# ----------------------------------------------------------------------------------------------------------------
# Wait times
# ----------------------------------------------------------------------------------------------------------------


def _when(ev: WorkflowEvent) -> datetime:
    return ev.occurred_at or ev.received_at


def _pick_arrival(times: Sequence[datetime], start: datetime) -> datetime | None:
    if not times:
        return None
    before = [t for t in times if t <= start]
    return max(before) if before else min(times)  # the visit that led to this exam, else the (drifted) earliest


def wait_times(
    exams: Iterable[ExamInterval], workflow_events: Iterable[WorkflowEvent], tz: str | tzinfo
) -> list[WaitTime]:
    """Waits of every patient exam, linking events by accession pseudonym (and study pseudonym, which MPPS carries).

    - start: the earliest MPPS start among linked events, else the exam's start (already MPPS-first).
    - arrival_to_start_s: from the latest ADT^A10 arrival at or before the start (else the earliest one); only when
      there is no A10 at all, from an ADT^A04 registration. ``arrival_kind`` says which. Event time is
      ``occurred_at``, else ``received_at``.
    - order_to_start_s: from the earliest order issue time (``order_time_utc``, else an "ordered" event's time).
      Always its own measure (order lead time): it never fills in for a missing arrival.
    - scheduled_delay_s: start − the scheduled start of the most recent scheduling event.
    Negative arrival/order waits are kept and named in ``negative``; a negative delay just means early.
    """
    zone = as_zone(tz)
    by_accession: dict[str, list[WorkflowEvent]] = defaultdict(list)
    by_study: dict[str, list[WorkflowEvent]] = defaultdict(list)
    for ev in _dedupe(workflow_events):
        if ev.accession_pseudonym:
            by_accession[ev.accession_pseudonym].append(ev)
        if ev.study_pseudonym:
            by_study[ev.study_pseudonym].append(ev)
    out = []
    for ex in sorted(exams, key=lambda e: (e.start_utc, e.device, e.exam_key)):
        if ex.not_patient:
            continue
        linked = {e.event_id: e for e in by_accession.get(ex.accession_pseudonym or "", [])}
        linked.update({e.event_id: e for e in by_study.get(ex.exam_key, [])})
        events = [linked[k] for k in sorted(linked)]
        pps = [e.pps_start_utc for e in events if e.kind.startswith("pps_") and e.pps_start_utc is not None]
        start = min(pps) if pps else ex.start_utc
        arrival_kind, arrival = None, None
        for kind in ("arrival", "registration"):
            arrival = _pick_arrival([_when(e) for e in events if e.kind == kind], start)
            if arrival is not None:
                arrival_kind = kind
                break
        orders = [e.order_time_utc or _when(e) for e in events if e.order_time_utc or e.kind == "ordered"]
        scheduled = [(_when(e), e.event_id, e.scheduled_start_utc) for e in events if e.scheduled_start_utc]
        arrival_s = None if arrival is None else (start - arrival).total_seconds()
        order_s = (start - min(orders)).total_seconds() if orders else None
        delay_s = (start - max(scheduled)[2]).total_seconds() if scheduled else None
        measured = (("arrival_to_start_s", arrival_s), ("order_to_start_s", order_s))
        negative = tuple(name for name, v in measured if v is not None and v < 0)
        local = start.astimezone(zone)
        out.append(
            WaitTime(
                exam_key=ex.exam_key,
                device=ex.device,
                modality=ex.modality,
                hour_local=local.hour,
                arrival_to_start_s=arrival_s,
                order_to_start_s=order_s,
                scheduled_delay_s=delay_s,
                arrival_kind=arrival_kind,
                negative=negative,
                day_local=local.date(),
                start_utc=start,
            )
        )
    return out


def summarize_waits(waits: Iterable[WaitTime], by: str, *, include_negative: bool = True) -> dict[Any, WaitSummary]:
    """P50/P90 of each wait measure per ``by`` ("device", "modality" or "hour_local")."""
    if by not in WAIT_GROUPS:
        raise ValueError(f"summarize_waits by={by!r}: expected one of {', '.join(WAIT_GROUPS)}")
    groups: dict[Any, list[WaitTime]] = defaultdict(list)
    for w in waits:
        groups[getattr(w, by)].append(w)
    out = {}
    for key in sorted(groups, key=lambda k: (k is None, k if k is not None else 0)):  # keys of one `by` share a type
        ws = groups[key]

        def values(attr: str, ws: list[WaitTime] = ws) -> list[float]:
            xs = [getattr(w, attr) for w in ws if getattr(w, attr) is not None]
            return xs if include_negative or attr == "scheduled_delay_s" else [x for x in xs if x >= 0]

        arrival, order, delay = values("arrival_to_start_s"), values("order_to_start_s"), values("scheduled_delay_s")
        out[key] = WaitSummary(
            n=len(ws),
            arrival_n=len(arrival),
            arrival_p50_s=percentile(arrival, 50),
            arrival_p90_s=percentile(arrival, 90),
            order_n=len(order),
            order_p50_s=percentile(order, 50),
            order_p90_s=percentile(order, 90),
            delay_n=len(delay),
            delay_p50_s=percentile(delay, 50),
            delay_p90_s=percentile(delay, 90),
            negative_n=sum(1 for w in ws if w.negative),
        )
    return out
