"""Event dataclasses → row tuples, in the column order of each table (``migrations/0001_base.sql`` and later). Pure.

Flattening: ``exposure.<f>`` → column ``exposure_<f>``; ``dose_report.<f>`` and ``dose_report.totals.<f>`` →
``dose_<f>``; ``dose_event_count`` is the number of events the report carries; each event of a report is a row of
``irradiation_events``. Tuples become lists (ClickHouse arrays). Column lists are written out rather than derived
from the dataclasses: a new event field must not break inserts before a migration adds its column; the unit test
``test_every_field_has_a_column`` says when one is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from schemas.events import (
    DeviceKpi,
    DoseAlert,
    DrlValue,
    EdgeHeartbeat,
    Exam,
    ExamDose,
    ExamTiming,
    InstanceEvent,
    IrradiationEvent,
    WorkflowEvent,
)
from sinks.errors import RowError

Row = tuple[Any, ...]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # partition time of an instance without any clinical time

INSTANCE_FIELDS: tuple[str, ...] = (
    "event_id", "site_id", "edge_id", "received_at", "calling_ae", "sop_class_uid", "transfer_syntax_uid",
    "instance_pseudonym", "study_pseudonym", "series_pseudonym", "patient_pseudonym", "accession_pseudonym",
    "accession_token", "device_id", "modality", "manufacturer", "model", "station_name", "device_serial",
    "software_versions", "image_type", "series_number", "instance_number", "patient_age_years", "patient_sex",
    "patient_weight_kg", "patient_height_m", "not_patient", "study_description", "series_description",
    "protocol_name", "requested_procedure_description", "performed_procedure_step_description", "body_part",
    "view_position", "laterality", "study_datetime_utc", "series_datetime_utc", "acquisition_datetime_utc",
    "content_datetime_utc", "pps_start_utc", "pps_end_utc", "mr_receive_coil", "mr_transmit_coil",
    "mr_field_strength_t", "number_of_frames",
)  # fmt: skip
EXPOSURE_FIELDS: tuple[str, ...] = (
    "kvp", "tube_current_ma", "exposure_time_ms", "exposure_mas", "ctdivol_mgy", "ctdi_phantom", "dap_gy_cm2",
    "exposure_index", "target_exposure_index", "deviation_index", "entrance_dose_mgy", "organ_dose_mgy",
    "organ_exposed", "fluoro_time_s", "water_equivalent_diameter_mm", "irradiation_event_pseudonym",
)  # fmt: skip
DOSE_REPORT_FIELDS: tuple[str, ...] = (
    "kind", "template_id", "procedure_reported", "scope", "completion_flag", "device_role", "start_utc", "end_utc",
)  # fmt: skip
DOSE_TOTALS_FIELDS: tuple[str, ...] = (
    "total_events", "ct_dlp_total_mgy_cm", "dap_total_gy_cm2", "fluoro_dap_total_gy_cm2",
    "acquisition_dap_total_gy_cm2", "dose_rp_total_mgy", "fluoro_time_total_s", "acquisition_time_total_s",
    "agd_left_mgy", "agd_right_mgy", "agd_both_mgy",
)  # fmt: skip
# added by migration 0003 (InstanceEvent v2), so after dose_event_count: (report field, totals fields)
DOSE_V2_REPORT_FIELDS: tuple[str, ...] = ("acquisition_device_type",)
DOSE_V2_TOTALS_FIELDS: tuple[str, ...] = ("fluoro_dose_rp_total_mgy", "acquisition_dose_rp_total_mgy")
INSTANCE_COLUMNS: tuple[str, ...] = (
    *INSTANCE_FIELDS,
    "event_time",
    *(f"exposure_{f}" for f in EXPOSURE_FIELDS),
    *(f"dose_{f}" for f in DOSE_REPORT_FIELDS),
    *(f"dose_{f}" for f in DOSE_TOTALS_FIELDS),
    "dose_event_count",
    *(f"dose_{f}" for f in (*DOSE_V2_REPORT_FIELDS, *DOSE_V2_TOTALS_FIELDS)),
)

IRRADIATION_CONTEXT: tuple[str, ...] = (
    "site_id", "study_pseudonym", "event_pseudonym", "received_at", "event_time", "event_id", "edge_id",
    "instance_pseudonym", "patient_pseudonym", "accession_pseudonym", "device_id", "modality", "manufacturer",
    "model", "station_name", "not_patient", "dose_kind",
)  # fmt: skip
IRRADIATION_FIELDS: tuple[str, ...] = (
    "datetime_started_utc", "acquisition_protocol", "target_region_code", "target_region", "acquisition_type",
    "event_type", "acquisition_plane", "laterality", "ctdivol_mgy", "dlp_mgy_cm", "ctdi_phantom",
    "scanning_length_mm", "exposure_time_s", "pitch", "kvp", "tube_current_ma", "ssde_mgy",
    "water_equivalent_diameter_mm", "dap_gy_cm2", "dose_rp_mgy", "entrance_exposure_mgy", "irradiation_duration_s",
    "agd_mgy", "exposure_index", "target_exposure_index", "deviation_index", "exposure_mas",
)  # fmt: skip
IRRADIATION_COLUMNS: tuple[str, ...] = (*IRRADIATION_CONTEXT, *IRRADIATION_FIELDS)

EXAM_COLUMNS: tuple[str, ...] = (
    "exam_key", "site_id", "version", "status", "updated_at", "edge_id", "device_id", "calling_ae", "modality",
    "manufacturer", "model", "station_name", "device_serial", "study_description", "requested_procedure_description",
    "protocol_name", "body_part", "series_descriptions", "patient_pseudonym", "accession_pseudonym",
    "accession_token", "patient_age_years", "patient_sex", "patient_weight_kg", "patient_height_m", "not_patient",
    "start_utc", "end_utc", "duration_s", "study_datetime_utc", "pps_start_utc", "pps_end_utc", "series_count",
    "instance_count", "first_received_at", "last_received_at", "mr_receive_coils", "mr_field_strength_t",
    "has_dose_report", "exam_type", "exam_type_rule", "exam_type_confidence", "unmapped_hash",
)  # fmt: skip

EDGE_HEALTH_COLUMNS: tuple[str, ...] = (
    "site_id", "edge_id", "at", "started_at", "received", "produced", "spooled", "drained", "ignored", "rejected",
    "out_of_resources", "spool_pending", "spool_bytes", "kafka_ok",
)  # fmt: skip

def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# These tables mirror their event one to one (migrations/0002_dose_utilization.sql).
FLAT_TABLES: dict[type, str] = {
    ExamDose: "exam_dose",
    DoseAlert: "dose_alerts",
    DeviceKpi: "device_kpis",
    ExamTiming: "exam_timing",
    WorkflowEvent: "workflow_events",
    DrlValue: "drl_values",
}

# table name → its columns, in insert order
COLUMNS: dict[str, tuple[str, ...]] = {
    "instances": INSTANCE_COLUMNS,
    "irradiation_events": IRRADIATION_COLUMNS,
    "exams": EXAM_COLUMNS,
    "edge_health": EDGE_HEALTH_COLUMNS,
    **{table: _fields(cls) for cls, table in FLAT_TABLES.items()},
}


def _cell(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def event_time(ev: InstanceEvent) -> datetime:
    """Clinical time of an instance, the same on every resend (unlike ``received_at``): the partition time."""
    for t in (ev.acquisition_datetime_utc, ev.content_datetime_utc, ev.series_datetime_utc, ev.study_datetime_utc):
        if t is not None:
            return t
    return EPOCH


# attrgetter reads many fields in C: it halves the cost of a ~100-column row (measured by sinks/bench.py)
_instance_fields = attrgetter(*INSTANCE_FIELDS)
_exposure_fields = attrgetter(*EXPOSURE_FIELDS)
_report_fields = attrgetter(*DOSE_REPORT_FIELDS)
_totals_fields = attrgetter(*DOSE_TOTALS_FIELDS)
_IMAGE_TYPE = INSTANCE_FIELDS.index("image_type")
_NO_EXPOSURE = (None,) * len(EXPOSURE_FIELDS)
_NO_REPORT = (
    (None,) * (len(DOSE_REPORT_FIELDS) + len(DOSE_TOTALS_FIELDS)) + (0,)
    + (None,) * (len(DOSE_V2_REPORT_FIELDS) + len(DOSE_V2_TOTALS_FIELDS))
)


def instance_row(ev: InstanceEvent) -> Row:
    fields = list(_instance_fields(ev))
    fields[_IMAGE_TYPE] = list(fields[_IMAGE_TYPE])  # the only tuple field: an Array column
    exposure, report = ev.exposure, ev.dose_report
    dose = (
        (
            *_report_fields(report), *_totals_fields(report.totals), len(report.events),
            *(getattr(report, f) for f in DOSE_V2_REPORT_FIELDS),
            *(getattr(report.totals, f) for f in DOSE_V2_TOTALS_FIELDS),
        )
        if report is not None
        else _NO_REPORT
    )
    return (
        *fields,
        event_time(ev),
        *(_exposure_fields(exposure) if exposure is not None else _NO_EXPOSURE),
        *dose,
    )


def irradiation_time(ev: InstanceEvent, event: IrradiationEvent) -> datetime:
    """Partition time of an irradiation event: its own start, else the study's time (same in every report copy)."""
    if event.datetime_started_utc is not None:
        return event.datetime_started_utc
    if ev.study_datetime_utc is not None:
        return ev.study_datetime_utc
    return event_time(ev)


