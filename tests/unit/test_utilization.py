"""Operating hours and utilization KPIs against a hand-computed scenario, plus seeded property checks. No servers.

Scenario (local wall-clock times; Asia/Shanghai is UTC+8 all year, so UTC = local − 8 h):
  CT1 (default hours Mon 08:00-12:00 + 13:00-18:00 = 540 min), Monday 2024-03-04
    c1 07:50-08:10 P1 CT HEAD   starts before opening: 10 min in hours, 10 outside
    c2 08:20-08:40 P2 CT HEAD   changeover c1→c2 10 min
    c3 08:30-08:50 P3 CT CHEST  overlaps c2: union c2∪c3 = 08:20-08:50 = 30 min; changeover −10 min → 0
    c4 08:55-09:05 P3 CT ABDOMEN same patient as c3: no changeover (5 min gap is idle)
    c5 09:15-09:35 P4 CT CHEST  MPPS DISCONTINUED (images 09:16-09:34, MPPS 09:15-09:35); changeover 10 min
    c6 11:00-11:30 P5 CT HEAD   gap 85 min > 60 min cap: idle, not changeover (an older version says 11:00-11:10)
    q1 11:40-11:50 QA phantom   counted apart; pairs touching it are no changeover
    c7 12:30-13:20 P6 CT CHEST  lunch break: 30 min outside hours, 20 in
    c8 13:35-13:45 P7 CT HEAD   header MPPS 13:35-13:45 (images 13:36-13:44); changeover 15 min
  MR1 (Mon 07:00-12:00 + 22:00-02:00 crossing midnight, Tue 07:00-12:00), Mon 2024-03-04 → Tue 2024-03-05
    m1 07:00-07:30 HEAD, m2 07:40-08:10 KNEE, m3 08:25-08:55 HEAD, m4 09:00-09:30 HEAD, m5 09:40-10:10 KNEE,
    m6 10:15-10:45 KNEE, m7 Mon 23:40 - Tue 00:25 HEAD (crosses local midnight), m8 Tue 00:35-01:00 SPINE
  LON-CT (Europe/London, open 00:00-24:00), Sunday 2024-03-31, clocks jump 01:00 GMT → 02:00 BST (23-hour day)
    l1 00:30 GMT - 02:30 BST (00:30-01:30 UTC), l2 12:00-12:30 BST (11:00-11:30 UTC)
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.events import Exam, WorkflowEvent
from streams.hours import (
    WEEKDAYS,
    HoursConfigError,
    local_day_bounds,
    local_hours,
    local_to_utc,
    merge_intervals,
    operating_intervals,
    parse_hours,
    total_seconds,
)
from streams.utilization import (
    ExamInterval,
    busy_intervals,
    coil_batching_savings,
    device_day_kpis,
    device_hour_kpis,
    exam_interval,
    exam_intervals,
    heatmap,
    latest_exams,
    percentile,
    summarize_waits,
    transitions,
    wait_times,
)

SH = "Asia/Shanghai"
LON = "Europe/London"
MON, TUE = date(2024, 3, 4), date(2024, 3, 5)
SPRING = date(2024, 3, 31)  # Europe/London loses 01:00-02:00
AUTUMN = date(2024, 10, 27)  # Europe/London repeats 01:00-02:00
UPDATED = datetime(2024, 3, 6, tzinfo=UTC)

HOURS = parse_hours(
    {
        "default": {d: ["08:00-12:00", "13:00-18:00"] for d in WEEKDAYS[:5]} | {"sat": ["08:00-12:00"], "sun": []},
        "devices": {
            "MR1": {"mon": ["07:00-12:00", "22:00-02:00"], "tue": ["07:00-12:00"]},
            "LON-CT": {d: ["00:00-24:00"] for d in WEEKDAYS},
        },
    }
)


def at(day: date, hhmm: str, tz: str = SH) -> datetime:
    """Local wall time → aware UTC (the test's times are all unambiguous)."""
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def exam(key: str, device: str, start: datetime, end: datetime, *, patient: str | None, modality: str = "CT",
         coil: str | None = None, not_patient: bool = False, pps: tuple[datetime | None, ...] = (None, None),
         version: int = 2, acc: str | None = None) -> Exam:
    return Exam(
        exam_key=key, site_id="site", version=version, status="complete", updated_at=UPDATED, station_name=device,
        device_id=f"id-{device}", modality=modality, patient_pseudonym=patient, accession_pseudonym=acc or f"A-{key}",
        not_patient=not_patient, start_utc=start, end_utc=end, duration_s=(end - start).total_seconds(),
        pps_start_utc=pps[0], pps_end_utc=pps[1], mr_receive_coils=(coil,) if coil else (),
    )


def wf(eid: str, kind: str, *, acc: str | None = None, study: str | None = None, at_: datetime | None = None,
       source: str = "HL7", **kw) -> WorkflowEvent:
    return WorkflowEvent(event_id=eid, site_id="site", edge_id="edge", source=source, kind=kind,
                         received_at=at_ or UPDATED, occurred_at=at_, accession_pseudonym=acc,
                         study_pseudonym=study, **kw)


TYPES = {"c1": "CT HEAD", "c2": "CT HEAD", "c3": "CT CHEST", "c4": "CT ABDOMEN", "c5": "CT CHEST", "c6": "CT HEAD",
         "c7": "CT CHEST", "c8": "CT HEAD", "q1": "QA", "m1": "MR BRAIN", "m2": "MR KNEE", "m3": "MR BRAIN",
         "m4": "MR BRAIN", "m5": "MR KNEE", "m6": "MR KNEE", "m7": "MR BRAIN", "m8": "MR SPINE",
         "l1": "CT HEAD", "l2": "CT HEAD"}


def ct(key: str, a: str, b: str, patient: str | None, **kw) -> Exam:
    return exam(key, "CT1", at(MON, a), at(MON, b), patient=patient, **kw)


def mr(key: str, day: date, a: str, end_day: date, b: str, patient: str, coil: str) -> Exam:
    return exam(key, "MR1", at(day, a), at(end_day, b), patient=patient, modality="MR", coil=coil)


EXAMS = [
    ct("c1", "07:50", "08:10", "P1"),
    ct("c2", "08:20", "08:40", "P2"),
    ct("c3", "08:30", "08:50", "P3"),
    ct("c4", "08:55", "09:05", "P3"),
    ct("c5", "09:16", "09:34", "P4"),  # MPPS events below stretch it to 09:15-09:35 and discontinue it
    ct("c6", "11:00", "11:10", "P5", version=1),  # superseded: the replayed old version must lose
    ct("c6", "11:00", "11:30", "P5"),
    ct("q1", "11:40", "11:50", "QA", not_patient=True),
    ct("c7", "12:30", "13:20", "P6"),
    ct("c8", "13:36", "13:44", "P7", pps=(at(MON, "13:35"), at(MON, "13:45"))),
    mr("m1", MON, "07:00", MON, "07:30", "P10", "HEAD"),
    mr("m2", MON, "07:40", MON, "08:10", "P11", "KNEE"),
    mr("m3", MON, "08:25", MON, "08:55", "P12", "HEAD"),
    mr("m4", MON, "09:00", MON, "09:30", "P13", "HEAD"),
    mr("m5", MON, "09:40", MON, "10:10", "P14", "KNEE"),
    mr("m6", MON, "10:15", MON, "10:45", "P15", "KNEE"),
    mr("m7", MON, "23:40", TUE, "00:25", "P16", "HEAD"),
    mr("m8", TUE, "00:35", TUE, "01:00", "P17", "SPINE"),
    exam("l1", "LON-CT", datetime(2024, 3, 31, 0, 30, tzinfo=UTC), datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
         patient="P20"),
    exam("l2", "LON-CT", datetime(2024, 3, 31, 11, 0, tzinfo=UTC), datetime(2024, 3, 31, 11, 30, tzinfo=UTC),
         patient="P21"),
]

SUN = date(2024, 3, 3)
EVENTS = [
    # c1: A10 arrival wins over the earlier A04 registration; the reschedule (S13) is the latest schedule
    wf("e1", "arrival", acc="A-c1", at_=at(MON, "07:20"), message_type="ADT^A10"),
    wf("e1", "arrival", acc="A-c1", at_=at(MON, "07:20"), message_type="ADT^A10"),  # resent: same event_id
    wf("e2", "registration", acc="A-c1", at_=at(MON, "07:00"), message_type="ADT^A04"),
    wf("e3", "ordered", acc="A-c1", at_=at(SUN, "15:05"), message_type="ORM^O01", order_time_utc=at(SUN, "15:00")),
    wf("e4", "scheduled", acc="A-c1", at_=at(SUN, "16:00"), message_type="SIU^S12",
       scheduled_start_utc=at(MON, "07:30")),
    wf("e5", "scheduled", acc="A-c1", at_=at(MON, "06:00"), message_type="SIU^S13",
       scheduled_start_utc=at(MON, "07:45")),
    # c2: only an A04 registration; scheduled later than it started (early start: negative delay, not flagged)
    wf("e6", "registration", acc="A-c2", at_=at(MON, "08:00"), message_type="ADT^A04"),
    wf("e7", "scheduled", acc="A-c2", at_=at(SUN, "10:00"), scheduled_start_utc=at(MON, "08:30")),
    # c3: no arrival at all: the order lead time exists, the arrival wait stays None
    wf("e8", "ordered", acc="A-c3", at_=at(MON, "08:00"), order_time_utc=at(MON, "08:00")),
    # c4: arrival after the start (clock drift): kept, flagged
    wf("e9", "arrival", acc="A-c4", at_=at(MON, "09:00")),
    # c5: HL7 arrival by accession; MPPS linked by study pseudonym only, ending DISCONTINUED
    wf("e10", "arrival", acc="A-c5", at_=at(MON, "09:05")),
    wf("e11", "pps_in_progress", study="c5", source="MPPS", at_=at(MON, "09:15"), message_type="N-CREATE",
       pps_start_utc=at(MON, "09:15")),
    wf("e12", "pps_discontinued", study="c5", source="MPPS", at_=at(MON, "09:35"), message_type="N-SET",
       pps_start_utc=at(MON, "09:15"), pps_end_utc=at(MON, "09:35")),
    # c6: two arrivals: the latest one before the start is this visit
    wf("e13", "arrival", acc="A-c6", at_=at(MON, "09:00")),
    wf("e14", "arrival", acc="A-c6", at_=at(MON, "10:00")),
    wf("e15", "arrival", acc="A-other", at_=at(MON, "10:00")),  # links to no exam
]


@pytest.fixture(scope="module")
def intervals() -> list[ExamInterval]:
    return exam_intervals(EXAMS, EVENTS, exam_type=lambda e: TYPES[e.exam_key])


def by_key(intervals: Iterable[ExamInterval]) -> dict[str, ExamInterval]:
    return {e.exam_key: e for e in intervals}


# ----------------------------------------------------------------------------------------------------------------
# hours
# ----------------------------------------------------------------------------------------------------------------


def test_device_overrides_default_per_day_and_crosses_midnight() -> None:
    # MR1 Monday: 07:00-12:00 (300) + 22:00-24:00 (120) = 420 min; Sunday has no range reaching into Monday
    assert operating_intervals(HOURS, "MR1", MON, SH) == [(at(MON, "07:00"), at(MON, "12:00")),
                                                         (at(MON, "22:00"), at(TUE, "00:00"))]
    # Tuesday: Monday's 22:00-02:00 reaches in (00:00-02:00 = 120) + 07:00-12:00 (300) = 420 min
    assert operating_intervals(HOURS, "MR1", TUE, SH) == [(at(TUE, "00:00"), at(TUE, "02:00")),
                                                         (at(TUE, "07:00"), at(TUE, "12:00"))]
    # Wednesday is not in MR1's table: it inherits the default 08:00-12:00 + 13:00-18:00 = 540 min
    wed = MON + timedelta(days=2)
    assert total_seconds(operating_intervals(HOURS, "MR1", wed, SH)) / 60 == 540
    assert operating_intervals(HOURS, "unknown-device", SUN, SH) == []  # default Sunday: closed


def test_dst_days_are_23_and_25_hours_long() -> None:
    assert total_seconds(operating_intervals(HOURS, "LON-CT", SPRING, LON)) / 60 == 23 * 60
    assert total_seconds(operating_intervals(HOURS, "LON-CT", AUTUMN, LON)) / 60 == 25 * 60
    spring = local_hours(SPRING, LON)
    assert [h for h, _, _, _ in spring] == [0, *range(2, 24)]  # 01:00 never happened
    autumn = local_hours(AUTUMN, LON)
    assert [(h, f) for h, f, _, _ in autumn][:4] == [(0, 0), (1, 0), (1, 1), (2, 0)]  # 01:00 happened twice
    assert all(e - s == timedelta(hours=1) for _, _, s, e in spring + autumn)


def test_skipped_wall_time_maps_to_the_jump_and_repeated_to_the_first() -> None:
    # 01:30 does not exist on the spring day: the wall clock reaches it at the jump, 01:00 UTC (= 02:00 BST)
    assert local_to_utc(SPRING, 90, LON) == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    # 01:30 happens twice in autumn: first as BST, 00:30 UTC
    assert local_to_utc(AUTUMN, 90, LON) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    hours = parse_hours({"default": {"sun": ["01:30-03:00"]}})
    # spring: 02:00 BST (01:00 UTC) to 03:00 BST (02:00 UTC) = 60 min, not 90
    assert total_seconds(operating_intervals(hours, "x", SPRING, LON)) / 60 == 60


def test_hours_round_trip_through_their_config_form() -> None:
    assert parse_hours(HOURS.to_dict()) == HOURS
    assert HOURS.to_dict()["devices"]["MR1"]["mon"] == ["07:00-12:00", "22:00-02:00"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"default": {"mon": ["7:00-19:00"]}}, ['hours.default.mon[0]', '"HH:MM-HH:MM"', '"07:00-19:00"']),
        ({"devices": {"CT1": {"tue": ["08:00-25:00"]}}}, ['hours.devices."CT1".tue[0]', "24:00"]),
        ({"devices": {"CT1": {"wed": ["08:00-08:00"]}}}, ['hours.devices."CT1".wed[0]', '"00:00-24:00"', "[]"]),
        ({"devices": {"MR1": {"fri": ["08:00-12:00", "11:00-14:00"]}}},
         ['hours.devices."MR1".fri', '"08:00-12:00"', '"11:00-14:00"', 'merge them into "08:00-14:00"']),
        ({"default": {"monday": []}}, ["hours.default", "'monday'", "mon, tue"]),
        ({"default": {"sat": "08:00-12:00"}}, ["hours.default.sat", '["07:00-19:00"]']),
        ({"default": {}, "device": {}}, ["unknown key 'device'", '"devices"']),
        ({"devices": {"CT1": ["08:00-12:00"]}}, ['hours.devices."CT1"', "table of weekdays"]),
    ],
)
def test_bad_hours_name_the_place_and_the_fix(config: dict, expected: list[str]) -> None:
    with pytest.raises(HoursConfigError) as err:
        parse_hours(config)
    for part in expected:
        assert part in str(err.value), str(err.value)


