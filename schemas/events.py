"""The events that cross Kafka, as frozen dataclasses.

Units are part of every field name (``ctdivol_mgy``, ``dlp_mgy_cm``, ``dap_gy_cm2``): a value is converted to that
unit once, where it is read, and never again. Times are timezone-aware UTC ``datetime``s.
Avro records appear only in ``schemas/codec.py``; everything else handles these classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Exposure:
    """Exposure and dose attributes carried by one image header (all optional)."""

    kvp: float | None = None
    tube_current_ma: float | None = None
    exposure_time_ms: float | None = None
    exposure_mas: float | None = None
    ctdivol_mgy: float | None = None
    ctdi_phantom: str | None = None  # "HEAD16" | "BODY32"
    dap_gy_cm2: float | None = None
    exposure_index: float | None = None
    target_exposure_index: float | None = None
    deviation_index: float | None = None
    entrance_dose_mgy: float | None = None
    organ_dose_mgy: float | None = None  # mammography AGD when OrganExposed is BREAST
    organ_exposed: str | None = None
    fluoro_time_s: float | None = None
    water_equivalent_diameter_mm: float | None = None
    irradiation_event_pseudonym: str | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in dataclasses.astuple(self))


@dataclass(frozen=True, slots=True)
class IrradiationEvent:
    """One continuous exposure from a dose report (TID 10013 CT, or TID 10003 projection X-ray)."""

    event_pseudonym: str  # keyed pseudonym of the Irradiation Event UID: dedupes a report sent twice
    datetime_started_utc: datetime | None = None
    acquisition_protocol: str | None = None  # scrubbed free text
    target_region_code: str | None = None  # "CodeValue^Scheme"
    target_region: str | None = None  # code meaning
    acquisition_type: str | None = None  # CT: SPIRAL | SEQUENCED | CONSTANT_ANGLE | STATIONARY | FREE | CONE_BEAM
    event_type: str | None = None  # projection: STATIONARY | FLUOROSCOPY | ROTATIONAL | ...
    acquisition_plane: str | None = None  # projection: SINGLE_PLANE | PLANE_A | PLANE_B
    laterality: str | None = None  # mammography: L | R | B
    ctdivol_mgy: float | None = None
    dlp_mgy_cm: float | None = None
    ctdi_phantom: str | None = None  # "HEAD16" | "BODY32"
    scanning_length_mm: float | None = None
    exposure_time_s: float | None = None
    pitch: float | None = None
    kvp: float | None = None
    tube_current_ma: float | None = None
    ssde_mgy: float | None = None
    water_equivalent_diameter_mm: float | None = None
    dap_gy_cm2: float | None = None
    dose_rp_mgy: float | None = None
    entrance_exposure_mgy: float | None = None
    irradiation_duration_s: float | None = None  # fluoroscopy beam-on time of this event
    agd_mgy: float | None = None
    exposure_index: float | None = None
    target_exposure_index: float | None = None
    deviation_index: float | None = None
    exposure_mas: float | None = None  # per-event tube current-time product (113736), v2


@dataclass(frozen=True, slots=True)
class AccumulatedDose:
    """Accumulated totals of one dose report (TID 10012 CT, TID 10002 projection, per plane summed)."""

    total_events: int | None = None
    ct_dlp_total_mgy_cm: float | None = None
    dap_total_gy_cm2: float | None = None
    fluoro_dap_total_gy_cm2: float | None = None
    acquisition_dap_total_gy_cm2: float | None = None
    dose_rp_total_mgy: float | None = None
    fluoro_time_total_s: float | None = None
    acquisition_time_total_s: float | None = None
    agd_left_mgy: float | None = None
    agd_right_mgy: float | None = None
    agd_both_mgy: float | None = None
    fluoro_dose_rp_total_mgy: float | None = None  # 113728, v2
    acquisition_dose_rp_total_mgy: float | None = None  # 113729, v2


@dataclass(frozen=True, slots=True)
class DoseReport:
    """The content of a radiation dose SR (recognised by document title, not SOP class)."""

    kind: str  # "CT" (TID 10011) | "PROJECTION" (TID 10001)
    template_id: str | None = None
    procedure_reported: str | None = None  # "CodeValue^Scheme"
    scope: str | None = None  # STUDY | PPS | SERIES
    completion_flag: str | None = None  # COMPLETE | PARTIAL
    device_role: str | None = None
    start_utc: datetime | None = None
    end_utc: datetime | None = None
    totals: AccumulatedDose = field(default_factory=AccumulatedDose)
    events: tuple[IrradiationEvent, ...] = ()
    acquisition_device_type: str | None = None  # CID 10032: FLUORO_GUIDED | INTEGRATED | CASSETTE | CT, v2


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    """One received DICOM object, de-identified: the only shape in which an instance leaves the edge."""

    event_id: str  # deterministic from the instance pseudonym: a resend is the same event
    site_id: str
    edge_id: str
    received_at: datetime
    calling_ae: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_pseudonym: str
    study_pseudonym: str
    series_pseudonym: str | None = None
    patient_pseudonym: str | None = None
    accession_pseudonym: str | None = None  # joins HL7 order/arrival events; not reversible
    accession_token: str | None = None  # AES-GCM; only `radpulse reveal` at the hospital opens it
    device_id: str | None = None  # keyed pseudonym of manufacturer|model|serial|station
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    station_name: str | None = None
    device_serial: str | None = None
    software_versions: str | None = None
    image_type: tuple[str, ...] = ()
    series_number: int | None = None
    instance_number: int | None = None
    patient_age_years: int | None = None
    patient_sex: str | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    not_patient: bool = False  # QA / phantom / test patient, decided at the edge
    study_description: str | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    requested_procedure_description: str | None = None
    performed_procedure_step_description: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    study_datetime_utc: datetime | None = None
    series_datetime_utc: datetime | None = None
    acquisition_datetime_utc: datetime | None = None
    content_datetime_utc: datetime | None = None
    pps_start_utc: datetime | None = None
    pps_end_utc: datetime | None = None
    mr_receive_coil: str | None = None
    mr_transmit_coil: str | None = None
    mr_field_strength_t: float | None = None
    number_of_frames: int | None = None
    exposure: Exposure | None = None
    dose_report: DoseReport | None = None

    def replace(self, **changes: Any) -> InstanceEvent:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class EdgeHeartbeat:
    """An edge's counters at one moment (cumulative since its start), for the pipeline-health dashboard."""

    site_id: str
    edge_id: str
    at: datetime
    started_at: datetime
    received: int
    produced: int
    spooled: int
    drained: int
    ignored: int
    rejected: int
    out_of_resources: int
    spool_pending: int
    spool_bytes: int
    kafka_ok: bool


