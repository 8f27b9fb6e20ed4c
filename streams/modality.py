"""The modality an exam was performed on, read from its dose report when no image says so. Pure.

A device that sends only its dose report (the common way a dose system is fed) labels the object ``SR``; the exam
is still a CT, DX, RF or MG exam. The report says which: the CT template is CT; a projection report is MG when it
reports mammography or glandular dose, RF when its acquisition device is fluoroscopy-guided or it holds any
fluoroscopy (event type, fluoro time, fluoro DAP), CR for a cassette-based device, else DX.
"""

from __future__ import annotations

from schemas.events import DoseReport

# procedure reported, as ``dose_sr`` writes it ("CodeValue^Scheme", legacy SRT folded onto SCT)
MAMMOGRAPHY_PROCEDURE = "71651007^SCT"
# when several reports of one exam disagree (a Siemens "dual" unit sends DX and RF), the first of these wins
PRECEDENCE = ("CT", "MG", "RF", "DX", "CR")
NON_IMAGE = frozenset({"SR", "KO", "PR", "OT", "DOC"})


def report_modality(report: DoseReport) -> str:
    """CT, MG, RF, CR or DX for one dose report (see the module docstring for the rules, in order)."""
    if report.kind == "CT" or report.acquisition_device_type == "CT":
        return "CT"
    totals = report.totals
    agd = (totals.agd_left_mgy, totals.agd_right_mgy, totals.agd_both_mgy)
    if report.procedure_reported == MAMMOGRAPHY_PROCEDURE or any(v is not None for v in agd):
        return "MG"
    if any(e.agd_mgy is not None for e in report.events):
        return "MG"
    if report.acquisition_device_type == "FLUORO_GUIDED":
        return "RF"
    fluoro_totals = (totals.fluoro_time_total_s, totals.fluoro_dap_total_gy_cm2, totals.fluoro_dose_rp_total_mgy)
    if any((v or 0.0) > 0 for v in fluoro_totals) or any(e.event_type == "FLUOROSCOPY" for e in report.events):
        return "RF"
    if report.acquisition_device_type == "CASSETTE":
        return "CR"
    return "DX"


def exam_modality(current: str | None, report: DoseReport | None, has_image: bool) -> str | None:
    """The exam's modality after one more instance: an image's modality stands; else the report's decides."""
    if has_image or report is None:
        return current
    derived = report_modality(report)
    if current is None or current.upper() in NON_IMAGE or current not in PRECEDENCE:
        return derived
    return min(current, derived, key=PRECEDENCE.index)
