"""Exam assembly as plain functions: fold instances into an exam, close it when quiet, publish versions. Pure.

An exam is a study on one device. Its state holds the set of instances already counted (8-byte hashes of event
ids), so a resent object or a replayed message after a crash never counts twice: ``fold`` is idempotent. The set
is persisted in chunks: the state's own record carries only the newest hashes (``seen_tail``, at most
``SEEN_CHUNK``), older ones sit in sealed chunk records that are written once (``streams.examstore``), so the
changelog bytes per instance do not grow with the exam. Times are epoch microseconds (UTC) so the state
serialises to JSON for the Faust table's changelog.

Exam start/end come from *original acquisitions* only: reformats, secondary captures, SRs, presentation states and
key objects arrive late and would stretch the exam. Projection modalities label their only images DERIVED, so the
DERIVED rule applies to cross-sectional modalities alone. When nothing qualifies, every instance counts.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from schemas.events import Exam, InstanceEvent
from streams.modality import exam_modality

NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "OT", "DOC", "REG", "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "AU"})
CROSS_SECTIONAL = frozenset({"CT", "MR", "PT", "NM", "US"})
SECONDARY_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture family
SEEN_CHUNK = 128  # instance hashes per sealed chunk record


def micros(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1_000_000)


def from_micros(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def instance_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def is_timing_instance(event: InstanceEvent) -> bool:
    """Does this instance mark when the patient was on the table?"""
    modality = (event.modality or "").upper()
    if modality in NON_IMAGE_MODALITIES or event.sop_class_uid.startswith(SECONDARY_SOP_PREFIX):
        return False
    kinds = {t.upper() for t in event.image_type}
    if "SECONDARY" in kinds:
        return False
    return not ("DERIVED" in kinds and modality in CROSS_SECTIONAL)


def event_time(event: InstanceEvent) -> datetime | None:
    return (
        event.acquisition_datetime_utc
        or event.content_datetime_utc
        or event.series_datetime_utc
        or event.study_datetime_utc
    )


@dataclass
class ExamState:
    exam_key: str
    site_id: str
    edge_id: str | None = None
    version: int = 0
    status: str = "in_progress"
    device_id: str | None = None
    calling_ae: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    station_name: str | None = None
    device_serial: str | None = None
    study_description: str | None = None
    requested_procedure_description: str | None = None
    protocol_name: str | None = None
    body_part: str | None = None
    series_descriptions: list[str] = field(default_factory=list)
    patient_pseudonym: str | None = None
    accession_pseudonym: str | None = None
    accession_token: str | None = None
    patient_age_years: int | None = None
    patient_sex: str | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    not_patient: bool = False
    timed_start: int | None = None  # from timing instances
    timed_end: int | None = None
    any_start: int | None = None  # from every instance (fallback)
    any_end: int | None = None
    study_datetime: int | None = None
    pps_start: int | None = None
    pps_end: int | None = None
    series: list[str] = field(default_factory=list)
    seen_tail: str = ""  # base64 of the 8-byte hashes of instances counted since the last sealed chunk
    seen_sealed: int = 0  # sealed chunk records (SEEN_CHUNK hashes each, or more for an upgraded state)
    instance_count: int = 0
    first_received: int | None = None
    last_received: int | None = None
    coils: list[str] = field(default_factory=list)
    field_strength: float | None = None
    has_dose_report: bool = False
    has_image: bool = False
    last_update_wall: float = 0.0  # worker wall clock of the last fold (seconds)
    published: int = 0  # the highest version whose publication the broker confirmed (an outbox marker)
    partition: int = -1  # of the exam's instances: its ticks go there, so its records stay in one changelog partition
    seen: set[bytes] = field(default_factory=set, repr=False, compare=False)  # in memory only; see seen_tail

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the changelog, without the in-memory hash set; lists copied (the state changes on)."""
        d = dict(self.__dict__)
        del d["seen"]
        for name in _LIST_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], sealed: bytes = b"") -> ExamState:
        """From the changelog record plus the concatenated sealed chunks of its hash set."""
        data = dict(data)
        legacy = data.pop("seen", "")  # states written before the hash set was chunked held every hash here
        if legacy:
            data["seen_tail"] = base64.b64encode(base64.b64decode(legacy)
                                                 + base64.b64decode(data.get("seen_tail", ""))).decode("ascii")
        state = cls(**data)
        raw = sealed + base64.b64decode(state.seen_tail)
        state.seen = {raw[i : i + 8] for i in range(0, len(raw), 8)}
        return state

    def tail_hashes(self) -> int:
        return len(self.seen_tail) * 3 // 4 // 8

    @property
    def start(self) -> int | None:
        return self.timed_start if self.timed_start is not None else self.any_start

    @property
    def end(self) -> int | None:
        return self.timed_end if self.timed_end is not None else self.any_end