@dataclass(frozen=True, slots=True)
class Exam:
    """One exam (a study on one device) as assembled by the streams; each publication bumps ``version``."""

    exam_key: str  # the study pseudonym
    site_id: str
    version: int
    status: str  # "in_progress" | "complete"
    updated_at: datetime  # processing time of this version
    edge_id: str | None = None
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
    series_descriptions: tuple[str, ...] = ()
    patient_pseudonym: str | None = None
    accession_pseudonym: str | None = None
    accession_token: str | None = None
    patient_age_years: int | None = None
    patient_sex: str | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    not_patient: bool = False
    start_utc: datetime | None = None
    end_utc: datetime | None = None
    duration_s: float | None = None
    study_datetime_utc: datetime | None = None
    pps_start_utc: datetime | None = None
    pps_end_utc: datetime | None = None
    series_count: int = 0
    instance_count: int = 0
    first_received_at: datetime | None = None
    last_received_at: datetime | None = None
    mr_receive_coils: tuple[str, ...] = ()  # in order of first use
    mr_field_strength_t: float | None = None
    has_dose_report: bool = False
    # v2: the standard exam type the mapping rules gave this exam
    exam_type: str | None = None
    exam_type_rule: str | None = None
    exam_type_confidence: float | None = None
    unmapped_hash: str | None = None  # hash of the normalised text when no rule matched (never the text)


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """A timing fact about an order or exam from MPPS or HL7 (arrival, scheduling, ordering, procedure step).

    Linked to exams by ``accession_pseudonym`` (HL7, MPPS) or ``study_pseudonym`` (MPPS); identifiers are
    pseudonymised exactly like instance identifiers, with the same keys and labels.
    """

    event_id: str  # deterministic from source + message identity: a resend is the same event
    site_id: str
    edge_id: str
    source: str  # "MPPS" | "HL7"
    kind: str  # arrival | registration | scheduled | ordered | order_status | cancelled | no_show
    #            | pps_in_progress | pps_completed | pps_discontinued
    received_at: datetime
    occurred_at: datetime | None = None  # when it happened (event time, UTC)
    accession_pseudonym: str | None = None
    accession_token: str | None = None
    study_pseudonym: str | None = None
    patient_pseudonym: str | None = None
    pps_pseudonym: str | None = None  # MPPS SOP Instance, pseudonymised
    message_type: str | None = None  # e.g. "ADT^A10", "ORM^O01", "SIU^S12", "N-CREATE", "N-SET"
    order_status: str | None = None  # HL7 ORC-5 (SC, IP, CM, CA, DC, HD, A)
    scheduled_start_utc: datetime | None = None
    order_time_utc: datetime | None = None
    pps_start_utc: datetime | None = None
    pps_end_utc: datetime | None = None
    modality: str | None = None
    station_name: str | None = None
    station_ae: str | None = None
    calling_ae: str | None = None
    procedure_description: str | None = None  # scrubbed


