"""A seeded synthetic hospital: plans realistic days of imaging, sends them over real DICOM associations, and
keeps the exact ground truth.

``plan_days`` is pure (seed → ``Plan``, no I/O): it schedules exams on the devices of ``hospital`` and fills the
records of ``exams``; ``dicom``/``rdsr``/``workflow`` turn them into objects and ``sender`` sends them.

Where it bites:
- Truth start/end are the first/last *acquisition* timestamps of the exam's images, to the second. A one-image exam
  (DX chest PA, a CR single view) therefore has ``duration_s == 0`` although the room was busy for minutes.
- ``scale`` shrinks instance counts only (floor 1 per series); the schedule, UIDs, doses and times are identical at
  every scale, so a test at 0.05 checks the same day a benchmark sends at 1.0.
- Cost on these 2-core boxes: planning a default day ≈0.15 s; building ≈1 ms per instance at scale 1.0 (≈28.6k
  instances, ≈26 s) and ≈3 ms at 0.05 (the per-exam templates and dose SR dominate). ``send`` manages ≈35–65
  objects/s through pynetdicom, so a full day is a benchmark (≈10 min), not a unit test; DCMTK with
  ``TCP_NODELAY=1`` on ``write_dicom_dir`` output does ≈220/s.
- Each open pynetdicom association keeps polling threads busy: ``send`` opens one at a time unless asked to
  interleave.
- CR devices (and one DX) stamp ``DERIVED\\PRIMARY`` on their original acquisitions, as the real samples do; they
  still count for timing in the truth.
- Opening hours are local wall-clock of ``tz``; an exam never starts before opening or ends after closing, except on
  a device open around the clock, whose exams may cross midnight.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from synthetic_hospital.codes import make_uid
from synthetic_hospital.exams import PIXEL_MODES, DoseEvent, Patient, Plan, PlannedExam, PlannedSeries, _r, _zone
from synthetic_hospital.hospital import (
    _CHANGEOVER_S,
    _MR_COILS,
    _QA_TYPE,
    _SINGLE_VIEW_SLOT_S,
    EXAM_TYPES,
    R_BREAST,
    Device,
    ExamType,
    SeriesSpec,
)


def plan_days(
    devices: Sequence[Device],
    start_date: date,
    days: int,
    seed: int,
    tz: str = "Asia/Shanghai",
    scale: float = 1.0,
    *,
    pixels: str = "small",
) -> Plan:
    """Plan ``days`` local days from ``start_date`` for ``devices``; pure and deterministic from ``seed``."""
    if days < 1:
        raise ValueError(f"days={days}: plan at least one day")
    if not 0 < scale <= 10:
        raise ValueError(f"scale={scale}: expected 0 < scale <= 10, e.g. 0.05 for tests or 1.0 for a real day")
    if pixels not in PIXEL_MODES:
        raise ValueError(f"pixels={pixels!r}: expected one of {PIXEL_MODES}")
    keys = [d.key for d in devices]
    if len(set(keys)) != len(keys):
        raise ValueError(f"device keys must be unique, got {keys}")
    _zone(tz)  # fail early on an unknown zone
    drafts: list[_Draft] = []
    for device in devices:
        drafts.extend(_plan_device(device, start_date, days, seed, tz))
    drafts.sort(key=lambda d: (d.start_utc, d.device.key))
    exams = _plan_workflow(_finalise(drafts, seed, tz, scale), seed, tz)
    return Plan(seed=seed, tz=tz, start_date=start_date, days=days, scale=scale, pixels=pixels,
                devices=tuple(devices), exams=tuple(exams))


# ------------------------------------------------------------------------------------------------------------
# Planning internals
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draft:
    """An exam before the plan-wide numbering (patients, accessions) is assigned."""

    device: Device
    index: int
    exam_type: ExamType
    start_utc: datetime
    duration_s: int
    rng_state: tuple[Any, ...]


def _open_intervals(device: Device, start_date: date, days: int, tz: str) -> list[tuple[int, int]]:
    """Opening intervals as UTC epoch seconds, adjacent days merged (a 24/7 device is one interval)."""
    zone = _zone(tz)
    out: list[tuple[int, int]] = []
    for i in range(days):
        day = start_date + timedelta(days=i)
        window = device.window(day)
        if window is None:
            continue
        midnight = datetime(day.year, day.month, day.day)
        a = int((midnight + timedelta(seconds=window[0])).replace(tzinfo=zone).timestamp())
        b = int((midnight + timedelta(seconds=window[1])).replace(tzinfo=zone).timestamp())
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _idle_factor(local_hour: float) -> float:
    """How much longer a device waits between patients at this hour than at peak (nights are quiet)."""
    if local_hour < 6:
        return 10.0
    if local_hour < 8:
        return 3.0
    if local_hour < 11.5:
        return 1.0
    if local_hour < 13.5:
        return 2.5  # lunch break
    if local_hour < 17.5:
        return 1.0
    if local_hour < 20:
        return 2.0
    return 5.0


def _plan_device(device: Device, start_date: date, days: int, seed: int, tz: str) -> list[_Draft]:
    zone = _zone(tz)
    rng = random.Random(f"radpulse-sim/{seed}/{device.key}")
    keys = [k for k, _ in device.exam_mix]
    weights = [w for _, w in device.exam_mix]
    qa_key = _QA_TYPE.get(device.modality)
    qa_days: dict[date, bool] = {}
    drafts: list[_Draft] = []
    index = 0
    for open_a, open_b in _open_intervals(device, start_date, days, tz):
        t = open_a + rng.randint(0, 600)  # warm-up after opening
        while True:
            local = datetime.fromtimestamp(t, zone)
            mean_idle = device.busy_idle_min * 60 * _idle_factor(local.hour + local.minute / 60)
            t += int(rng.expovariate(1.0 / mean_idle)) if mean_idle > 0 else 0
            local = datetime.fromtimestamp(t, zone)
            if qa_key and local.date() not in qa_days:
                qa_days[local.date()] = rng.random() < device.qa_daily_p
            key = rng.choices(keys, weights)[0]
            if qa_key and qa_days.get(local.date()) and local.hour >= 7:
                key, qa_days[local.date()] = qa_key, False  # the morning QA, once per day
            exam_type = EXAM_TYPES[key]
            exam_rng = random.Random(f"radpulse-sim/{seed}/{device.key}/{index}")
            duration = exam_rng.randint(*exam_type.duration_s)
            slot = duration if duration > 0 else exam_rng.randint(*_SINGLE_VIEW_SLOT_S)
            state = exam_rng.getstate()
            if t + slot > open_b:
                break
            drafts.append(_Draft(device, index, exam_type, datetime.fromtimestamp(t, UTC), duration, state))
            index += 1
            t += slot + rng.randint(*_CHANGEOVER_S[device.modality])
    return drafts


def _finalise(drafts: list[_Draft], seed: int, tz: str, scale: float) -> list[PlannedExam]:
    zone = _zone(tz)
    exams: list[PlannedExam] = []
    accession_seq: dict[date, int] = {}
    patient_seq = 0
    for draft in drafts:
        rng = random.Random()
        rng.setstate(draft.rng_state)  # continue the exam's own stream where scheduling left it
        local_day = draft.start_utc.astimezone(zone).date()
        if draft.exam_type.is_qa:
            accession, extra = "", ()
            patient = _qa_patient(draft.device)
        else:
            patient_seq += 1
            seq = accession_seq.get(local_day, 0) + 1
            accession_seq[local_day] = seq
            accession = f"SA{local_day:%y%m%d}{seq:05d}"
            extra = ()
            if draft.exam_type.key == "CT_CAP" and rng.random() < 0.3:
                seq += 1
                accession_seq[local_day] = seq
                extra = (f"SA{local_day:%y%m%d}{seq:05d}",)  # split order: chest and abdomen ordered apart
            patient = _patient(rng, draft.exam_type, patient_seq, local_day)
        exams.append(_build_exam(draft, rng, seed, tz, scale, patient, accession, extra))
    return exams


ORDER_LEAD_S = (3600, 48 * 3600)  # order issued 1–48 h before the exam starts
ARRIVAL_LEAD_S = (5 * 60, 60 * 60)  # patient arrives 5–60 min before the exam starts
SCHEDULE_SLIP_S = (-8 * 60, 12 * 60)  # actual start − booked start, before the booking is floored to a minute


def _plan_workflow(exams: list[PlannedExam], seed: int, tz: str) -> list[PlannedExam]:
    """Order, booking, arrival and MPPS for every patient exam, from streams of their own: the images, UIDs and
    times planned before are untouched. One MPPS exam per local day (if any) ends DISCONTINUED."""
    zone = _zone(tz)
    out: list[PlannedExam] = []
    for exam in exams:
        if exam.is_qa:
            out.append(exam)
            continue
        rng = random.Random(f"radpulse-sim/{seed}/{exam.exam_id}/workflow")
        start = exam.start_utc
        order = start - timedelta(seconds=rng.randint(*ORDER_LEAD_S))
        booked = (start - timedelta(seconds=rng.randint(*SCHEDULE_SLIP_S))).replace(second=0, microsecond=0)
        arrival = start - timedelta(seconds=rng.randint(*ARRIVAL_LEAD_S))
        mpps = exam.device.sends_mpps
        out.append(dataclasses.replace(
            exam, order_utc=order, scheduled_start_utc=booked, arrival_utc=arrival,
            mpps_status="COMPLETED" if mpps else None, mpps_uid=make_uid(seed, "mpps", exam.exam_id) if mpps else None,
        ))
    by_day: dict[date, list[int]] = {}
    for i, exam in enumerate(out):
        if exam.has_mpps:
            by_day.setdefault(exam.start_utc.astimezone(zone).date(), []).append(i)
    for day, indexes in sorted(by_day.items()):
        pick = random.Random(f"radpulse-sim/{seed}/discontinued/{day.isoformat()}").choice(indexes)
        out[pick] = dataclasses.replace(out[pick], mpps_status="DISCONTINUED")
    return out


def _qa_patient(device: Device) -> Patient:
    return Patient(patient_id=f"QA-PHANTOM-{device.key}", name="QA^PHANTOM", name_ideographic=None,
                   birth_date=None, sex="O", age_years=None, weight_kg=None, height_m=None)


def _patient(rng: random.Random, et: ExamType, n: int, exam_day: date) -> Patient:
    sex = et.sex or rng.choice("MF")
    if rng.random() < et.child_share:
        age = rng.randint(2, 15)
    else:
        age = max(et.age[0], min(et.age[1], int(rng.triangular(et.age[0], et.age[1], 55))))
    birth = date(exam_day.year - age - 1, 1, 1) + timedelta(days=rng.randint(0, 364))
    if (exam_day.month, exam_day.day) < (birth.month, birth.day):
        real_age = exam_day.year - birth.year - 1
    else:
        real_age = exam_day.year - birth.year
    if real_age >= 16:
        height = rng.gauss(1.70 if sex == "M" else 1.59, 0.065)
        bmi = min(40.0, max(16.0, rng.gauss(23.8, 3.4)))
    else:
        height = 0.80 + 0.058 * real_age + rng.gauss(0, 0.04)
        bmi = min(24.0, max(13.0, rng.gauss(16.5, 1.6)))
    weight = bmi * height * height
    return Patient(patient_id=f"SIM{n:07d}", name=f"SIM^PATIENT{n:04d}", name_ideographic=f"模拟^患者{n:04d}",
                   birth_date=birth, sex=sex, age_years=real_age, weight_kg=_r(weight, 1),
                   height_m=_r(height, 2))


def _windows(rng: random.Random, specs: Sequence[SeriesSpec], duration: int) -> list[tuple[int, int]]:
    """Acquisition windows (seconds from exam start) of each series: first starts at 0, last ends at duration."""
    k = len(specs)
    if duration <= 0:
        return [(0, 0)] * k
    if k == 1:
        return [(0, duration)]
    lengths = [s.share * rng.uniform(0.6, 1.4) for s in specs]
    gaps = [rng.uniform(0.5, 1.5) for _ in range(k - 1)]
    busy = sum(lengths)
    # shares say how much of the exam is beam/readout: CT ~0.2, MR up to 0.85, DX/MG 0 (instants); gaps fill the rest
    busy_share = min(0.85, busy)
    total_gap = sum(gaps)
    lengths = [duration * busy_share * x / busy if busy else 0.0 for x in lengths]
    gaps = [duration * (1 - busy_share) * g / total_gap for g in gaps]
    out: list[tuple[int, int]] = []
    cursor = 0.0
    for i in range(k):
        a = cursor
        b = a + lengths[i]
        out.append((round(a), round(b)))
        cursor = b + (gaps[i] if i < k - 1 else 0.0)
    a_last, _ = out[-1]
    out[-1] = (min(a_last, duration), duration)
    return out


def _choose_series(rng: random.Random, et: ExamType) -> list[SeriesSpec]:
    chosen = [s for s in et.series if s.probability >= 1.0 or rng.random() < s.probability]
    return chosen[: et.max_series]


def _build_exam(draft: _Draft, rng: random.Random, seed: int, tz: str, scale: float, patient: Patient,
                accession: str, extra: tuple[str, ...]) -> PlannedExam:
    device, et = draft.device, draft.exam_type
    exam_id = f"{device.key}-{draft.index:05d}"
    specs = _choose_series(rng, et)
    duration = draft.duration_s if len(specs) > 1 else 0  # one image: first == last acquisition
    windows = _windows(rng, specs, duration)
    language = "zh" if rng.random() < device.zh_share else "en"
    study_description = rng.choice(et.descriptions_zh if language == "zh" else et.descriptions_en)
    start = draft.start_utc
    events: list[DoseEvent] = []
    series: list[PlannedSeries] = []
    for i, (spec, (a, b)) in enumerate(zip(specs, windows, strict=True)):
        number = i + 1
        n_full = rng.randint(*spec.images)
        n = max(1, round(n_full * scale))
        event = _event_for(rng, device, et, spec, patient, a, seed, exam_id, number)
        if event is not None:
            events.append(event)
        description = spec.philips_description if (spec.philips_description and
                                                   device.manufacturer.startswith("Philips")) else spec.description
        if device.charset == "GB18030" and et.modality == "CT" and language == "zh":
            description = f"{_ZH_SERIES.get(spec.acquisition or '', '')}{description}".strip()
        series.append(PlannedSeries(
            number=number, uid=make_uid(seed, "series", exam_id, number), description=description,
            n_instances=n, n_instances_full=n_full, start_offset_s=a, end_offset_s=b,
            anchor_end=(i == len(specs) - 1 and i > 0), spec=spec,
            event_index=len(events) - 1 if event is not None else None,
        ))
    if et.modality == "RF":
        events.extend(_fluoro_events(rng, device, et, duration, seed, exam_id))
    sends_rdsr = device.sends_rdsr and bool(events)
    coil = transmit = None
    if device.modality == "MR" and et.coil:
        coil = _MR_COILS.get(device.manufacturer, _MR_COILS["SIEMENS"])[et.coil]
        if device.manufacturer.startswith("Philips") and rng.random() < 0.3:
            coil = "MULTI COIL"  # Philips often reports a combined coil set this way
        transmit = "Body"
    return PlannedExam(
        exam_id=exam_id, device=device, exam_type=et, tz=tz, study_description=study_description,
        language=language, is_qa=et.is_qa, patient=patient, accession=accession, extra_accessions=extra,
        study_uid=make_uid(seed, "study", exam_id), frame_of_reference_uid=make_uid(seed, "for", exam_id),
        start_utc=start, end_utc=start + timedelta(seconds=duration),
        study_offset_s=-rng.randint(0, 600), series=tuple(series), dose_events=tuple(events),
        rdsr_series_uid=make_uid(seed, "rdsr-series", exam_id) if sends_rdsr else None,
        rdsr_sop_uid=make_uid(seed, "rdsr", exam_id) if sends_rdsr else None,
        referring_physician=f"SIM^REFERRER{rng.randint(1, 40):02d}",
        operator=f"SIM^TECH{rng.randint(1, 12):02d}",
        performing_physician=f"SIM^RADIOLOGIST{rng.randint(1, 15):02d}",
        pps_id=f"PPS{draft.index:06d}", mr_receive_coil=coil, mr_transmit_coil=transmit,
    )


_ZH_SERIES = {"LOCALIZER": "定位像 ", "SPIRAL": "螺旋 ", "SEQUENCED": "轴扫 ", "STATIONARY": "监测 "}


def _event_for(rng: random.Random, device: Device, et: ExamType, spec: SeriesSpec, patient: Patient, a: int,
               seed: int, exam_id: str, series_number: int) -> DoseEvent | None:
    uid = make_uid(seed, "event", exam_id, series_number)
    if device.modality == "CT":
        return _ct_event(rng, et, spec, patient, a, uid, series_number)
    if device.modality in ("DX", "CR"):
        return _dx_event(rng, device, et, spec, patient, a, uid, series_number)
    if device.modality == "MG":
        return _mg_event(rng, et, spec, a, uid, series_number)
    if device.modality == "RF":
        return _rf_acquisition_event(rng, et, spec, a, uid, series_number)
    return None


def _size_factor(patient: Patient, phantom: str | None) -> float:
    """Tube-current modulation: heavier patients get more output (head scans barely change)."""
    if phantom == "HEAD16" or patient.weight_kg is None:
        return 1.0
    return min(1.6, max(0.45, (patient.weight_kg / 70.0) ** 0.7))


def _ct_event(rng: random.Random, et: ExamType, spec: SeriesSpec, patient: Patient, a: int, uid: str,
              series_number: int) -> DoseEvent:
    assert spec.ctdivol_mgy is not None and spec.length_mm is not None and spec.acquisition is not None
    acq = spec.acquisition
    length = _r(rng.uniform(*spec.length_mm), 1)
    if acq == "LOCALIZER":
        ctdi = _r(rng.uniform(*spec.ctdivol_mgy), 2)
        dlp = _r(ctdi * length / 10.0, 2)
        return DoseEvent(uid=uid, kind="CT", protocol=f"{et.body_part.title()} Topogram", start_offset_s=a,
                         target_region=et.region, series_number=series_number, acquisition_type="CONSTANT_ANGLE",
                         ctdivol_mgy=ctdi, dlp_mgy_cm=dlp, phantom=et.phantom, scanning_length_mm=length,
                         exposure_time_s=_r(length / 100.0, 2), tube_current_ma=float(rng.choice((20, 35, 50))),
                         kvp=120.0)
    child = patient.age_years is not None and patient.age_years < 16
    factor = _size_factor(patient, et.phantom) * (0.55 if child else 1.0)
    ctdi = _r(max(0.3, rng.uniform(*spec.ctdivol_mgy) * factor), 2)
    if acq == "SPIRAL":
        pitch = rng.choice((0.6, 0.8, 0.984, 1.0, 1.2, 1.375))
        dlp = _r(ctdi * length / 10.0 * rng.uniform(1.03, 1.12), 2)  # over-ranging
        exposure = _r(length / (38.4 * pitch) * 0.5, 2)
    elif acq == "STATIONARY":
        pitch = None
        length = 10.0
        dlp = _r(ctdi * 1.0, 2)
        exposure = _r(rng.uniform(3.0, 12.0), 2)
    else:  # SEQUENCED
        pitch = None
        dlp = _r(ctdi * length / 10.0, 2)
        exposure = _r(length / 20.0, 2)
    kvp = 100.0 if (child or rng.random() < 0.25) else 120.0
    per_mas = 0.16 if et.phantom == "HEAD16" else 0.07
    ma = _r(ctdi / per_mas * (pitch or 1.0) / 0.5, 0)
    return DoseEvent(uid=uid, kind="CT", protocol=_protocol_name(et, spec), start_offset_s=a,
                     target_region=et.region, series_number=series_number, acquisition_type=acq, ctdivol_mgy=ctdi,
                     dlp_mgy_cm=dlp, phantom=et.phantom, scanning_length_mm=length, exposure_time_s=exposure,
                     pitch=pitch, tube_current_ma=ma, contrast=spec.contrast, kvp=kvp)


def _protocol_name(et: ExamType, spec: SeriesSpec) -> str:
    return f"{et.body_part.title()}_{spec.description.split()[0]}"


def _dx_event(rng: random.Random, device: Device, et: ExamType, spec: SeriesSpec, patient: Patient, a: int,
              uid: str, series_number: int) -> DoseEvent:
    assert spec.dap_dgy_cm2 is not None and spec.kvp is not None and spec.mas is not None
    child = patient.age_years is not None and patient.age_years < 16
    factor = (0.4 if child else 1.0) * (_size_factor(patient, None) if et.body_part in ("CHEST", "ABDOMEN",
                                                                                         "LSPINE") else 1.0)
    dap = _r(rng.uniform(*spec.dap_dgy_cm2) * factor, 4)
    dap = max(dap, 0.0001)
    tei = device.target_ei
    di_draw = max(-6.0, min(6.0, rng.gauss(0.0, 1.6)))
    ei = _r(tei * 10 ** (di_draw / 10.0), 1)
    di = _r(10.0 * math.log10(ei / tei), 2)
    entrance = _r(dap / 10.0 / spec.field_cm2 * 1000.0 * 1.35, 4)  # Gy·cm² / cm² → mGy, with backscatter
    kvp = float(round(rng.uniform(*spec.kvp)))
    return DoseEvent(uid=uid, kind="PROJECTION", protocol=f"{spec.description} {kvp:.0f}kV",
                     start_offset_s=a, target_region=et.region, series_number=series_number,
                     event_type="STATIONARY", kvp=kvp,
                     mas=_r(rng.uniform(*spec.mas), 2), dap_dgy_cm2=dap, dap_gy_m2=_r(dap / 1e5, 10),
                     entrance_dose_mgy=entrance, exposure_index=ei, target_exposure_index=tei,
                     deviation_index=di, view=spec.view, laterality=spec.laterality, sid_mm=spec.sid_mm)


def _mg_event(rng: random.Random, et: ExamType, spec: SeriesSpec, a: int, uid: str,
              series_number: int) -> DoseEvent:
    thickness = 45.0 if et.is_qa else _r(rng.uniform(32.0, 75.0), 0)
    agd = _r(max(0.5, 0.75 + 0.022 * (thickness - 35.0) + rng.gauss(0.0, 0.12)), 3)
    entrance = _r(agd * rng.uniform(2.6, 3.8), 3)
    kvp = float(round(26 + (thickness - 30) / 45 * 8))
    return DoseEvent(uid=uid, kind="PROJECTION", protocol=f"{spec.laterality} {spec.view}", start_offset_s=a,
                     target_region=R_BREAST, series_number=series_number, event_type="STATIONARY", kvp=kvp,
                     mas=_r(rng.uniform(60.0, 200.0), 1), agd_mgy=agd, entrance_dose_mgy=entrance,
                     view=spec.view, laterality=spec.laterality, compression_mm=thickness, sid_mm=700.0)


def _rf_acquisition_event(rng: random.Random, et: ExamType, spec: SeriesSpec, a: int, uid: str,
                          series_number: int) -> DoseEvent:
    assert spec.kvp is not None and spec.mas is not None
    dap_gycm2 = rng.uniform(0.2, 1.5)  # one spot run; exams total a few to ~20 Gy·cm² (unconfirmed)
    area = rng.uniform(150.0, 400.0)
    dap = _r(dap_gycm2 / 1e4, 9)
    return DoseEvent(uid=uid, kind="PROJECTION", protocol=spec.description, start_offset_s=a,
                     target_region=et.region, series_number=series_number, event_type="STATIONARY",
                     kvp=float(round(rng.uniform(*spec.kvp))), mas=_r(rng.uniform(*spec.mas), 1), dap_gy_m2=dap,
                     dose_rp_gy=_r(dap * 1e4 / area, 6), view=spec.view, sid_mm=1150.0)


def _fluoro_events(rng: random.Random, device: Device, et: ExamType, duration: int, seed: int,
                   exam_id: str) -> list[DoseEvent]:
    n = rng.randint(*et.fluoro_events)
    out: list[DoseEvent] = []
    for i in range(n):
        beam_on = _r(rng.uniform(*et.fluoro_s), 1)
        start = _r(rng.uniform(0.0, max(0.0, duration - beam_on)), 1)
        rate = rng.choice((7.5, 15.0))
        dap = _r(beam_on * rng.uniform(0.01, 0.04) / 1e4, 9)  # Gy·cm² per second of beam → Gy·m²
        area = rng.uniform(150.0, 400.0)
        out.append(DoseEvent(
            uid=make_uid(seed, "fluoro", exam_id, i), kind="PROJECTION", protocol="FL - Abdomen",
            start_offset_s=start, target_region=et.region, event_type="FLUOROSCOPY",
            kvp=float(round(rng.uniform(70, 95))), dap_gy_m2=dap, dose_rp_gy=_r(dap * 1e4 / area, 6),
            duration_s=beam_on, pulse_rate=rate, sid_mm=1150.0,
        ))
    out.sort(key=lambda e: e.start_offset_s)
    return out
