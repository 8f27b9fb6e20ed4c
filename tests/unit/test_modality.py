"""The exam modality of report-only exams: from the dose report's template, procedure, device type and events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.events import AccumulatedDose, DoseReport, InstanceEvent, IrradiationEvent
from streams.dose import exam_dose, fold_dose
from streams.exams import fold
from streams.modality import exam_modality, report_modality
from tests.unit.test_dose_agg import _sample_event

T0 = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
RDSR = "1.2.840.10008.5.1.4.1.1.88.67"


def sr(name: str, report: DoseReport, *, modality: str = "SR", sop: str = RDSR) -> InstanceEvent:
    return InstanceEvent(
        event_id=f"ev-{name}", site_id="s", edge_id="e", received_at=T0, calling_ae="MOD", sop_class_uid=sop,
        transfer_syntax_uid="1.2.840.10008.1.2.1", instance_pseudonym=f"i-{name}", study_pseudonym="study",
        modality=modality, dose_report=report, device_id="dev",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CT-RDSR-Siemens_Flash-TAP-SS.dcm", "CT"),  # TID 10011
        ("CT-ESR-GE_VCT.dcm", "CT"),  # Enhanced SR, still the CT template
        ("RF-RDSR-Siemens-Zee.dcm", "RF"),  # fluoroscopy events and Total Fluoro Time 28 s
        ("RF-RDSR-Philips_Allura.dcm", "RF"),
        ("DX-RDSR-Canon_CXDI.dcm", "DX"),  # projection, one stationary acquisition, no fluoroscopy
        ("MG-RDSR-Hologic_2D.dcm", "MG"),  # procedure reported: mammography
    ],
)
def test_report_only_samples_get_the_modality_of_their_device(samples_dir: Path, name: str, expected: str) -> None:
    event = _sample_event(samples_dir, name)
    assert event.modality == "SR"
    state, _ = fold(None, event, 0.0)
    assert state.modality == expected
    dose_state, _ = fold_dose(None, event)
    assert exam_dose(dose_state).modality == expected


def test_projection_rules_in_order() -> None:
    assert report_modality(DoseReport(kind="PROJECTION")) == "DX"
    assert report_modality(DoseReport(kind="PROJECTION", acquisition_device_type="CASSETTE")) == "CR"
    assert report_modality(DoseReport(kind="PROJECTION", acquisition_device_type="FLUORO_GUIDED")) == "RF"
    fluoro_time = DoseReport(kind="PROJECTION", totals=AccumulatedDose(fluoro_time_total_s=0.0, dap_total_gy_cm2=1))
    assert report_modality(fluoro_time) == "DX"  # a zero fluoro total is no fluoroscopy
    agd_event = DoseReport(kind="PROJECTION", events=(IrradiationEvent(event_pseudonym="e", agd_mgy=1.2),))
    assert report_modality(agd_event) == "MG"


def test_dual_unit_dx_then_rf_report_is_rf_and_an_image_always_wins() -> None:
    dx = DoseReport(kind="PROJECTION", events=(IrradiationEvent(event_pseudonym="a", event_type="STATIONARY"),))
    rf = DoseReport(kind="PROJECTION", events=(IrradiationEvent(event_pseudonym="b", event_type="FLUOROSCOPY"),))
    state, _ = fold(None, sr("dx", dx), 0.0)
    assert state.modality == "DX"
    state, _ = fold(state, sr("rf", rf), 0.0)
    assert state.modality == "RF"
    state, _ = fold(state, sr("dx2", dx), 0.0)
    assert state.modality == "RF"  # RF before DX whatever the order
    image = InstanceEvent(
        event_id="ev-img", site_id="s", edge_id="e", received_at=T0, calling_ae="MOD",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
        instance_pseudonym="i-img", study_pseudonym="study", modality="DX", device_id="dev",
    )
    state, _ = fold(state, image, 0.0)
    assert state.modality == "DX"  # the device's own image says DX
    assert exam_modality("DX", rf, has_image=True) == "DX"


def test_a_report_only_ct_exam_is_a_ct_exam_all_the_way_to_its_alert(samples_dir: Path) -> None:
    from streams.dose_events import alerts_for, classify_exam, exam_dose_event, with_exam_type
    from streams.drl import load_drls
    from streams.exams import publish
    from streams.examtypes import load_rules

    event = _sample_event(samples_dir, "CT-RDSR-Siemens_Flash-TAP-SS.dcm")  # the device sent only its RDSR
    state, _ = fold(None, event, 0.0)
    _, exam = publish(state, "complete", T0)
    dose = exam_dose(fold_dose(None, event)[0])
    rules = load_rules()
    exam = with_exam_type(exam, classify_exam(rules, exam, dose))
    assert (exam.modality, exam.exam_type) == ("CT", "CT_CHEST_ABDOMEN_PELVIS")
    assert exam_dose_event(exam, dose).modality == "CT"  # so "CT within DRL today" counts it
    [alert] = alerts_for(exam, dose, rules, load_drls(), T0)
    assert (alert.modality, alert.quantity, alert.value, alert.drl_value) == ("CT", "DLP", pytest.approx(724.52), 660)