def test_bad_zone_names_the_fix() -> None:
    with pytest.raises(HoursConfigError, match=r"IANA name, e\.g\. Asia/Shanghai"):
        operating_intervals(HOURS, "CT1", MON, "Asia/Shangai")


# ----------------------------------------------------------------------------------------------------------------
# exam intervals
# ----------------------------------------------------------------------------------------------------------------


def test_intervals_take_mpps_first_latest_versions_and_discontinued(intervals: list[ExamInterval]) -> None:
    ex = by_key(intervals)
    assert len(intervals) == 19  # 20 exam rows, c6 twice
    assert (ex["c6"].start_utc, ex["c6"].end_utc) == (at(MON, "11:00"), at(MON, "11:30"))  # version 2 won
    # c5: MPPS events (09:15-09:35) beat the images (09:16-09:34); DISCONTINUED without COMPLETED
    assert (ex["c5"].start_utc, ex["c5"].end_utc, ex["c5"].discontinued) == (at(MON, "09:15"), at(MON, "09:35"), True)
    # c8: MPPS copied into the image headers (13:35-13:45) beats the images (13:36-13:44)
    assert (ex["c8"].start_utc, ex["c8"].end_utc) == (at(MON, "13:35"), at(MON, "13:45"))
    assert (ex["m2"].coil, ex["m2"].exam_type, ex["c1"].coil) == ("KNEE", "MR KNEE", None)
    assert ex["q1"].not_patient and not ex["c1"].discontinued


