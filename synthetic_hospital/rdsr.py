"""The exam's X-Ray Radiation Dose SR (TID 10011 for CT, TID 10001 for projection X-ray), built from the plan.

A CT dose SR has ~160 content items and costs ≈10–15 ms, mostly pydicom's ``Dataset()`` constructor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from synthetic_hospital.codes import Code, make_uid
from synthetic_hospital.dicom import (
    _MG_VIEW,
    _PHANTOM_CODE,
    _SHARED_CODES,
    INSTITUTION,
    RDSR_SOP_CLASS,
    _code,
    _common,
    _da,
    _ds,
    _dt,
    _Fast,
    _file_meta,
    _tm,
    ds_str,
)
from synthetic_hospital.exams import DoseEvent, PlannedExam

# ------------------------------------------------------------------------------------------------------------
# Radiation dose SRs
# ------------------------------------------------------------------------------------------------------------

DCM = "DCM"
_TITLE: Code = ("113701", DCM, "X-Ray Radiation Dose Report")


def _units(exam: PlannedExam) -> dict[str, Code]:
    odd = exam.device.nonucum_units  # Siemens writes non-UCUM "mGycm"/"Gym2"
    return {
        "mGy": ("mGy", "UCUM", "mGy"),
        "mGy.cm": ("mGycm" if odd else "mGy.cm", "UCUM", "mGy.cm"),
        "Gy.m2": ("Gym2" if odd else "Gy.m2", "UCUM", "Gy.m2"),
        "Gy": ("Gy", "UCUM", "Gy"),
        "s": ("s", "UCUM", "s"),
        "mm": ("mm", "UCUM", "mm"),
        "kV": ("kV", "UCUM", "kV"),
        "mA": ("mA", "UCUM", "mA"),
        "uA.s": ("uA.s", "UCUM", "uA.s"),
        "1": ("1", "UCUM", "no units"),
        "events": ("{events}", "UCUM", "events"),
        "ratio": ("{ratio}", "UCUM", "ratio"),
        "sources": ("{X-Ray sources}", "UCUM", "X-Ray sources"),
        "pulse/s": ("{pulse}/s", "UCUM", "pulse/s"),
    }


def _item(rel: str, value_type: str, concept: Code, **values: Any) -> Dataset:
    return _ds(RelationshipType=rel, ValueType=value_type, ConceptNameCodeSequence=[_code(concept)], **values)


def _with_children(values: dict[str, Any], children: Sequence[Dataset]) -> dict[str, Any]:
    if children:
        values["ContentSequence"] = list(children)
    return values


def _num(rel: str, concept: Code, value: float, unit: Code) -> Dataset:
    measured = _ds(MeasurementUnitsCodeSequence=[_code(unit)], NumericValue=ds_str(value))
    return _item(rel, "NUM", concept, MeasuredValueSequence=[measured])


def _coded(rel: str, concept: Code, value: Code, children: Sequence[Dataset] = ()) -> Dataset:
    return _item(rel, "CODE", concept, **_with_children({"ConceptCodeSequence": [_code(value)]}, children))


def _text(rel: str, concept: Code, value: str) -> Dataset:
    return _item(rel, "TEXT", concept, TextValue=value)


def _uidref(rel: str, concept: Code, uid: str, children: Sequence[Dataset] = ()) -> Dataset:
    return _item(rel, "UIDREF", concept, **_with_children({"UID": uid}, children))


def _datetime(rel: str, concept: Code, value: str) -> Dataset:
    return _item(rel, "DATETIME", concept, DateTime=value)


def _pname(rel: str, concept: Code, name: str, children: Sequence[Dataset] = ()) -> Dataset:
    return _item(rel, "PNAME", concept, **_with_children({"PersonName": name}, children))


def _container(rel: str, concept: Code, children: Sequence[Dataset]) -> Dataset:
    return _item(rel, "CONTAINER", concept, ContinuityOfContent="SEPARATE", ContentSequence=list(children))


def _observer_context(exam: PlannedExam) -> list[Dataset]:
    device = exam.device
    return [
        _coded("HAS OBS CONTEXT", ("121005", DCM, "Observer Type"), ("121006", DCM, "Person")),
        _pname("HAS OBS CONTEXT", ("121008", DCM, "Person Observer Name"), exam.operator),
        _coded("HAS OBS CONTEXT", ("121005", DCM, "Observer Type"), ("121007", DCM, "Device")),
        _uidref("HAS OBS CONTEXT", ("121012", DCM, "Device Observer UID"), make_uid("device", device.key)),
        _text("HAS OBS CONTEXT", ("121013", DCM, "Device Observer Name"), device.station_name),
        _text("HAS OBS CONTEXT", ("121014", DCM, "Device Observer Manufacturer"), device.manufacturer),
        _text("HAS OBS CONTEXT", ("121015", DCM, "Device Observer Model Name"), device.model),
        _text("HAS OBS CONTEXT", ("121016", DCM, "Device Observer Serial Number"), device.serial),
        _text("HAS OBS CONTEXT", ("121017", DCM, "Device Observer Physical Location During Observation"),
              f"{INSTITUTION}, {device.department}"),
    ]


def _scope(exam: PlannedExam) -> Dataset:
    return _coded("HAS OBS CONTEXT", ("113705", DCM, "Scope of Accumulation"), ("113014", DCM, "Study"),
                  [_uidref("HAS PROPERTIES", ("110180", DCM, "Study Instance UID"), exam.study_uid)])


def _procedure_reported(exam: PlannedExam) -> Dataset:
    legacy = exam.device.legacy_codes
    modality = exam.device.modality
    if modality == "CT":
        value: Code = ("P5-08000", "SRT", "Computed Tomography X-Ray") if legacy else (
            "77477000", "SCT", "Computed Tomography X-Ray")
    elif modality == "MG":
        value = ("P5-40010", "SRT", "Mammography") if legacy else ("71651007", "SCT", "Mammography")
    else:
        value = ("113704", DCM, "Projection X-Ray")
    intent = (("G-C0E8", "SRT", "Has Intent"), ("R-408C3", "SRT", "Diagnostic Intent")) if legacy else (
        ("363703001", "SCT", "Has Intent"), ("261004008", "SCT", "Diagnostic Intent"))
    return _coded("HAS CONCEPT MOD", ("121058", DCM, "Procedure reported"), value,
                  [_coded("HAS CONCEPT MOD", intent[0], intent[1])])


def _administering(exam: PlannedExam) -> Dataset:
    role = _coded("HAS PROPERTIES", ("113875", DCM, "Person Role in Procedure"),
                  ("113851", DCM, "Irradiation Administering"))
    return _pname("CONTAINS", ("113870", DCM, "Person Name"), exam.operator, [role])


def build_rdsr(exam: PlannedExam) -> Dataset:
    """The exam's X-Ray Radiation Dose SR: TID 10011 for CT, TID 10001 for projection X-ray.

    Equal code items inside the content tree are shared objects: copy the dataset before editing codes in place.
    """
    token = _SHARED_CODES.set({})
    try:
        return _build_rdsr(exam)
    finally:
        _SHARED_CODES.reset(token)


def _build_rdsr(exam: PlannedExam) -> Dataset:
    assert exam.rdsr_sop_uid is not None and exam.rdsr_series_uid is not None
    device = exam.device
    end_local = exam.local(exam.duration_s * 1_000_000)
    out = _common(exam, RDSR_SOP_CLASS, "SR")
    out.file_meta = _file_meta(exam, RDSR_SOP_CLASS, exam.rdsr_sop_uid)
    ds = _Fast(out)
    ds.SOPInstanceUID = exam.rdsr_sop_uid
    ds.InstanceCreationDate = _da(end_local)
    ds.InstanceCreationTime = _tm(end_local, False)
    ds.SeriesDate = _da(end_local)
    ds.SeriesTime = _tm(end_local, False)
    ds.ContentDate = _da(end_local)
    ds.ContentTime = _tm(end_local, False)
    ds.SeriesDescription = "Radiation Dose Information"
    ds.SeriesInstanceUID = exam.rdsr_series_uid
    ds.SeriesNumber = 997
    ds.InstanceNumber = 1
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = [_code((exam.exam_type.procedure_code, "99SIMRIS", exam.exam_type.label))]
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code(_TITLE)]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentTemplateSequence = [
        _ds(MappingResource="DCMR", TemplateIdentifier="10011" if device.modality == "CT" else "10001")]
    ds.ContentSequence = _ct_content(exam) if device.modality == "CT" else _projection_content(exam)
    return out


def _ct_content(exam: PlannedExam) -> list[Dataset]:
    u = _units(exam)
    legacy = exam.device.legacy_codes
    events = exam.dose_events
    tz = exam.device.sends_tz_offset
    first = exam.local(0)
    last = exam.local(exam.duration_s * 1_000_000)
    total = round(sum(e.dlp_mgy_cm or 0.0 for e in events), 2)
    items = [
        _procedure_reported(exam),
        *_observer_context(exam),
        _datetime("HAS OBS CONTEXT", ("113809", DCM, "Start of X-Ray Irradiation"), _dt(first, False, tz)),
        _datetime("HAS OBS CONTEXT", ("113810", DCM, "End of X-Ray Irradiation"), _dt(last, False, tz)),
        _scope(exam),
        _container("CONTAINS", ("113811", DCM, "CT Accumulated Dose Data"), [
            _num("CONTAINS", ("113812", DCM, "Total Number of Irradiation Events"), len(events), u["events"]),
            _num("CONTAINS", ("113813", DCM, "CT Dose Length Product Total"), total, u["mGy.cm"]),
        ]),
    ]
    for event in events:
        items.append(_ct_event(exam, event, u, legacy))
    items.append(_coded("CONTAINS", ("113854", DCM, "Source of Dose Information"),
                        ("113856", DCM, "Automated Data Collection")))
    return items


_CT_ACQ: dict[str, tuple[Code, Code]] = {  # (legacy, SNOMED CT era)
    "CONSTANT_ANGLE": (("113805", DCM, "Constant Angle Acquisition"),) * 2,
    "SPIRAL": (("P5-08001", "SRT", "Spiral Acquisition"), ("116152004", "SCT", "Spiral Acquisition")),
    "SEQUENCED": (("113804", DCM, "Sequenced Acquisition"),) * 2,
    "STATIONARY": (("113806", DCM, "Stationary Acquisition"),) * 2,
}


def _ct_event(exam: PlannedExam, e: DoseEvent, u: dict[str, Code], legacy: bool) -> Dataset:
    assert e.acquisition_type and e.ctdivol_mgy is not None and e.dlp_mgy_cm is not None and e.phantom
    params = [
        _num("CONTAINS", ("113824", DCM, "Exposure Time"), e.exposure_time_s or 0.0, u["s"]),
        _num("CONTAINS", ("113825", DCM, "Scanning Length"), e.scanning_length_mm or 0.0, u["mm"]),
        _num("CONTAINS", ("113826", DCM, "Nominal Single Collimation Width"), 0.6, u["mm"]),
        _num("CONTAINS", ("113827", DCM, "Nominal Total Collimation Width"),
             10.0 if e.acquisition_type == "STATIONARY" else 38.4, u["mm"]),
    ]
    if e.pitch is not None:
        params.append(_num("CONTAINS", ("113828", DCM, "Pitch Factor"), e.pitch, u["ratio"]))
    params.append(_num("CONTAINS", ("113823", DCM, "Number of X-Ray Sources"), 1, u["sources"]))
    params.append(_container("CONTAINS", ("113831", DCM, "CT X-Ray Source Parameters"), [
        _text("CONTAINS", ("113832", DCM, "Identification of the X-Ray Source"), "A"),
        _num("CONTAINS", ("113733", DCM, "KVP"), e.kvp or 120.0, u["kV"]),
        _num("CONTAINS", ("113833", DCM, "Maximum X-Ray Tube Current"), max(e.tube_current_ma or 0.0, 1.0) * 2,
             u["mA"]),
        _num("CONTAINS", ("113734", DCM, "X-Ray Tube Current"), e.tube_current_ma or 0.0, u["mA"]),
        _num("CONTAINS", ("113834", DCM, "Exposure Time per Rotation"), 0.5, u["s"]),
    ]))
    acq_code = _CT_ACQ[e.acquisition_type][0 if legacy else 1]
    return _container("CONTAINS", ("113819", DCM, "CT Acquisition"), [
        _text("CONTAINS", ("125203", DCM, "Acquisition Protocol"), e.protocol),
        _coded("CONTAINS", ("123014", DCM, "Target Region"), e.target_region),
        _coded("CONTAINS", ("113820", DCM, "CT Acquisition Type"), acq_code),
        _uidref("CONTAINS", ("113769", DCM, "Irradiation Event UID"), e.uid),
        _container("CONTAINS", ("113822", DCM, "CT Acquisition Parameters"), params),
        _container("CONTAINS", ("113829", DCM, "CT Dose"), [
            _num("CONTAINS", ("113830", DCM, "Mean CTDIvol"), e.ctdivol_mgy, u["mGy"]),
            _coded("CONTAINS", ("113835", DCM, "CTDIw Phantom Type"), _PHANTOM_CODE[e.phantom]),
            _num("CONTAINS", ("113838", DCM, "DLP"), e.dlp_mgy_cm, u["mGy.cm"]),
        ]),
        _administering(exam),
    ])


def _projection_content(exam: PlannedExam) -> list[Dataset]:
    u = _units(exam)
    modality = exam.device.modality
    events = exam.dose_events
    plane = _coded("HAS CONCEPT MOD", ("113764", DCM, "Acquisition Plane"), ("113622", DCM, "Single Plane"))
    ref_point = _coded("CONTAINS", ("113780", DCM, "Reference Point Definition"),
                       ("113860", DCM, "15cm from Isocenter toward Source"))
    accumulated: list[Dataset] = [plane]
    if modality == "MG":
        for side, code in (("L", ("T-04030", "SRT", "Left breast")), ("R", ("T-04020", "SRT", "Right breast"))):
            agd = [e.agd_mgy or 0.0 for e in events if e.laterality == side]
            if agd:
                item = _num("CONTAINS", ("111637", DCM, "Accumulated Average Glandular Dose"), round(sum(agd), 3),
                            u["mGy"])
                item.ContentSequence = [_coded("HAS CONCEPT MOD", ("G-C171", "SRT", "Laterality"), code)]
                accumulated.append(item)
    else:
        fluoro = [e for e in events if e.event_type == "FLUOROSCOPY"]
        acq = [e for e in events if e.event_type != "FLUOROSCOPY"]
        accumulated.append(_num("CONTAINS", ("113722", DCM, "Dose Area Product Total"), _sum_dap(events), u["Gy.m2"]))
        if modality == "RF":
            accumulated += [
                _num("CONTAINS", ("113725", DCM, "Dose (RP) Total"), _sum_rp(events), u["Gy"]),
                _num("CONTAINS", ("113726", DCM, "Fluoro Dose Area Product Total"), _sum_dap(fluoro), u["Gy.m2"]),
                _num("CONTAINS", ("113728", DCM, "Fluoro Dose (RP) Total"), _sum_rp(fluoro), u["Gy"]),
                _num("CONTAINS", ("113730", DCM, "Total Fluoro Time"),
                     round(sum(e.duration_s or 0.0 for e in fluoro), 1), u["s"]),
                _num("CONTAINS", ("113727", DCM, "Acquisition Dose Area Product Total"), _sum_dap(acq), u["Gy.m2"]),
                _num("CONTAINS", ("113729", DCM, "Acquisition Dose (RP) Total"), _sum_rp(acq), u["Gy"]),
                ref_point,
            ]
        else:
            accumulated.append(_num("CONTAINS", ("113727", DCM, "Acquisition Dose Area Product Total"), _sum_dap(acq),
                                    u["Gy.m2"]))
    items = [
        _procedure_reported(exam),
        *_observer_context(exam),
        _scope(exam),
        _container("CONTAINS", ("113702", DCM, "Accumulated X-Ray Dose Data"), accumulated),
    ]
    for event in events:
        items.append(_projection_event(exam, event, u, plane, ref_point))
    items.append(_coded("CONTAINS", ("113854", DCM, "Source of Dose Information"),
                        ("113856", DCM, "Automated Data Collection")))
    return items


def _dap_gy_m2(event: DoseEvent) -> float:
    return event.dap_gy_m2 or 0.0


def _sum_dap(events: Sequence[DoseEvent]) -> float:
    """Summed DAP in Gy·m², rounded as the truth rounds it."""
    return round(sum(_dap_gy_m2(e) for e in events), 9)


def _sum_rp(events: Sequence[DoseEvent]) -> float:
    """Summed Dose (RP) in Gy, rounded as the truth rounds it."""
    return round(sum(e.dose_rp_gy or 0.0 for e in events), 6)


def _projection_event(exam: PlannedExam, e: DoseEvent, u: dict[str, Code], plane: Dataset,
                      ref_point: Dataset) -> Dataset:
    legacy = exam.device.legacy_codes
    modality = exam.device.modality
    started = exam.local(round(e.start_offset_s * 1_000_000))
    if e.event_type == "FLUOROSCOPY":
        event_type: Code = ("P5-06000", "SRT", "Fluoroscopy") if legacy else ("44491008", "SCT", "Fluoroscopy")
    else:
        event_type = ("113611", DCM, "Stationary Acquisition")
    children: list[Dataset] = [
        plane,
        _uidref("CONTAINS", ("113769", DCM, "Irradiation Event UID"), e.uid),
        _datetime("CONTAINS", ("111526", DCM, "DateTime Started"), _dt(started, False, exam.device.sends_tz_offset)),
        _coded("CONTAINS", ("113721", DCM, "Irradiation Event Type"), event_type),
        _text("CONTAINS", ("125203", DCM, "Acquisition Protocol"), e.protocol),
        _coded("CONTAINS", ("123014", DCM, "Target Region"), e.target_region),
    ]
    if modality == "MG":
        side = ("G-A101", "SRT", "Left") if e.laterality == "L" else ("G-A100", "SRT", "Right")
        children += [
            _coded("CONTAINS", ("T-D0005", "SRT", "Anatomical structure"), ("T-04000", "SRT", "Breast"),
                   [_coded("HAS CONCEPT MOD", ("G-C171", "SRT", "Laterality"), side)]),
            _coded("CONTAINS", ("111031", DCM, "Image View"), _MG_VIEW[e.view or "CC"]),
            _num("CONTAINS", ("111636", DCM, "Entrance Exposure at RP"), e.entrance_dose_mgy or 0.0, u["mGy"]),
            _num("CONTAINS", ("111631", DCM, "Average Glandular Dose"), e.agd_mgy or 0.0, u["mGy"]),
            _num("CONTAINS", ("111633", DCM, "Compression Thickness"), e.compression_mm or 0.0, u["mm"]),
        ]
    else:
        children.append(_num("CONTAINS", ("122130", DCM, "Dose Area Product"), _dap_gy_m2(e), u["Gy.m2"]))
        if e.dose_rp_gy is not None:
            children.append(_num("CONTAINS", ("113738", DCM, "Dose (RP)"), e.dose_rp_gy, u["Gy"]))
            children.append(ref_point)
        if e.event_type == "FLUOROSCOPY":
            pulses = round((e.duration_s or 0.0) * (e.pulse_rate or 7.5))
            children += [
                _coded("CONTAINS", ("113732", DCM, "Fluoro Mode"), ("113631", DCM, "Pulsed")),
                _num("CONTAINS", ("113791", DCM, "Pulse Rate"), e.pulse_rate or 7.5, u["pulse/s"]),
                _num("CONTAINS", ("113768", DCM, "Number of Pulses"), pulses, u["1"]),
                _num("CONTAINS", ("113742", DCM, "Irradiation Duration"), e.duration_s or 0.0, u["s"]),
            ]
        if e.exposure_index is not None:
            children += [
                _num("CONTAINS", ("113845", DCM, "Exposure Index"), e.exposure_index, u["1"]),
                _num("CONTAINS", ("113846", DCM, "Target Exposure Index"), e.target_exposure_index or 0.0, u["1"]),
                _num("CONTAINS", ("113847", DCM, "Deviation Index"), e.deviation_index or 0.0, u["1"]),
            ]
    if e.kvp is not None:
        children.append(_num("CONTAINS", ("113733", DCM, "KVP"), e.kvp, u["kV"]))
    if e.mas is not None:
        children.append(_num("CONTAINS", ("113736", DCM, "Exposure"), round(e.mas * 1000.0, 1), u["uA.s"]))
    if e.sid_mm is not None:
        children.append(_num("CONTAINS", ("113750", DCM, "Distance Source to Detector"), e.sid_mm, u["mm"]))
    children.append(_administering(exam))
    return _container("CONTAINS", ("113706", DCM, "Irradiation Event X-Ray Data"), children)
