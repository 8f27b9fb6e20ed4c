"""A plan's records (patients, dose events, series, exams, the plan itself) and the exact ground truth they imply.

Pure data; ``write_truth`` is the one I/O edge. Truth start/end are the first/last *acquisition* timestamps of the
exam's images, to the second (a one-image exam therefore has ``duration_s == 0``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from synthetic_hospital.codes import Code
from synthetic_hospital.hospital import WEEKDAYS, Device, ExamType, SeriesSpec

PIXEL_MODES = ("small", "ct512")

# ------------------------------------------------------------------------------------------------------------
# The plan
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patient:
    """A synthetic patient (or the QA phantom); every value is obviously fake."""

    patient_id: str
    name: str
    name_ideographic: str | None
    birth_date: date | None
    sex: str  # M | F | O
    age_years: int | None
    weight_kg: float | None
    height_m: float | None


@dataclass(frozen=True)
class DoseEvent:
    """One irradiation event, with values exactly as written to the DICOM objects."""

    uid: str
    kind: str  # CT | PROJECTION
    protocol: str
    start_offset_s: float  # from exam start
    target_region: Code
    series_number: int | None = None  # image series carrying this event's UID
    # CT (TID 10013)
    acquisition_type: str | None = None  # CONSTANT_ANGLE | SPIRAL | SEQUENCED | STATIONARY
    ctdivol_mgy: float | None = None
    dlp_mgy_cm: float | None = None
    phantom: str | None = None  # HEAD16 | BODY32
    scanning_length_mm: float | None = None
    exposure_time_s: float | None = None
    pitch: float | None = None
    tube_current_ma: float | None = None
    contrast: bool = False
    # projection (TID 10003)
    event_type: str | None = None  # STATIONARY | FLUOROSCOPY
    kvp: float | None = None
    mas: float | None = None
    dap_dgy_cm2: float | None = None  # image-header unit
    dap_gy_m2: float | None = None  # RDSR unit
    dose_rp_gy: float | None = None
    entrance_dose_mgy: float | None = None
    duration_s: float | None = None  # fluoro beam-on time
    pulse_rate: float | None = None
    exposure_index: float | None = None
    target_exposure_index: float | None = None
    deviation_index: float | None = None
    view: str | None = None
    laterality: str | None = None
    agd_mgy: float | None = None
    compression_mm: float | None = None
    sid_mm: float | None = None


@dataclass(frozen=True)
class PlannedSeries:
    """One image series: its UID, size and acquisition window inside the exam."""

    number: int
    uid: str
    description: str
    n_instances: int  # after scale
    n_instances_full: int  # at scale 1.0
    start_offset_s: int
    end_offset_s: int
    anchor_end: bool  # a single image sits at the window end (last series) instead of its start
    spec: SeriesSpec
    event_index: int | None = None

    def instance_offset_us(self, index: int) -> int:
        """Acquisition time of image ``index`` (0-based) in microseconds after the exam start."""
        a, b = self.start_offset_s * 1_000_000, self.end_offset_s * 1_000_000
        if self.n_instances == 1:
            return b if self.anchor_end else a
        return a + (b - a) * index // (self.n_instances - 1)


@dataclass(frozen=True)
class PlannedExam:
    """One exam exactly as it will be sent; ``truth()`` is its ground-truth record."""

    exam_id: str
    device: Device
    exam_type: ExamType
    tz: str
    study_description: str
    language: str  # en | zh
    is_qa: bool
    patient: Patient
    accession: str
    extra_accessions: tuple[str, ...]
    study_uid: str
    frame_of_reference_uid: str
    start_utc: datetime
    end_utc: datetime
    study_offset_s: int  # StudyTime relative to start (<= 0: registration before the first acquisition)
    series: tuple[PlannedSeries, ...]
    dose_events: tuple[DoseEvent, ...]
    rdsr_series_uid: str | None
    rdsr_sop_uid: str | None
    referring_physician: str
    operator: str
    performing_physician: str
    pps_id: str
    mr_receive_coil: str | None = None
    mr_transmit_coil: str | None = None
    # workflow (HL7 order/arrival, MPPS), planned from its own random stream: patient exams only, else None
    order_utc: datetime | None = None  # ORC-9: order issued
    scheduled_start_utc: datetime | None = None  # TQ1-7 / ORC-7.4: booked start
    arrival_utc: datetime | None = None  # ADT^A10 EVN-6: patient arrived
    mpps_status: str | None = None  # final MPPS status (COMPLETED | DISCONTINUED); None = device sends no MPPS
    mpps_uid: str | None = None  # the MPPS SOP Instance UID

    @property
    def has_mpps(self) -> bool:
        return self.mpps_status is not None

    @property
    def discontinued(self) -> bool:
        return self.mpps_status == "DISCONTINUED"

    @property
    def mpps_start_utc(self) -> datetime:
        """MPPS start = first acquisition, so images and MPPS tell one truth."""
        return self.start_utc

    @property
    def mpps_end_utc(self) -> datetime:
        """MPPS end = last acquisition (also for a discontinued step: its images were all sent)."""
        return self.end_utc

    @property
    def n_images(self) -> int:
        return sum(s.n_instances for s in self.series)

    @property
    def n_instances(self) -> int:
        return self.n_images + (1 if self.rdsr_sop_uid else 0)

    @property
    def duration_s(self) -> int:
        return int((self.end_utc - self.start_utc).total_seconds())

    def local(self, offset_us: int = 0) -> datetime:
        """Local wall-clock (aware, in ``tz``) at ``offset_us`` microseconds after the exam start."""
        return (self.start_utc + timedelta(microseconds=offset_us)).astimezone(_zone(self.tz))

    def truth(self) -> dict[str, Any]:
        return _exam_truth(self)


@dataclass(frozen=True)
class Plan:
    """A planned period for a set of devices: pure data, deterministic from the seed."""

    seed: int
    tz: str
    start_date: date
    days: int
    scale: float
    pixels: str
    devices: tuple[Device, ...]
    exams: tuple[PlannedExam, ...]  # ordered by start, then device key

    @property
    def n_instances(self) -> int:
        return sum(e.n_instances for e in self.exams)

    def truth(self) -> dict[str, Any]:
        return _plan_truth(self)

    def subset(self, device_keys: Iterable[str] | None = None, per_device: int | None = None) -> Plan:
        """The same plan restricted to some devices and/or their first ``per_device`` exams (tiny test plans)."""
        keys = {d.key for d in self.devices} if device_keys is None else set(device_keys)
        taken: dict[str, int] = {}
        exams = []
        for exam in self.exams:
            key = exam.device.key
            if key in keys and (per_device is None or taken.get(key, 0) < per_device):
                taken[key] = taken.get(key, 0) + 1
                exams.append(exam)
        return dataclasses.replace(self, devices=tuple(d for d in self.devices if d.key in keys),
                                   exams=tuple(exams))


@cache
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _r(value: float, digits: int) -> float:
    """Rounded so that ``format(v, '.10g')`` writes exactly this value (truth == what the DS says)."""
    return round(value, digits)



# ------------------------------------------------------------------------------------------------------------
# Truth
# ------------------------------------------------------------------------------------------------------------


def _iso(dt: datetime) -> str:
    if dt.utcoffset() == timedelta(0):
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.isoformat(timespec="seconds")


def _dose_truth(exam: PlannedExam) -> dict[str, Any] | None:
    events = exam.dose_events
    if not events:
        return None
    modality = exam.device.modality
    base: dict[str, Any] = {"has_rdsr": exam.rdsr_sop_uid is not None, "n_events": len(events)}
    if modality == "CT":
        base.update(kind="CT", ct_dlp_total_mgy_cm=_r(sum(e.dlp_mgy_cm or 0.0 for e in events), 2),
                    ctdivol_max_mgy=max(e.ctdivol_mgy or 0.0 for e in events), events=[
                        {"irradiation_event_uid": e.uid, "series_number": e.series_number,
                         "acquisition_type": e.acquisition_type, "protocol": e.protocol,
                         "target_region": e.target_region[2], "ctdivol_mgy": e.ctdivol_mgy,
                         "dlp_mgy_cm": e.dlp_mgy_cm, "phantom": e.phantom,
                         "scanning_length_mm": e.scanning_length_mm, "kvp": e.kvp} for e in events])
    elif modality in ("DX", "CR"):
        base.update(kind="DX", dap_total_gy_cm2=_r(sum((e.dap_dgy_cm2 or 0.0) / 10.0 for e in events), 6),
                    events=[{"irradiation_event_uid": e.uid, "series_number": e.series_number, "view": e.view,
                             "dap_gy_cm2": _r((e.dap_dgy_cm2 or 0.0) / 10.0, 6),
                             "dap_header_dgy_cm2": e.dap_dgy_cm2, "exposure_index": e.exposure_index,
                             "target_exposure_index": e.target_exposure_index,
                             "deviation_index": e.deviation_index, "entrance_dose_mgy": e.entrance_dose_mgy,
                             "kvp": e.kvp, "mas": e.mas} for e in events])
    elif modality == "MG":
        left = _r(sum(e.agd_mgy or 0.0 for e in events if e.laterality == "L"), 3)
        right = _r(sum(e.agd_mgy or 0.0 for e in events if e.laterality == "R"), 3)
        base.update(kind="MG", agd_left_mgy=left, agd_right_mgy=right, events=[
            {"irradiation_event_uid": e.uid, "series_number": e.series_number, "laterality": e.laterality,
             "view": e.view, "agd_mgy": e.agd_mgy, "organ_dose_header_dgy": _r((e.agd_mgy or 0.0) / 100.0, 6),
             "entrance_exposure_mgy": e.entrance_dose_mgy, "compression_mm": e.compression_mm, "kvp": e.kvp}
            for e in events])
    elif modality == "RF":
        fluoro = [e for e in events if e.event_type == "FLUOROSCOPY"]
        acq = [e for e in events if e.event_type != "FLUOROSCOPY"]

        def gy_m2(es: list[DoseEvent]) -> float:
            return _r(sum(e.dap_gy_m2 or 0.0 for e in es), 9)

        def rp_gy(es: list[DoseEvent]) -> float:
            return _r(sum(e.dose_rp_gy or 0.0 for e in es), 6)

        base.update(kind="RF", dap_total_gy_m2=gy_m2(events), dap_total_gy_cm2=_r(gy_m2(events) * 1e4, 5),
                    fluoro_dap_total_gy_m2=gy_m2(fluoro), acquisition_dap_total_gy_m2=gy_m2(acq),
                    dose_rp_total_gy=rp_gy(events), dose_rp_total_mgy=_r(rp_gy(events) * 1000.0, 3),
                    fluoro_time_total_s=_r(sum(e.duration_s or 0.0 for e in fluoro), 1),
                    n_fluoro_events=len(fluoro), events=[
                        {"irradiation_event_uid": e.uid, "series_number": e.series_number,
                         "event_type": e.event_type, "dap_gy_m2": e.dap_gy_m2, "dose_rp_gy": e.dose_rp_gy,
                         "duration_s": e.duration_s if e.event_type == "FLUOROSCOPY" else None}
                        for e in events])
    return base


def _exam_truth(exam: PlannedExam) -> dict[str, Any]:
    p = exam.patient
    device = exam.device
    return {
        "exam_id": exam.exam_id,
        "study_instance_uid": exam.study_uid,
        "accession": exam.accession or None,
        "extra_accessions": list(exam.extra_accessions),
        "device_key": device.key,
        "ae_title": device.ae_title,
        "station_name": device.station_name,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "modality": device.modality,
        "exam_type": exam.exam_type.exam_family,
        "exam_variant": exam.exam_type.key,
        "exam_label": exam.exam_type.label,
        "body_part": exam.exam_type.body_part,
        "study_description": exam.study_description,
        "language": exam.language,
        "is_qa": exam.is_qa,
        "patient_id": p.patient_id,
        "patient_sex": p.sex,
        "patient_age_years": p.age_years,
        "patient_weight_kg": p.weight_kg,
        "patient_height_m": p.height_m,
        "start_utc": _iso(exam.start_utc),
        "end_utc": _iso(exam.end_utc),
        "start_local": _iso(exam.local(0)),
        "end_local": _iso(exam.local(exam.duration_s * 1_000_000)),
        "local_date": exam.local(0).date().isoformat(),
        "duration_s": exam.duration_s,
        "n_series": len(exam.series) + (1 if exam.rdsr_sop_uid else 0),
        "n_image_series": len(exam.series),
        "n_images": exam.n_images,
        "n_dose_reports": 1 if exam.rdsr_sop_uid else 0,
        "n_instances": exam.n_instances,
        "series": [{"series_number": s.number, "series_instance_uid": s.uid, "description": s.description,
                    "n_instances": s.n_instances,
                    "first_acquisition_utc": _iso(exam.start_utc + timedelta(microseconds=s.instance_offset_us(0))),
                    "last_acquisition_utc": _iso(exam.start_utc + timedelta(
                        microseconds=s.instance_offset_us(s.n_instances - 1)))} for s in exam.series],
        "rdsr_sop_instance_uid": exam.rdsr_sop_uid,
        "mr": None if device.modality != "MR" else {
            "field_strength_t": device.field_strength_t, "receive_coil": exam.mr_receive_coil,
            "transmit_coil": exam.mr_transmit_coil},
        "dose": _dose_truth(exam),
        **_workflow_truth(exam),
    }


def _workflow_truth(exam: PlannedExam) -> dict[str, Any]:
    """Order/booking/arrival/MPPS truth and the waits the pipeline must compute, from the exam start (the first
    acquisition, which is also the MPPS start when the device sends MPPS)."""
    start = exam.mpps_start_utc if exam.has_mpps else exam.start_utc

    def since(t: datetime | None) -> float | None:
        return None if t is None else (start - t).total_seconds()

    return {
        "order_time_utc": _iso(exam.order_utc) if exam.order_utc else None,
        "scheduled_start_utc": _iso(exam.scheduled_start_utc) if exam.scheduled_start_utc else None,
        "arrival_utc": _iso(exam.arrival_utc) if exam.arrival_utc else None,
        "has_mpps": exam.has_mpps,
        "mpps_status": exam.mpps_status,
        "mpps_sop_instance_uid": exam.mpps_uid,
        "discontinued": exam.discontinued,
        "arrival_to_start_s": since(exam.arrival_utc),
        "order_to_start_s": since(exam.order_utc),
        "scheduled_delay_s": since(exam.scheduled_start_utc),
    }


def _device_truth(plan: Plan, device: Device) -> dict[str, Any]:
    zone = _zone(plan.tz)
    exams = [e for e in plan.exams if e.device.key == device.key]
    days = []
    for i in range(plan.days):
        day = plan.start_date + timedelta(days=i)
        window = device.window(day)
        mine = [e for e in exams if e.start_utc.astimezone(zone).date() == day]
        patients = [e for e in mine if not e.is_qa]
        days.append({
            "local_date": day.isoformat(),
            "open_seconds": 0 if window is None else window[1] - window[0],
            "hours": device.hours[day.weekday()],
            "n_exams": len(mine),
            "n_patient_exams": len(patients),
            "n_qa_exams": len(mine) - len(patients),
            "busy_seconds": sum(e.duration_s for e in patients),
            "n_discontinued_exams": sum(1 for e in patients if e.discontinued),
            "n_instances": sum(e.n_instances for e in mine),
        })
    dlp = [_r(sum(ev.dlp_mgy_cm or 0.0 for ev in e.dose_events), 2) for e in exams if device.modality == "CT"]
    return {
        "device_key": device.key, "ae_title": device.ae_title, "station_name": device.station_name,
        "modality": device.modality, "manufacturer": device.manufacturer, "model": device.model,
        "serial": device.serial, "software_versions": device.software_versions,
        "field_strength_t": device.field_strength_t, "sends_tz_offset": device.sends_tz_offset,
        "sends_rdsr": device.sends_rdsr, "charset": device.charset, "sends_mpps": device.sends_mpps,
        "hours": dict(zip(WEEKDAYS, device.hours, strict=True)),
        "n_exams": len(exams), "n_patient_exams": sum(1 for e in exams if not e.is_qa),
        "n_qa_exams": sum(1 for e in exams if e.is_qa), "n_instances": sum(e.n_instances for e in exams),
        "ct_dlp_total_mgy_cm": _r(sum(dlp), 2) if dlp else None,
        "days": days,
    }


def _plan_truth(plan: Plan) -> dict[str, Any]:
    return {
        "generator": "synthetic_hospital",
        "truth_version": 1,
        "seed": plan.seed,
        "tz": plan.tz,
        "start_date": plan.start_date.isoformat(),
        "days": plan.days,
        "scale": plan.scale,
        "pixels": plan.pixels,
        "n_exams": len(plan.exams),
        "n_patient_exams": sum(1 for e in plan.exams if not e.is_qa),
        "n_instances": plan.n_instances,
        "devices": [_device_truth(plan, d) for d in plan.devices],
        "exams": [e.truth() for e in plan.exams],
    }


def write_truth(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.truth()`` as UTF-8 JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.truth(), ensure_ascii=False, indent=1), encoding="utf-8")
    return path