def test_interval_falls_back_to_images_when_sources_disagree() -> None:
    start, end = at(MON, "10:00"), at(MON, "10:20")
    # in-progress MPPS: start from MPPS (09:58), end from the images
    iv = exam_interval(exam("x", "CT1", start, end, patient="P", pps=(at(MON, "09:58"), None)))
    assert iv is not None and (iv.start_utc, iv.end_utc) == (at(MON, "09:58"), end)
    # an MPPS end before the image start cannot be mixed in: both ends come from the images
    iv = exam_interval(exam("x", "CT1", start, end, patient="P", pps=(None, at(MON, "09:00"))))
    assert iv is not None and (iv.start_utc, iv.end_utc) == (start, end)
    # completed after a discontinued PPS: the exam was done
    done = [wf("p1", "pps_discontinued", study="x", source="MPPS"), wf("p2", "pps_completed", study="x", source="MPPS")]
    iv = exam_interval(exam("x", "CT1", start, end, patient="P"), mpps_events=done)
    assert iv is not None and not iv.discontinued
    assert exam_interval(replace(exam("x", "CT1", start, end, patient="P"), start_utc=None, end_utc=None)) is None


def test_interval_rejects_naive_and_reversed_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        ExamInterval("x", "CT1", datetime(2024, 3, 4, 8), datetime(2024, 3, 4, 9, tzinfo=UTC))
    with pytest.raises(ValueError, match="exam_interval"):
        ExamInterval("x", "CT1", at(MON, "09:00"), at(MON, "08:00"))


