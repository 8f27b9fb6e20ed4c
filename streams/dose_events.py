"""From an assembled exam and its dose state to the published ``ExamDose`` and ``DoseAlert`` events. Pure.

QA, phantom and test exams ("not a patient", flagged at the edge) still get an ``ExamDose`` — they stay visible as
their own category — but never a DRL comparison, an alert or a place in any statistic.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from schemas.events import DoseAlert, Exam, ExamDose
from streams import dose as dose_mod
from streams.drl import DrlTable, compare
from streams.examtypes import Classification, RuleSet, classify


def classify_exam(ruleset: RuleSet, exam: Exam, dose: dose_mod.ExamDose | None) -> Classification:
    return classify(
        ruleset,
        modality=exam.modality,
        study_description=exam.study_description,
        requested_procedure_description=exam.requested_procedure_description,
        protocol_name=exam.protocol_name,
        series_descriptions=exam.series_descriptions,
        body_part=exam.body_part,
        target_regions=dose.target_regions if dose is not None else (),
    )


def with_exam_type(exam: Exam, c: Classification) -> Exam:
    return dataclasses.replace(
        exam,
        exam_type=c.exam_type,
        exam_type_rule=c.rule_id,
        exam_type_confidence=c.confidence,
        unmapped_hash=c.normalised_hash if c.exam_type == "UNMAPPED" else None,
    )


def exam_dose_event(exam: Exam, dose: dose_mod.ExamDose) -> ExamDose:
    return ExamDose(
        exam_key=exam.exam_key,
        site_id=exam.site_id,
        version=exam.version,
        updated_at=exam.updated_at,
        source=dose.source,
        device_id=exam.device_id,
        station_name=exam.station_name,
        manufacturer=exam.manufacturer,
        model=exam.model,
        modality=exam.modality,
        exam_type=exam.exam_type or "UNMAPPED",
        exam_type_rule=exam.exam_type_rule,
        not_patient=exam.not_patient,
        start_utc=exam.start_utc,
        patient_age_years=exam.patient_age_years,
        patient_sex=exam.patient_sex,
        patient_weight_kg=exam.patient_weight_kg,
        patient_height_m=exam.patient_height_m,
        protocol=exam.protocol_name,
        report_count=dose.report_count,
        event_count=dose.report_event_count,
        dlp_total_mgy_cm=dose.dlp_total_mgy_cm,
        dlp_phantom=dose.dlp_phantom,
        ctdivol_max_mgy=dose.ctdivol_max_mgy,
        ctdivol_mean_mgy=dose.ctdivol_mean_mgy,
        ctdivol_phantom=dose.ctdivol_phantom,
        ssde_mgy=dose.ssde_mgy,
        water_equivalent_diameter_mm=dose.water_equivalent_diameter_mm,
        dap_total_gy_cm2=dose.dap_total_gy_cm2,
        fluoro_time_s=dose.fluoro_time_s,
        dose_rp_mgy=dose.dose_rp_mgy,
        entrance_dose_mgy=dose.entrance_dose_mgy,
        agd_left_mgy=dose.agd_left_mgy,
        agd_right_mgy=dose.agd_right_mgy,
        agd_max_breast_mgy=dose.agd_max_breast_mgy,
        exposure_index_mean=dose.exposure_index_mean,
        deviation_index_mean=dose.deviation_index_mean,
        fluoro_dap_gy_cm2=dose.fluoro_dap_gy_cm2,
        acquisition_dap_gy_cm2=dose.acquisition_dap_gy_cm2,
        fluoro_dose_rp_mgy=dose.fluoro_dose_rp_mgy,
        acquisition_dose_rp_mgy=dose.acquisition_dose_rp_mgy,
    )


def alerts_for(
    exam: Exam, dose: dose_mod.ExamDose, ruleset: RuleSet, table: DrlTable, now: datetime
) -> list[DoseAlert]:
    """One alert per quantity whose value exceeds (strictly) the DRL of the exam's type."""
    if exam.not_patient or exam.status != "complete" or not exam.exam_type or exam.exam_type == "UNMAPPED":
        return []
    drl_key = ruleset.drl_key(exam.exam_type)
    if not drl_key:
        return []
    alerts = []
    for c in compare(dose, drl_key, table):
        if not c.exceeds:
            continue
        identity = f"{exam.site_id}|{exam.exam_key}|{c.quantity}|{c.table_id}|{c.phantom or ''}"
        alerts.append(
            DoseAlert(
                alert_id=str(uuid.uuid5(uuid.NAMESPACE_OID, identity)),
                exam_key=exam.exam_key,
                site_id=exam.site_id,
                exam_version=exam.version,
                created_at=now,
                quantity=c.quantity,
                value=c.value,
                unit=c.unit,
                drl_value=c.drl_value,
                ratio=c.ratio,
                drl_table=c.table_id,
                drl_source=c.source,
                exam_type=exam.exam_type,
                device_id=exam.device_id,
                station_name=exam.station_name,
                modality=exam.modality,
                phantom=c.phantom,
                protocol=exam.protocol_name,
                exam_start_utc=exam.start_utc,
                patient_age_years=exam.patient_age_years,
                patient_sex=exam.patient_sex,
                patient_weight_kg=exam.patient_weight_kg,
                water_equivalent_diameter_mm=dose.water_equivalent_diameter_mm,
                ssde_mgy=dose.ssde_mgy,
                accession_token=exam.accession_token,
                not_patient=exam.not_patient,
            )
        )
    return alerts