_LIST_FIELDS = tuple(f.name for f in fields(ExamState) if f.name in ("series_descriptions", "series", "coils"))


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def fold(state: ExamState | None, event: InstanceEvent, wall_now: float) -> tuple[ExamState, bool]:
    """Fold one instance into its exam. Returns (state, changed); an instance already counted changes nothing."""
    if state is None:
        state = ExamState(exam_key=event.study_pseudonym, site_id=event.site_id)
    h = instance_hash(event.event_id)
    if h in state.seen:
        return state, False
    state.seen.add(h)
    state.seen_tail = base64.b64encode(base64.b64decode(state.seen_tail) + h).decode("ascii")
    state.instance_count += 1
    is_image = (event.modality or "").upper() not in NON_IMAGE_MODALITIES

    # device and patient context: the first image wins over SRs, which a dose reporter may have created
    if state.device_id is None or (is_image and not state.has_image):
        state.device_id = event.device_id
        state.calling_ae = event.calling_ae
        state.modality = event.modality
        state.manufacturer = event.manufacturer
        state.model = event.model
        state.station_name = event.station_name
        state.device_serial = event.device_serial
        state.edge_id = event.edge_id
    state.has_image = state.has_image or is_image
    state.modality = exam_modality(state.modality, event.dose_report, state.has_image)  # report-only: not "SR"
    for attr in (
        "study_description",
        "requested_procedure_description",
        "protocol_name",
        "body_part",
        "patient_pseudonym",
        "accession_pseudonym",
        "accession_token",
        "patient_age_years",
        "patient_sex",
        "patient_weight_kg",
        "patient_height_m",
    ):
        if getattr(state, attr) is None and getattr(event, attr) is not None:
            setattr(state, attr, getattr(event, attr))
    state.not_patient = state.not_patient or event.not_patient
    if event.series_description and event.series_description not in state.series_descriptions:
        if len(state.series_descriptions) < 32:
            state.series_descriptions.append(event.series_description)
    if event.series_pseudonym and event.series_pseudonym not in state.series:
        state.series.append(event.series_pseudonym)

    t = micros(event_time(event))
    state.any_start, state.any_end = _min(state.any_start, t), _max(state.any_end, t)
    if is_timing_instance(event):
        state.timed_start, state.timed_end = _min(state.timed_start, t), _max(state.timed_end, t)
    state.study_datetime = state.study_datetime or micros(event.study_datetime_utc)
    state.pps_start = _min(state.pps_start, micros(event.pps_start_utc))
    state.pps_end = _max(state.pps_end, micros(event.pps_end_utc))
    received = micros(event.received_at)
    state.first_received = _min(state.first_received, received)
    state.last_received = _max(state.last_received, received)
    if event.mr_receive_coil and event.mr_receive_coil not in state.coils:
        state.coils.append(event.mr_receive_coil)
    state.field_strength = state.field_strength or event.mr_field_strength_t
    state.has_dose_report = state.has_dose_report or event.dose_report is not None
    state.last_update_wall = wall_now
    if state.status == "complete":
        state.status = "in_progress"  # a late instance reopens the exam; its next publication bumps the version
    return state, True


def should_close(
    state: ExamState, *, device_clock_us: int | None, wall_now: float, quiet_s: float, idle_s: float
) -> bool:
    """Complete after `quiet_s` of event time on its device, or `idle_s` of processing time without an instance."""
    if state.status == "complete":
        return False
    end = state.end
    if device_clock_us is not None and end is not None and device_clock_us - end >= quiet_s * 1_000_000:
        return True
    return wall_now - state.last_update_wall >= idle_s


def publish(state: ExamState, status: str, now: datetime) -> tuple[ExamState, Exam]:
    """Bump the version and produce the exam as published. Replaying the same input yields the same versions."""
    state.version += 1
    state.status = status
    return state, as_exam(state, now)


def as_exam(state: ExamState, now: datetime) -> Exam:
    """The exam as of its current version and status (again after a crash lost a publication)."""
    status = state.status
    start, end = from_micros(state.start), from_micros(state.end)
    return Exam(
        exam_key=state.exam_key,
        site_id=state.site_id,
        version=state.version,
        status=status,
        updated_at=now,
        edge_id=state.edge_id,
        device_id=state.device_id,
        calling_ae=state.calling_ae,
        modality=state.modality,
        manufacturer=state.manufacturer,
        model=state.model,
        station_name=state.station_name,
        device_serial=state.device_serial,
        study_description=state.study_description,
        requested_procedure_description=state.requested_procedure_description,
        protocol_name=state.protocol_name,
        body_part=state.body_part,
        series_descriptions=tuple(state.series_descriptions),
        patient_pseudonym=state.patient_pseudonym,
        accession_pseudonym=state.accession_pseudonym,
        accession_token=state.accession_token,
        patient_age_years=state.patient_age_years,
        patient_sex=state.patient_sex,
        patient_weight_kg=state.patient_weight_kg,
        patient_height_m=state.patient_height_m,
        not_patient=state.not_patient,
        start_utc=start,
        end_utc=end,
        duration_s=(end - start).total_seconds() if start and end else None,
        study_datetime_utc=from_micros(state.study_datetime),
        pps_start_utc=from_micros(state.pps_start),
        pps_end_utc=from_micros(state.pps_end),
        series_count=len(state.series),
        instance_count=state.instance_count,
        first_received_at=from_micros(state.first_received),
        last_received_at=from_micros(state.last_received),
        mr_receive_coils=tuple(state.coils),
        mr_field_strength_t=state.field_strength,
        has_dose_report=state.has_dose_report,
    )