def test_latest_exams_ignores_replay_order() -> None:
    assert latest_exams(reversed(EXAMS)) == latest_exams(EXAMS)
    assert {e.exam_key: e.version for e in latest_exams(EXAMS)}["c6"] == 2


# ----------------------------------------------------------------------------------------------------------------
# busy time and changeovers
# ----------------------------------------------------------------------------------------------------------------


def test_overlapping_exams_are_not_double_counted(intervals: list[ExamInterval]) -> None:
    ex = by_key(intervals)
    # c2 08:20-08:40 and c3 08:30-08:50: 20 + 20 = 40 min of exams, 30 min of busy time
    assert busy_intervals([ex["c2"], ex["c3"]]) == [(at(MON, "08:20"), at(MON, "08:50"))]
    # with 5 min either side: c3 widens to 08:25-08:55 and c4 to 08:50-09:10: one block 08:15-09:10
    assert busy_intervals([ex["c2"], ex["c3"], ex["c4"]], 300, 300) == [(at(MON, "08:15"), at(MON, "09:10"))]


def test_transitions_classify_every_gap(intervals: list[ExamInterval]) -> None:
    ct1 = [(t.before_exam_key, t.after_exam_key, t.kind, t.changeover_s)
           for t in transitions(intervals) if t.device == "CT1"]
    assert ct1 == [
        ("c1", "c2", "changeover", 600.0),  # 08:20 − 08:10
        ("c2", "c3", "changeover", 0.0),  # 08:30 − 08:40 = −600: overlap → 0
        ("c3", "c4", "same_patient", None),  # P3 twice
        ("c4", "c5", "changeover", 600.0),  # 09:15 − 09:05
        ("c5", "c6", "long_gap", None),  # 11:00 − 09:35 = 85 min > 60 min cap
        ("c6", "q1", "qa", None),
        ("q1", "c7", "qa", None),
        ("c7", "c8", "changeover", 900.0),  # 13:35 − 13:20
    ]


def test_a_short_exam_inside_a_long_one_does_not_open_a_gap() -> None:
    a = ExamInterval("a", "D", at(MON, "09:00"), at(MON, "10:00"), patient_pseudonym="P1")
    b = ExamInterval("b", "D", at(MON, "09:10"), at(MON, "09:20"), patient_pseudonym="P2")
    c = ExamInterval("c", "D", at(MON, "10:05"), at(MON, "10:15"), patient_pseudonym="P3")
    # b→c is measured from a's end (10:00), the latest end so far: 5 min, not 45
    assert [t.changeover_s for t in transitions([c, b, a])] == [0.0, 300.0]


# ----------------------------------------------------------------------------------------------------------------
# device-day KPIs
# ----------------------------------------------------------------------------------------------------------------


def kpi_numbers(k) -> dict:
    return {f: getattr(k, f) for f in ("exams", "qa_exams", "discontinued_exams", "operating_minutes", "busy_minutes",
                                       "busy_in_hours_minutes", "busy_outside_hours_minutes", "changeover_minutes",
                                       "idle_minutes")}


def test_ct1_monday(intervals: list[ExamInterval]) -> None:
    k = device_day_kpis(intervals, "CT1", MON, SH, HOURS)
    assert kpi_numbers(k) == {
        "exams": 7,  # c1 c2 c3 c4 c6 c7 c8 (c5 discontinued, q1 QA)
        "qa_exams": 1,
        "discontinued_exams": 1,
        "operating_minutes": 540.0,  # 08-12 (240) + 13-18 (300)
        "busy_minutes": 170.0,  # c1 20 + c2∪c3 30 + c4 10 + c5 20 + c6 30 + c7 50 + c8 10
        "busy_in_hours_minutes": 130.0,  # c1 10 + 30 + 10 + 20 + 30 + c7 20 + 10
        "busy_outside_hours_minutes": 40.0,  # c1 07:50-08:00 10 + c7 12:30-13:00 30
        "changeover_minutes": 35.0,  # 08:10-08:20 10 + 09:05-09:15 10 + 13:20-13:35 15
        "idle_minutes": 375.0,  # 540 − 130 − 35
    }
    assert k.qa_busy_minutes == 10.0  # q1 11:40-11:50
    assert k.utilization_pct == pytest.approx(100 * 130 / 540)  # 24.07 %
    # changeovers [600, 0, 600, 900] → sorted [0, 600, 600, 900]; mean 2100/4 = 525
    # P50: rank 3·0.5 = 1.5 → 600 + 0.5·(600 − 600) = 600; P90: rank 2.7 → 600 + 0.7·(900 − 600) = 810
    co = k.changeovers
    assert (co.count, co.mean_s, co.p50_s, co.p90_s) == (4, 525.0, 600.0, pytest.approx(810.0))
    assert (co.long_gaps, co.same_patient, co.coil_change_count, co.same_coil_count) == (1, 1, 0, 0)
    assert co.coil_change_p50_s is None  # CT: no coils, no split
    # CT HEAD c1 1200, c2 1200, c6 1800, c8 600 → sorted [600, 1200, 1200, 1800], mean 4800/4 = 1200
    #   P50 rank 1.5 → 1200; P90 rank 2.7 → 1200 + 0.7·600 = 1620
    # CT CHEST c3 1200, c7 3000 (c5 discontinued: left out) → mean 2100, P50 2100, P90 1200 + 0.9·1800 = 2820
    d = {t: (s.count, s.mean_s, s.p50_s, s.p90_s) for t, s in k.durations.items()}
    assert d == {"CT ABDOMEN": (1, 600.0, 600.0, 600.0), "CT CHEST": (2, 2100.0, 2100.0, pytest.approx(2820.0)),
                 "CT HEAD": (4, 1200.0, 1200.0, pytest.approx(1620.0))}