@dataclass(frozen=True, slots=True)
class ExamDose:
    """The dose of one completed exam with its standard exam type, published with the exam's version."""

    exam_key: str
    site_id: str
    version: int
    updated_at: datetime
    source: str  # "REPORT" | "HEADER" | "NONE"
    device_id: str | None = None
    station_name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    modality: str | None = None
    exam_type: str = "UNMAPPED"
    exam_type_rule: str | None = None
    not_patient: bool = False
    start_utc: datetime | None = None
    patient_age_years: int | None = None
    patient_sex: str | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    protocol: str | None = None  # scrubbed acquisition protocol or protocol name
    report_count: int = 0
    event_count: int = 0
    dlp_total_mgy_cm: float | None = None
    dlp_phantom: str | None = None
    ctdivol_max_mgy: float | None = None
    ctdivol_mean_mgy: float | None = None
    ctdivol_phantom: str | None = None
    ssde_mgy: float | None = None
    water_equivalent_diameter_mm: float | None = None
    dap_total_gy_cm2: float | None = None
    fluoro_time_s: float | None = None
    dose_rp_mgy: float | None = None
    entrance_dose_mgy: float | None = None
    agd_left_mgy: float | None = None
    agd_right_mgy: float | None = None
    agd_max_breast_mgy: float | None = None
    exposure_index_mean: float | None = None
    deviation_index_mean: float | None = None
    fluoro_dap_gy_cm2: float | None = None  # v2: fluoroscopy vs acquisition split of DAP and Dose (RP)
    acquisition_dap_gy_cm2: float | None = None
    fluoro_dose_rp_mgy: float | None = None
    acquisition_dose_rp_mgy: float | None = None


@dataclass(frozen=True, slots=True)
class DoseAlert:
    """A completed exam whose dose quantity exceeds its DRL."""

    alert_id: str  # deterministic from exam, quantity and DRL table: a replay is the same alert
    exam_key: str
    site_id: str
    exam_version: int
    created_at: datetime
    quantity: str  # CTDIVOL | DLP | DAP | AGD | ...
    value: float
    unit: str
    drl_value: float
    ratio: float
    drl_table: str
    drl_source: str
    exam_type: str
    device_id: str | None = None
    station_name: str | None = None
    modality: str | None = None
    phantom: str | None = None
    protocol: str | None = None
    exam_start_utc: datetime | None = None
    patient_age_years: int | None = None
    patient_sex: str | None = None
    patient_weight_kg: float | None = None
    water_equivalent_diameter_mm: float | None = None
    ssde_mgy: float | None = None
    accession_token: str | None = None  # so a reviewer can `radpulse reveal` it at the hospital
    not_patient: bool = False


@dataclass(frozen=True, slots=True)
class DeviceKpi:
    """Utilization of one device over one local day or hour, recomputed from the latest exams (versioned)."""

    site_id: str
    device: str  # station name, else device id
    grain: str  # "day" | "hour"
    local_date: date
    hour_local: int  # -1 for the day grain
    version: int  # processing time in µs: a later recomputation wins
    updated_at: datetime
    modality: str | None = None
    exams: int = 0
    qa_exams: int = 0
    discontinued_exams: int = 0
    busy_minutes: float = 0.0
    busy_outside_hours_minutes: float = 0.0
    operating_minutes: float = 0.0
    idle_minutes: float = 0.0
    changeover_minutes: float = 0.0
    utilization_pct: float | None = None
    changeover_p50_s: float | None = None
    changeover_p90_s: float | None = None
    changeover_coil_change_p50_s: float | None = None
    changeover_coil_change_p90_s: float | None = None
    changeover_same_coil_p50_s: float | None = None
    changeover_same_coil_p90_s: float | None = None
    coil_changes: int = 0
    coil_batching_minutes_saved: float | None = None


@dataclass(frozen=True, slots=True)
class ExamTiming:
    """Per-exam timing for utilization and wait time: the interval used, changeover before it, and waits."""

    exam_key: str
    site_id: str
    version: int
    updated_at: datetime
    device: str
    modality: str | None = None
    exam_type: str | None = None
    local_date: date | None = None
    hour_local: int | None = None
    start_utc: datetime | None = None
    end_utc: datetime | None = None
    duration_s: float | None = None
    timing_source: str | None = None  # "MPPS" | "IMAGES"
    discontinued: bool = False
    not_patient: bool = False
    coil: str | None = None
    previous_coil: str | None = None
    changeover_s: float | None = None
    coil_changed: bool | None = None
    arrival_to_start_s: float | None = None
    arrival_kind: str | None = None
    order_to_start_s: float | None = None
    scheduled_delay_s: float | None = None


@dataclass(frozen=True, slots=True)
class DrlValue:
    """One diagnostic reference level in force, as the streams loaded it (for dashboards' DRL lines)."""

    table_id: str
    exam_type: str
    quantity: str
    value: float
    unit: str
    phantom: str
    per: str
    population: str
    percentile: str
    source: str
    year: int
    loaded_at: datetime