def irradiation_rows(ev: InstanceEvent) -> list[Row]:
    """One row per irradiation event of the instance's dose report (none without a report)."""
    report = ev.dose_report
    if report is None:
        return []
    return [
        (
            ev.site_id,
            ev.study_pseudonym,
            event.event_pseudonym,
            ev.received_at,
            irradiation_time(ev, event),
            ev.event_id,
            ev.edge_id,
            ev.instance_pseudonym,
            ev.patient_pseudonym,
            ev.accession_pseudonym,
            ev.device_id,
            ev.modality,
            ev.manufacturer,
            ev.model,
            ev.station_name,
            ev.not_patient,
            report.kind,
            *(getattr(event, f) for f in IRRADIATION_FIELDS),
        )
        for event in report.events
    ]


def exam_row(exam: Exam) -> Row:
    if exam.version < 0:
        raise RowError(f"exam version {exam.version} < 0; versions count up from 1")  # UInt64 column
    return tuple(_cell(getattr(exam, c)) for c in EXAM_COLUMNS)


def edge_health_row(hb: EdgeHeartbeat) -> Row:
    return tuple(getattr(hb, c) for c in EDGE_HEALTH_COLUMNS)


def rows_for(obj: object) -> Iterable[tuple[str, list[Row]]]:
    """(table, rows) pairs one decoded event becomes; unknown classes become nothing."""
    if isinstance(obj, InstanceEvent):
        yield "instances", [instance_row(obj)]
        extra = irradiation_rows(obj)
        if extra:
            yield "irradiation_events", extra
    elif isinstance(obj, Exam):
        yield "exams", [exam_row(obj)]
    elif isinstance(obj, EdgeHeartbeat):
        yield "edge_health", [edge_health_row(obj)]
    elif (table := FLAT_TABLES.get(type(obj))) is not None:
        yield table, [tuple(_cell(getattr(obj, c)) for c in COLUMNS[table])]