def test_ct1_monday_per_hour(intervals: list[ExamInterval]) -> None:
    hours = {h.hour_local: h for h in device_hour_kpis(intervals, "CT1", MON, SH, HOURS)}
    assert len(hours) == 24
    assert kpi_numbers(hours[7]) | {"util": hours[7].utilization_pct} == {
        "exams": 1, "qa_exams": 0, "discontinued_exams": 0, "operating_minutes": 0.0,
        "busy_minutes": 10.0, "busy_in_hours_minutes": 0.0, "busy_outside_hours_minutes": 10.0,  # c1 07:50-08:00
        "changeover_minutes": 0.0, "idle_minutes": 0.0, "util": None}  # closed: no utilization
    assert kpi_numbers(hours[8]) == {
        "exams": 3, "qa_exams": 0, "discontinued_exams": 0, "operating_minutes": 60.0,  # c2 c3 c4 start here
        "busy_minutes": 45.0,  # c1 08:00-08:10 10 + c2∪c3 30 + c4 08:55-09:00 5
        "busy_in_hours_minutes": 45.0, "busy_outside_hours_minutes": 0.0,
        "changeover_minutes": 10.0,  # 08:10-08:20
        "idle_minutes": 5.0}  # 08:50-08:55, same patient: not a changeover
    assert hours[8].utilization_pct == 75.0  # 45 / 60
    # hour 9: c4 09:00-09:05 5 + c5 20 = 25 busy; changeover 09:05-09:15 10; idle 60 − 25 − 10 = 25
    assert (hours[9].busy_minutes, hours[9].changeover_minutes, hours[9].idle_minutes) == (25.0, 10.0, 25.0)
    assert (hours[9].exams, hours[9].discontinued_exams) == (0, 1)
    # hour 11: c6 30 busy, q1 is QA (its 10 min are idle for patients), nothing else
    assert (hours[11].busy_minutes, hours[11].idle_minutes, hours[11].qa_exams) == (30.0, 30.0, 1)
    # hour 12: lunch, closed: c7 12:30-13:00 is 30 min outside hours
    assert (hours[12].operating_minutes, hours[12].busy_outside_hours_minutes) == (0.0, 30.0)
    # hour 13: c7 13:00-13:20 20 + c8 13:35-13:45 10 = 30; changeover 13:20-13:35 15; idle 15
    assert (hours[13].busy_minutes, hours[13].changeover_minutes, hours[13].idle_minutes) == (30.0, 15.0, 15.0)
    day = device_day_kpis(intervals, "CT1", MON, SH, HOURS)
    for f in ("exams", "operating_minutes", "busy_minutes", "busy_in_hours_minutes", "changeover_minutes",
              "idle_minutes"):
        assert sum(getattr(h, f) for h in hours.values()) == getattr(day, f), f


def test_mr1_exam_crossing_local_midnight_splits_across_days(intervals: list[ExamInterval]) -> None:
    mon = device_day_kpis(intervals, "MR1", MON, SH, HOURS)
    assert kpi_numbers(mon) == {
        "exams": 7, "qa_exams": 0, "discontinued_exams": 0,  # m1..m7: m7 counts on its start day
        "operating_minutes": 420.0,  # 07-12 (300) + 22-24 (120)
        "busy_minutes": 200.0,  # m1..m6 6×30 = 180 + m7 23:40-24:00 20
        "busy_in_hours_minutes": 200.0, "busy_outside_hours_minutes": 0.0,
        "changeover_minutes": 45.0,  # 10 + 15 + 5 + 10 + 5
        "idle_minutes": 175.0}  # 420 − 200 − 45
    assert mon.utilization_pct == pytest.approx(100 * 200 / 420)  # 47.62 %
    # changeovers [600, 900, 300, 600, 300] → sorted [300, 300, 600, 600, 900]: mean 2700/5 = 540
    #   P50 rank 2 → 600; P90 rank 3.6 → 600 + 0.6·300 = 780
    # coil change (HEAD→KNEE, KNEE→HEAD, HEAD→KNEE) [600, 900, 600] → P50 600, P90 rank 1.8 → 600 + 0.8·300 = 840
    # same coil (HEAD→HEAD, KNEE→KNEE) [300, 300] → 300, 300
    co = mon.changeovers
    assert (co.count, co.mean_s, co.p50_s, co.p90_s) == (5, 540.0, 600.0, pytest.approx(780.0))
    assert (co.coil_change_count, co.coil_change_p50_s, co.coil_change_p90_s) == (3, 600.0, pytest.approx(840.0))
    assert (co.same_coil_count, co.same_coil_p50_s, co.same_coil_p90_s) == (2, 300.0, 300.0)
    assert co.long_gaps == 1  # m6 10:45 → m7 23:40
    # MR BRAIN m1 m3 m4 1800 each + m7 2700 (45 min, whole, though split across days) → mean 8100/4 = 2025
    #   P50 rank 1.5 → 1800; P90 rank 2.7 → 1800 + 0.7·900 = 2430
    brain = mon.durations["MR BRAIN"]
    assert (brain.count, brain.mean_s, brain.p50_s, brain.p90_s) == (4, 2025.0, 1800.0, pytest.approx(2430.0))

    tue = device_day_kpis(intervals, "MR1", TUE, SH, HOURS)
    assert kpi_numbers(tue) == {
        "exams": 1, "qa_exams": 0, "discontinued_exams": 0,  # m8 only
        "operating_minutes": 420.0,  # Monday's range 00-02 (120) + 07-12 (300)
        "busy_minutes": 50.0,  # m7 00:00-00:25 25 + m8 00:35-01:00 25
        "busy_in_hours_minutes": 50.0, "busy_outside_hours_minutes": 0.0,
        "changeover_minutes": 10.0,  # 00:25-00:35
        "idle_minutes": 360.0}  # 420 − 50 − 10
    assert tue.utilization_pct == pytest.approx(100 * 50 / 420)
    assert (tue.changeovers.count, tue.changeovers.coil_change_count) == (1, 1)  # HEAD → SPINE, 600 s
    hour23 = device_hour_kpis(intervals, "MR1", MON, SH, HOURS)[23]
    hour0 = device_hour_kpis(intervals, "MR1", TUE, SH, HOURS)[0]
    assert (hour23.busy_minutes, hour23.idle_minutes) == (20.0, 40.0)  # 23:40-24:00
    assert (hour0.busy_minutes, hour0.changeover_minutes, hour0.idle_minutes) == (50.0, 10.0, 0.0)


def test_london_spring_day_has_23_hours(intervals: list[ExamInterval]) -> None:
    k = device_day_kpis(intervals, "LON-CT", SPRING, LON, HOURS)
    # 1380 open minutes; l1 60 + l2 30 = 90 busy; 9.5 h between them > cap: no changeover; idle 1380 − 90
    assert (k.operating_minutes, k.busy_minutes, k.changeover_minutes, k.idle_minutes) == (1380.0, 90.0, 0.0, 1290.0)
    assert k.utilization_pct == pytest.approx(100 * 90 / 1380)  # 6.52 %
    assert (k.exams, k.changeovers.long_gaps) == (2, 1)
    hours = device_hour_kpis(intervals, "LON-CT", SPRING, LON, HOURS)
    # l1 00:30 GMT-02:30 BST: 30 min in hour 0, 30 min in hour 2 (the jump swallows hour 1); l2 in hour 12 BST
    assert [(h.hour_local, h.busy_minutes) for h in hours if h.busy_minutes] == [(0, 30.0), (2, 30.0), (12, 30.0)]
    assert len(hours) == 23 and sum(h.operating_minutes for h in hours) == 1380


def test_buffer_turns_changeover_into_busy(intervals: list[ExamInterval]) -> None:
    k = device_day_kpis(intervals, "MR1", MON, SH, HOURS, buffer_s=300)
    # m1..m6 ± 5 min: 06:55-08:15, 08:20-09:35, 09:35-10:50 → 06:55-08:15 and 08:20-10:50
    #   in hours (07:00-12:00): 07:00-08:15 75 + 08:20-10:50 150 = 225; outside 06:55-07:00 5
    # m7 ± 5 min: 23:35-00:30 → Monday part 23:35-24:00 25, all in hours
    assert (k.busy_in_hours_minutes, k.busy_outside_hours_minutes) == (250.0, 5.0)
    # changeover gaps not covered by buffers: only 08:15-08:20 (of m2→m3's 08:10-08:25) = 5
    assert (k.changeover_minutes, k.idle_minutes) == (5.0, 420 - 250 - 5)
    assert k.changeovers.p50_s == 600.0  # durations still measured between exams, without buffer


def test_coil_batching_savings(intervals: list[ExamInterval]) -> None:
    day = [e for e in intervals if e.device == "MR1" and e.start_utc < at(TUE, "00:00")]
    b = coil_batching_savings(day)
    # coils in order HEAD KNEE HEAD HEAD KNEE KNEE HEAD: 4 changes; 2 distinct coils → at least 1
    # medians: with change [600, 900, 600] → 600; same coil [300, 300] → 300
    # (4 − 1) × (600 − 300) s = 900 s = 15 min
    assert (b.coil_changes, b.min_coil_changes, b.changeovers_with_coil_change, b.changeovers_same_coil) == (4, 1, 3, 2)
    assert (b.median_with_change_s, b.median_same_coil_s, b.minutes_saved) == (600.0, 300.0, 15.0)
    swapped = [replace(e, coil={"HEAD": "KNEE", "KNEE": "HEAD"}[e.coil]) if e.coil else e for e in day]
    assert coil_batching_savings(swapped).minutes_saved == 15.0  # relabelling coils changes nothing
    assert coil_batching_savings(day[:1]).minutes_saved is None  # no changeover: nothing to estimate
    # HEAD →5 min→ KNEE →15 min→ KNEE →5 min→ HEAD: coil changes look cheaper than same-coil changeovers:
    # (2 − 1) × (300 − 900) s < 0 → floored at 0
    t = [at(MON, x) for x in ("07:00", "07:10", "07:15", "07:25", "07:40", "07:50", "07:55", "08:05")]
    odd = [ExamInterval(f"o{i}", "MR9", t[2 * i], t[2 * i + 1], coil=c, patient_pseudonym=f"P{i}")
           for i, c in enumerate(("HEAD", "KNEE", "KNEE", "HEAD"))]
    assert coil_batching_savings(odd).minutes_saved == 0.0
    with pytest.raises(ValueError, match="one MR device"):
        coil_batching_savings(intervals)


def test_heatmap_counts_exams_by_local_weekday_and_hour(intervals: list[ExamInterval]) -> None:
    h = heatmap(intervals, SH)
    # CT1 Monday (0): c1 at 7, c2 c3 c4 at 8, c6 at 11, c7 at 12, c8 at 13 (c5 discontinued, q1 QA)
    assert {k[1:]: v for k, v in h.items() if k[0] == "CT1"} == {(0, 7): 1, (0, 8): 3, (0, 11): 1, (0, 12): 1,
                                                                 (0, 13): 1}
    assert h[("MR1", 0, 23)] == 1 and h[("MR1", 1, 0)] == 1  # m7 Monday 23:xx, m8 Tuesday 00:xx
    assert {k: v for k, v in heatmap(intervals, LON).items() if k[0] == "LON-CT"} == {("LON-CT", 6, 0): 1,
                                                                                    ("LON-CT", 6, 12): 1}


# ----------------------------------------------------------------------------------------------------------------
# wait times
# ----------------------------------------------------------------------------------------------------------------


def test_wait_times(intervals: list[ExamInterval]) -> None:
    w = {x.exam_key: x for x in wait_times([e for e in intervals if e.device != "LON-CT"], EVENTS, SH)}
    assert "q1" not in w and len(w) == 16  # every patient exam of the Shanghai site, QA left out
    got = {k: (w[k].arrival_kind, w[k].arrival_to_start_s, w[k].order_to_start_s, w[k].scheduled_delay_s, w[k].negative)
           for k in ("c1", "c2", "c3", "c4", "c5", "c6", "c7")}
    assert got == {
        # A10 07:20 → 07:50 = 1800 (A04 at 07:00 ignored); order Sun 15:00 → Mon 07:50 = 16 h 50 min = 60600;
        # latest schedule 07:45 (S13) → +300
        "c1": ("arrival", 1800.0, 60600.0, 300.0, ()),
        "c2": ("registration", 1200.0, None, -600.0, ()),  # A04 08:00 → 08:20; scheduled 08:30: 10 min early
        "c3": (None, None, 1800.0, None, ()),  # no arrival: only the order lead time 08:00 → 08:30
        "c4": ("arrival", -300.0, None, None, ("arrival_to_start_s",)),  # arrived 09:00 after the 08:55 start
        "c5": ("arrival", 600.0, None, None, ()),  # 09:05 → MPPS start 09:15
        "c6": ("arrival", 3600.0, None, None, ()),  # latest arrival before the start: 10:00 → 11:00
        "c7": (None, None, None, None, ()),
    }
    assert (w["c1"].hour_local, w["m7"].hour_local, w["m8"].day_local) == (7, 23, TUE)


def test_wait_summaries(intervals: list[ExamInterval]) -> None:
    waits = wait_times([e for e in intervals if e.device != "LON-CT"], EVENTS, SH)  # one site, one zone
    ct1 = summarize_waits(waits, "device")["CT1"]
    # arrival [1800, 1200, −300, 600, 3600] → sorted [−300, 600, 1200, 1800, 3600]
    #   P50 rank 2 → 1200; P90 rank 3.6 → 1800 + 0.6·1800 = 2880
    # order [60600, 1800] → P50 31200; P90 1800 + 0.9·58800 = 54720
    # delay [300, −600] → P50 −150; P90 −600 + 0.9·900 = 210
    assert (ct1.n, ct1.arrival_n, ct1.arrival_p50_s, ct1.arrival_p90_s) == (8, 5, 1200.0, pytest.approx(2880.0))
    assert (ct1.order_n, ct1.order_p50_s, ct1.order_p90_s) == (2, 31200.0, pytest.approx(54720.0))
    assert (ct1.delay_n, ct1.delay_p50_s, ct1.delay_p90_s, ct1.negative_n) == (2, -150.0, pytest.approx(210.0), 1)
    assert summarize_waits(waits, "modality")["CT"] == ct1  # only CT exams have events
    assert summarize_waits(waits, "device")["MR1"].arrival_n == 0
    h8 = summarize_waits(waits, "hour_local")[8]
    # hour 8: c2 c3 c4 (CT) and m3 (MR); arrivals [1200, −300] → P50 450, P90 −300 + 0.9·1500 = 1050
    assert (h8.n, h8.arrival_n, h8.arrival_p50_s, h8.arrival_p90_s) == (4, 2, 450.0, pytest.approx(1050.0))
    assert summarize_waits(waits, "device", include_negative=False)["CT1"].arrival_p50_s == 1500.0  # [600..3600]
    with pytest.raises(ValueError, match="device, modality, hour_local"):
        summarize_waits(waits, "room")


# ----------------------------------------------------------------------------------------------------------------
# percentile and properties
# ----------------------------------------------------------------------------------------------------------------


def test_percentile_matches_numpy_linear() -> None:
    import numpy as np  # installed with chdb (clickhouse-connect[chdb])

    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)  # rank 2.7 → 3 + 0.7
    assert percentile([5], 50) == 5.0 and percentile([], 50) is None
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(200):
        xs = [rng.uniform(-1000, 1000) for _ in range(rng.randint(1, 30))]
        p = rng.choice([0, 25, 50, 75, 90, 100, rng.uniform(0, 100)])
        assert percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)), abs=1e-9), f"seed={seed}"
    with pytest.raises(ValueError, match="0 to 100"):
        percentile([1.0], 150)


def _random_day(rng: random.Random, tz: str, day: date) -> tuple[list[ExamInterval], object]:
    """Exams of two devices placed inside their opening hours, with overlaps, repeats and QA."""
    hours = parse_hours({"default": {WEEKDAYS[day.weekday()]: ["07:00-12:00", "13:30-20:00"]},
                         "devices": {"B": {WEEKDAYS[day.weekday()]: ["00:00-24:00"]}}})
    exams = []
    for device in ("A", "B"):
        ranges = operating_intervals(hours, device, day, tz)
        for i in range(rng.randint(0, 25)):
            lo, hi = rng.choice(ranges)
            span = int((hi - lo).total_seconds())
            length = rng.randint(0, min(3600, span))
            start = lo + timedelta(seconds=rng.randint(0, span - length))
            exams.append(ExamInterval(
                f"{device}{i}", device, start, start + timedelta(seconds=length),
                patient_pseudonym=f"P{rng.randint(0, 8)}", coil=rng.choice([None, "HEAD", "KNEE"]),
                not_patient=rng.random() < 0.1, discontinued=rng.random() < 0.1))
    return exams, hours


@pytest.mark.parametrize("tz,day", [(SH, MON), (LON, SPRING), (LON, AUTUMN), ("America/New_York", date(2024, 3, 10))])
def test_properties_on_random_days(tz: str, day: date) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(15):
        exams, hours = _random_day(rng, tz, day)
        for device in ("A", "B"):
            k = device_day_kpis(exams, device, day, tz, hours)
            msg = f"seed={seed} device={device} {k}"
            mine = [e for e in exams if e.device == device and not e.not_patient]
            assert k.busy_minutes <= k.operating_minutes + k.busy_outside_hours_minutes + 1e-9, msg
            assert k.busy_outside_hours_minutes == pytest.approx(0, abs=1e-9), msg  # every exam lies inside hours
            assert k.busy_minutes <= sum(e.duration_s for e in mine) / 60 + 1e-9, msg  # a union never exceeds the sum
            assert k.busy_minutes >= max((e.duration_s for e in mine), default=0) / 60 - 1e-9, msg
            assert k.utilization_pct is not None and 0 <= k.utilization_pct <= 100, msg
            assert k.busy_in_hours_minutes + k.changeover_minutes + k.idle_minutes == pytest.approx(
                k.operating_minutes), msg
            hrs = device_hour_kpis(exams, device, day, tz, hours)
            assert sum(h.busy_minutes for h in hrs) == pytest.approx(k.busy_minutes), msg
            assert sum(h.exams for h in hrs) == k.exams, msg
            assert sum(h.operating_minutes for h in hrs) == pytest.approx(k.operating_minutes), msg
            assert sum(heatmap(exams, tz).get((device, day.weekday(), h), 0) for h in range(24)) == k.exams, msg
            # a replay: shuffled and with every exam twice gives identical KPIs
            replayed = exams * 2
            rng.shuffle(replayed)
            assert device_day_kpis(set(replayed), device, day, tz, hours) == k, msg
        busy = busy_intervals(exams)
        assert busy == merge_intervals(busy), f"seed={seed}"  # sorted, disjoint


def test_day_bounds_are_contiguous_across_dst() -> None:
    for tz in (SH, LON, "America/New_York", "Australia/Lord_Howe"):
        d = date(2024, 1, 1)
        for _ in range(366):
            assert local_day_bounds(d, tz)[1] == local_day_bounds(d + timedelta(days=1), tz)[0], (tz, d)
            d += timedelta(days=1)


def _random_hours(rng: random.Random) -> dict:
    """Random weekly hours: closed, one or two ranges, or one midnight-crossing range; no bound inside 01:00-02:59."""
    bounds = [h * 60 + m for h in range(3, 24) for m in (0, 30)]

    def hhmm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    week = {}
    for day in WEEKDAYS:
        pattern = rng.choice(["closed", "one", "two", "cross", "all"])
        if pattern == "closed":
            week[day] = []
        elif pattern == "all":
            week[day] = ["00:00-24:00"]
        elif pattern == "cross":
            end = rng.choice([0, 180, 240, 360])  # "…-00:00" is midnight, i.e. 24:00
            week[day] = [f"{hhmm(rng.choice(bounds[30:]))}-{hhmm(end)}"]
        else:
            picked = sorted(rng.sample([0, *bounds], 4 if pattern == "two" else 2))
            week[day] = [f"{hhmm(a)}-{hhmm(b)}" for a, b in zip(picked[::2], picked[1::2], strict=True)]
    return {"default": week}


@pytest.mark.parametrize("tz,day", [(SH, MON), (LON, SPRING), (LON, AUTUMN), ("America/New_York", date(2024, 3, 10)),
                                    ("Australia/Lord_Howe", date(2024, 4, 7))])
def test_minute_by_minute_oracle(tz: str, day: date) -> None:
    """Operating and busy minutes against a brute-force count over every UTC minute of the local day."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    zone = ZoneInfo(tz)
    day_start, day_end = local_day_bounds(day, tz)
    for _ in range(10):
        raw = _random_hours(rng)
        hours = parse_hours(raw)
        ranges = {d: [parse_hours({"default": {d: [r]}}).default[i][0] for r in raw["default"][d]]
                  for i, d in enumerate(WEEKDAYS)}
        exams = []
        for i in range(rng.randint(0, 20)):
            start = day_start + timedelta(minutes=rng.randint(-180, int((day_end - day_start).total_seconds()) // 60))
            exams.append(ExamInterval(f"x{i}", "D", start, start + timedelta(minutes=rng.randint(0, 120)),
                                      patient_pseudonym=f"P{i}", not_patient=rng.random() < 0.1))
        op = busy = busy_in = 0
        t = day_start
        while t < day_end:
            wall = t.astimezone(zone)
            m = wall.hour * 60 + wall.minute
            today, yesterday = ranges[WEEKDAYS[day.weekday()]], ranges[WEEKDAYS[(day.weekday() - 1) % 7]]
            is_op = any(r.start_min <= m < r.end_min for r in today) or any(m < r.end_min - 1440 for r in yesterday)
            nxt = t + timedelta(minutes=1)
            is_busy = any(e.start_utc <= t and e.end_utc >= nxt for e in exams if not e.not_patient)
            op, busy, busy_in = op + is_op, busy + is_busy, busy_in + (is_op and is_busy)
            t = nxt
        k = device_day_kpis(exams, "D", day, tz, hours)
        got = (k.operating_minutes, k.busy_minutes, k.busy_in_hours_minutes)
        assert got == (op, busy, busy_in), f"seed={seed} hours={raw} exams={exams}"
