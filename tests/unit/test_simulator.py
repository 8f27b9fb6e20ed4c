"""The simulator's promises: deterministic, exact ground truth, realistic shape, and real DICOM on the wire."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import threading
import types
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydicom import config, dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

from synthetic_hospital import dicom as sim_dicom
from synthetic_hospital.exams import Plan, PlannedExam, write_truth
from synthetic_hospital.hospital import EXAM_TYPES, Device, default_hospital
from synthetic_hospital.plan import plan_days
from synthetic_hospital.sender import iter_datasets, send, write_dicom_dir

SEED = 20250303
MONDAY = date(2025, 3, 3)
TZ = "Asia/Shanghai"


def _devices(*keys: str) -> list[Device]:
    return [d for d in default_hospital() if not keys or d.key in keys]


@pytest.fixture(scope="module")
def day_plan() -> Plan:
    """One full default day (Monday), small scale: every device and exam type in one place."""
    return plan_days(default_hospital(), MONDAY, 1, SEED, TZ, scale=0.05)


@pytest.fixture(scope="module")
def weekend_plan() -> Plan:
    """Friday to Sunday for a mixed subset: weekend hours, closed days, and (with this seed) a CT1 exam that
    crosses midnight."""
    return plan_days(_devices("CT1", "MR2", "DX1", "MG1", "RF1", "CR1"), date(2025, 3, 7), 3, SEED + 1, TZ,
                     scale=0.02)


@pytest.fixture(scope="module")
def day_datasets(day_plan: Plan) -> dict[str, list[Dataset]]:
    """Every dataset of ``day_plan`` grouped by exam id (small scale, so this stays in memory)."""
    out: dict[str, list[Dataset]] = {}
    for exam, ds in iter_datasets(day_plan):
        out.setdefault(exam.exam_id, []).append(ds)
    return out


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _acquired_utc(ds: Dataset, tz: str) -> datetime:
    """AcquisitionDate/Time are local wall-clock of the site's zone (TimezoneOffsetFromUTC when present)."""
    tm = str(ds.AcquisitionTime)
    naive = datetime.strptime(str(ds.AcquisitionDate) + tm[:6], "%Y%m%d%H%M%S")
    if "." in tm:
        naive = naive.replace(microsecond=int(tm.split(".")[1].ljust(6, "0")))
    if "TimezoneOffsetFromUTC" in ds:
        off = str(ds.TimezoneOffsetFromUTC)
        delta = timedelta(hours=int(off[1:3]), minutes=int(off[3:5])) * (1 if off[0] == "+" else -1)
        return (naive - delta).replace(tzinfo=UTC)
    return naive.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _images(datasets: list[Dataset]) -> list[Dataset]:
    return [ds for ds in datasets if ds.Modality != "SR"]


def _rdsr(datasets: list[Dataset]) -> Dataset | None:
    reports = [ds for ds in datasets if ds.Modality == "SR"]
    assert len(reports) <= 1
    return reports[0] if reports else None


def _walk(items: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """(container path, concept code, value) for every content item, keyed by code as the edge must do."""
    for item in items:
        code = item.ConceptNameCodeSequence[0].CodeValue
        vt = item.ValueType
        if vt == "NUM":
            yield path, code, float(item.MeasuredValueSequence[0].NumericValue)
        elif vt == "CODE":
            yield path, code, item.ConceptCodeSequence[0].CodeValue
        elif vt == "UIDREF":
            yield path, code, item.UID
        elif vt == "DATETIME":
            yield path, code, item.DateTime
        elif vt == "TEXT":
            yield path, code, item.TextValue
        elif vt == "PNAME":
            yield path, code, str(item.PersonName)
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence, (*path, code))


def _events(report: Dataset, container: str) -> list[dict[str, Any]]:
    """One dict (code → value) per event container (113819 CT, 113706 projection)."""
    out = []
    for item in report.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == container:
            out.append({code: value for path, code, value in _walk(item.ContentSequence) if not path})
    return out


def _values(report: Dataset, container: str, code: str) -> list[Any]:
    return [v for path, c, v in _walk(report.ContentSequence) if path and path[-1] == container and c == code]


# ------------------------------------------------------------------------------------------------------------
# Shape of the hospital and the plan
# ------------------------------------------------------------------------------------------------------------


def test_default_hospital_has_the_promised_devices() -> None:
    devices = default_hospital()
    modalities = Counter(d.modality for d in devices)
    assert modalities["CT"] == 3 and modalities["MR"] == 2 and modalities["MG"] == 1 and modalities["RF"] == 1
    assert modalities["DX"] + modalities["CR"] == 4
    assert len({d.ae_title for d in devices}) == len(devices)
    assert len({d.key for d in devices}) == len(devices)
    assert sum(d.always_open for d in devices) == 1, "exactly one 24/7 device (the emergency CT)"
    assert len({d.hours for d in devices}) >= 5, "opening hours differ between devices"
    assert {d.field_strength_t for d in devices if d.modality == "MR"} == {1.5, 3.0}
    assert 2 <= sum(d.sends_tz_offset for d in devices) <= 5, "about a third send TimezoneOffsetFromUTC"
    mg = next(d for d in devices if d.modality == "MG")
    assert mg.hours[5] is None and mg.hours[6] is None and mg.hours[0] == "08:00-16:00"


def test_plan_is_deterministic_from_the_seed() -> None:
    devices = _devices("CT2", "MR1", "DX2", "MG1")
    a = plan_days(devices, MONDAY, 1, SEED, TZ, scale=0.02)
    b = plan_days(devices, MONDAY, 1, SEED, TZ, scale=0.02)
    c = plan_days(devices, MONDAY, 1, SEED + 1, TZ, scale=0.02)
    assert a.truth() == b.truth()
    assert a.truth()["exams"] != c.truth()["exams"]
    first = [_encode(ds) for _, ds in iter_datasets(a, exams=a.exams[:6])]
    again = [_encode(ds) for _, ds in iter_datasets(b, exams=b.exams[:6])]
    assert first == again, "same seed must give byte-identical objects"
    other = {e.study_uid for e in c.exams}
    assert not other & {e.study_uid for e in a.exams}, "UIDs derive from the seed"


def test_scale_changes_instance_counts_only() -> None:
    devices = _devices("CT1", "MR2", "RF1")
    full = plan_days(devices, MONDAY, 1, SEED, TZ, scale=1.0)
    small = plan_days(devices, MONDAY, 1, SEED, TZ, scale=0.05)
    assert [(e.exam_id, e.study_uid, e.start_utc, e.end_utc) for e in full.exams] == [
        (e.exam_id, e.study_uid, e.start_utc, e.end_utc) for e in small.exams]
    assert [e.dose_events for e in full.exams] == [e.dose_events for e in small.exams]
    for big, tiny in zip(full.exams, small.exams, strict=True):
        for s_big, s_tiny in zip(big.series, tiny.series, strict=True):
            assert s_big.n_instances == s_big.n_instances_full
            assert s_tiny.n_instances == max(1, round(s_big.n_instances_full * 0.05))
    assert small.n_instances < full.n_instances / 5


def test_instance_counts_at_full_scale_are_realistic() -> None:
    plan = plan_days(default_hospital(), MONDAY, 1, SEED, TZ, scale=1.0)
    for exam in plan.exams:
        series = exam.series
        counts = [s.n_instances for s in series]
        modality, et = exam.device.modality, exam.exam_type
        if modality == "CT":
            assert 2 <= len(series) <= 4, exam.exam_id
            assert series[0].spec.acquisition == "LOCALIZER" and counts[0] <= 2
            if not exam.is_qa:
                assert all(50 <= s.n_instances <= 300 for s in series[1:] if s.spec.acquisition != "STATIONARY")
        elif modality == "MR":
            # spine sagittals have 15-22 slices; everything else 20-60
            assert 4 <= len(series) <= 8 and all(15 <= n <= 60 for n in counts[1:]), exam.exam_id
        elif modality in ("DX", "CR"):
            assert 1 <= sum(counts) <= 3
        elif modality == "MG" and not exam.is_qa:
            assert counts == [1, 1, 1, 1] and {s.spec.view for s in series} == {"CC", "MLO"}
        elif modality == "RF":
            assert 5 <= sum(counts) <= 30 or et.key == "RF_IVU", (exam.exam_id, counts)
    per_device = Counter(e.device.key for e in plan.exams)
    assert per_device["CT1"] > per_device["CT3"] > 5, "the 24/7 CT works longest"
    assert per_device["RF1"] >= 2


def test_durations_and_exam_types_are_realistic(day_plan: Plan) -> None:
    limits = {"CT": (240, 900), "MR": (600, 2700), "DX": (0, 480), "CR": (0, 480), "MG": (120, 900),
              "RF": (1200, 3600)}
    for exam in day_plan.exams:
        low, high = limits[exam.device.modality]
        assert low <= exam.duration_s <= high, (exam.exam_id, exam.duration_s)
        assert exam.exam_type.key in dict(exam.device.exam_mix) or exam.is_qa
    types_seen = {e.exam_type.exam_family for e in day_plan.exams}
    assert {"CT_HEAD", "CT_CHEST", "MR_BRAIN", "DX_CHEST_PA", "MG_SCREENING"} <= types_seen
    zh = [e for e in day_plan.exams if e.language == "zh"]
    assert zh and any("胸部" in e.study_description or "头颅" in e.study_description for e in zh)


def test_qa_exams_are_a_small_marked_share(weekend_plan: Plan, day_plan: Plan) -> None:
    exams = [*day_plan.exams, *weekend_plan.exams]
    qa = [e for e in exams if e.is_qa]
    assert qa, "some QA/phantom exams"
    assert len(qa) / len(exams) < 0.05
    for exam in qa:
        assert exam.patient.name == "QA^PHANTOM" and exam.accession == "" and exam.truth()["is_qa"] is True
        assert exam.exam_type.is_qa
    assert all(e.patient.name.startswith("SIM^PATIENT") for e in exams if not e.is_qa)


# ------------------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------------------


def test_first_and_last_acquisition_equal_truth(day_plan: Plan, day_datasets: dict[str, list[Dataset]]) -> None:
    for exam in day_plan.exams:
        truth = exam.truth()
        times = [_acquired_utc(ds, day_plan.tz) for ds in _images(day_datasets[exam.exam_id])]
        assert min(times) == _utc(truth["start_utc"]), exam.exam_id
        assert max(times) == _utc(truth["end_utc"]), exam.exam_id
        assert times[0] == min(times) and times[-1] == max(times), "sent in acquisition order"


def test_times_across_midnight_and_weekend(weekend_plan: Plan) -> None:
    crossing = [e for e in weekend_plan.exams if e.local(0).date() != e.local(e.duration_s * 1_000_000).date()]
    assert crossing, "the seed was chosen so that one CT1 exam crosses midnight"
    sample = [e for i, e in enumerate(weekend_plan.exams) if i % 3 == 0 or e in crossing]  # a third keeps it quick
    for exam in sample:
        datasets = [ds for _, ds in iter_datasets(weekend_plan, exams=[exam])]
        images = _images(datasets)
        times = [_acquired_utc(ds, weekend_plan.tz) for ds in images]
        assert (min(times), max(times)) == (exam.start_utc, exam.end_utc), exam.exam_id
        if exam in crossing:
            assert len({str(ds.AcquisitionDate) for ds in images}) == 2
        for ds in images:
            if exam.device.sends_tz_offset:
                assert ds.TimezoneOffsetFromUTC == "+0800"
            else:
                assert "TimezoneOffsetFromUTC" not in ds
            if exam.device.sends_acquisition_datetime:
                dt = str(ds.AcquisitionDateTime)
                assert dt.startswith(str(ds.AcquisitionDate) + str(ds.AcquisitionTime))
        report = _rdsr(datasets)
        if report is not None:
            content = datetime.strptime(str(report.ContentDate) + str(report.ContentTime)[:6], "%Y%m%d%H%M%S")
            content_utc = content.replace(tzinfo=ZoneInfo(weekend_plan.tz)).astimezone(UTC)
            assert exam.start_utc <= content_utc <= exam.end_utc
        assert str(datasets[0].StudyDate) + str(datasets[0].StudyTime) <= (
            exam.local(0).strftime("%Y%m%d%H%M%S")), "StudyTime is registration, at or before the first image"
    night = [e for e in weekend_plan.exams if e.device.key == "CT1" and e.local(0).hour < 6]
    assert night, "the 24/7 CT also scans at night"
    devices = {d["device_key"]: d for d in weekend_plan.truth()["devices"]}
    mg_days = {d["local_date"]: d["n_exams"] for d in devices["MG1"]["days"]}
    assert mg_days["2025-03-07"] > 0 and mg_days["2025-03-08"] == mg_days["2025-03-09"] == 0, mg_days
    mr2_days = {d["local_date"]: (d["n_exams"], d["hours"]) for d in devices["MR2"]["days"]}
    assert mr2_days["2025-03-09"] == (0, None) and mr2_days["2025-03-08"][1] == "08:00-12:00"


def test_exams_on_one_device_do_not_overlap(day_plan: Plan, weekend_plan: Plan) -> None:
    for plan in (day_plan, weekend_plan):
        by_device: dict[str, list[PlannedExam]] = {}
        for exam in plan.exams:
            by_device.setdefault(exam.device.key, []).append(exam)
        for key, exams in by_device.items():
            exams.sort(key=lambda e: e.start_utc)
            for before, after in itertools.pairwise(exams):
                gap = (after.start_utc - before.end_utc).total_seconds()
                assert gap >= 60, (key, before.exam_id, after.exam_id, gap)


def test_exams_are_within_opening_hours(day_plan: Plan, weekend_plan: Plan) -> None:
    for plan in (day_plan, weekend_plan):
        zone = ZoneInfo(plan.tz)
        first = datetime.combine(plan.start_date, datetime.min.time(), zone)
        last = first + timedelta(days=plan.days)
        for exam in plan.exams:
            start, end = exam.start_utc.astimezone(zone), exam.end_utc.astimezone(zone)
            assert first <= start <= end <= last
            if exam.device.always_open:
                continue
            window = exam.device.window(start.date())
            assert window is not None, (exam.exam_id, "scheduled on a closed day")
            assert start.date() == end.date()
            seconds = lambda t: t.hour * 3600 + t.minute * 60 + t.second  # noqa: E731
            assert window[0] <= seconds(start) and seconds(end) <= window[1], exam.exam_id


# ------------------------------------------------------------------------------------------------------------
# Dose
# ------------------------------------------------------------------------------------------------------------


def test_ct_rdsr_dlp_total_equals_sum_of_events(day_plan: Plan, day_datasets: dict[str, list[Dataset]]) -> None:
    ct = [e for e in day_plan.exams if e.device.modality == "CT"]
    assert ct
    for exam in ct:
        datasets = day_datasets[exam.exam_id]
        report = _rdsr(datasets)
        assert report is not None and report.SOPClassUID == sim_dicom.RDSR_SOP_CLASS
        assert report.ConceptNameCodeSequence[0].CodeValue == "113701"
        assert report.ContentTemplateSequence[0].TemplateIdentifier == "10011"
        events = _events(report, "113819")
        total = _values(report, "113811", "113813")
        assert len(total) == 1
        dlps = [ev["113838"] for ev in _values_by_event(report)]
        assert total[0] == pytest.approx(sum(dlps), abs=1e-6)
        dose = exam.truth()["dose"]
        assert dose["ct_dlp_total_mgy_cm"] == pytest.approx(total[0], abs=1e-9)
        assert len(events) == dose["n_events"] == len(exam.series)
        assert _values(report, "113811", "113812") == [len(events)]
        by_uid = {ev["irradiation_event_uid"]: ev for ev in dose["events"]}
        assert {ev["113769"] for ev in events} == set(by_uid)
        for ds in _images(datasets):
            event = by_uid[ds.IrradiationEventUID]
            assert ds.CTDIvol == pytest.approx(event["ctdivol_mgy"])
        for ev, truth_ev in zip(_values_by_event(report), dose["events"], strict=True):
            assert ev["113830"] == truth_ev["ctdivol_mgy"] and ev["113838"] == truth_ev["dlp_mgy_cm"]
            assert ev["113835"] == {"HEAD16": "113690", "BODY32": "113691"}[truth_ev["phantom"]]


def _values_by_event(report: Dataset) -> list[dict[str, Any]]:
    """Nested values (CT Dose container included) per CT Acquisition container."""
    out = []
    for item in report.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "113819":
            out.append({code: value for _, code, value in _walk(item.ContentSequence)})
    return out


def test_ct_doses_are_realistic(day_plan: Plan) -> None:
    dlp_by_type: dict[str, list[float]] = {}
    for exam in day_plan.exams:
        dose = exam.truth()["dose"]
        if dose and dose["kind"] == "CT" and not exam.is_qa and (exam.patient.age_years or 0) >= 16:
            dlp_by_type.setdefault(exam.exam_type.key, []).append(dose["ct_dlp_total_mgy_cm"])
    assert all(500 <= v <= 1300 for v in dlp_by_type.get("CT_HEAD", [])), dlp_by_type.get("CT_HEAD")
    assert all(v <= 150 for v in dlp_by_type.get("CT_CHEST_LD", []))
    assert all(100 <= v <= 1200 for v in dlp_by_type.get("CT_CHEST", []))


def test_projection_dose_headers_and_reports(day_plan: Plan, day_datasets: dict[str, list[Dataset]]) -> None:
    seen = Counter()
    for exam in day_plan.exams:
        modality = exam.device.modality
        if modality not in ("DX", "CR", "MG", "RF"):
            continue
        dose = exam.truth()["dose"]
        datasets = day_datasets[exam.exam_id]
        report = _rdsr(datasets)
        assert (report is not None) == exam.device.sends_rdsr == dose["has_rdsr"]
        if report is not None:
            assert report.ContentTemplateSequence[0].TemplateIdentifier == "10001"
        by_uid = {ev["irradiation_event_uid"]: ev for ev in dose["events"]}
        for ds in _images(datasets):
            ev = by_uid.get(ds.get("IrradiationEventUID"))
            if modality in ("DX", "CR"):
                assert float(ds.ImageAndFluoroscopyAreaDoseProduct) / 10 == pytest.approx(ev["dap_gy_cm2"])
                assert ds.DeviationIndex == pytest.approx(10 * math.log10(ds.ExposureIndex / ds.TargetExposureIndex),
                                                          abs=0.01)
            elif modality == "MG":
                assert ds.OrganExposed == "BREAST"
                assert float(ds.OrganDose) * 100 == pytest.approx(ev["agd_mgy"])
        if modality in ("DX", "CR") and report is not None:
            events = _events(report, "113706")
            assert sum(e["122130"] for e in events) == pytest.approx(_values(report, "113702", "113722")[0])
            assert _values(report, "113702", "113722")[0] * 1e4 == pytest.approx(dose["dap_total_gy_cm2"])
        if modality == "MG" and not exam.is_qa:
            agd = dict(zip(["L", "R"], _values(report, "113702", "111637"), strict=True))
            assert agd == {"L": pytest.approx(dose["agd_left_mgy"]), "R": pytest.approx(dose["agd_right_mgy"])}
            assert 0.5 <= dose["agd_left_mgy"] / 2 <= 3.5
        if modality == "RF":
            events = _events(report, "113706")
            fluoro = [e for e in events if e["113721"] in ("P5-06000", "44491008")]
            assert fluoro and len(fluoro) == dose["n_fluoro_events"]
            assert _values(report, "113702", "113722")[0] == pytest.approx(sum(e["122130"] for e in events))
            assert _values(report, "113702", "113725")[0] == pytest.approx(dose["dose_rp_total_gy"])
            assert _values(report, "113702", "113730")[0] == pytest.approx(sum(e["113742"] for e in fluoro))
            assert _values(report, "113702", "113730")[0] == pytest.approx(dose["fluoro_time_total_s"])
            assert 0.5 <= dose["dap_total_gy_cm2"] <= 100
        seen[modality] += 1
    assert seen["DX"] and seen["CR"] and seen["MG"] and seen["RF"]


def test_mr_images_carry_coils_and_field_strength(day_plan: Plan, day_datasets: dict[str, list[Dataset]]) -> None:
    coils = set()
    for exam in day_plan.exams:
        if exam.device.modality != "MR":
            continue
        for ds in _images(day_datasets[exam.exam_id]):
            assert float(ds.MagneticFieldStrength) == exam.device.field_strength_t
            assert ds.ReceiveCoilName == exam.truth()["mr"]["receive_coil"] and ds.TransmitCoilName == "Body"
            coils.add(str(ds.ReceiveCoilName))
    assert coils & {"HeadNeck_20", "Knee_18", "Spine_32", "Body_18"}


# ------------------------------------------------------------------------------------------------------------
# Objects
# ------------------------------------------------------------------------------------------------------------


def test_objects_use_the_right_classes_and_valid_values(day_plan: Plan,
                                                        day_datasets: dict[str, list[Dataset]]) -> None:
    checked: set[tuple[str, str]] = set()
    for exam in day_plan.exams:
        for ds in day_datasets[exam.exam_id]:
            kind = (exam.device.key, ds.Modality)
            if kind in checked:
                continue
            checked.add(kind)
            expected = sim_dicom.RDSR_SOP_CLASS if ds.Modality == "SR" else sim_dicom.IMAGE_SOP_CLASS[ds.Modality]
            assert ds.SOPClassUID == expected == ds.file_meta.MediaStorageSOPClassUID
            for elem in ds.iterall():  # the fast builders skip validation; check every value once here
                if elem.VR in ("SQ", "OW", "OB"):
                    continue
                for value in elem.value if isinstance(elem.value, MultiValue) else [elem.value]:
                    validate_value(elem.VR, str(value) if elem.VR in ("DS", "IS") else value, config.RAISE)
            back = dcmread(io.BytesIO(_encode(ds)))
            assert back.SOPInstanceUID == ds.SOPInstanceUID and back.SpecificCharacterSet == exam.device.charset
            assert str(back.StudyDescription) == exam.study_description
            if ds.Modality != "SR":
                assert len(back.PixelData) == back.Rows * back.Columns * 2
                assert back.ImageType[1] == "PRIMARY"
    assert {m for _, m in checked} >= {"CT", "MR", "DX", "CR", "MG", "RF", "SR"}


def test_objects_carry_the_identifiers_the_edge_must_strip(day_plan: Plan,
                                                           day_datasets: dict[str, list[Dataset]]) -> None:
    exam = next(e for e in day_plan.exams if e.device.modality == "CT" and not e.is_qa)
    for ds in day_datasets[exam.exam_id]:
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientAddress", "ReferringPhysicianName",
                        "PerformingPhysicianName", "OperatorsName", "InstitutionName", "InstitutionAddress",
                        "AccessionNumber", "StudyID", "RequestAttributesSequence", "OtherPatientIDsSequence"):
            assert ds.get(keyword), keyword
        assert ds.PatientName.family_name == "SIM" and ds.AccessionNumber == exam.accession
        assert ds.RequestAttributesSequence[0].AccessionNumber == exam.accession
        assert (0x0019, 0x0010) in ds and ds[0x0019, 0x1010].value == exam.patient.name
    report = _rdsr(day_datasets[exam.exam_id])
    names = [v for _, code, v in _walk(report.ContentSequence) if code in ("121008", "113870")]
    assert exam.operator in names, "person names inside the SR tree (Clean Structured Content)"


def test_gb18030_device_round_trips_chinese(day_plan: Plan) -> None:
    exam = next(e for e in day_plan.exams if e.device.charset == "GB18030" and e.language == "zh" and not e.is_qa)
    ds = next(ds for _, ds in iter_datasets(day_plan, exams=[exam]))
    raw = _encode(ds)
    assert exam.study_description.encode("gb18030") in raw
    back = dcmread(io.BytesIO(raw))
    assert str(back.StudyDescription) == exam.study_description
    assert back.PatientName.ideographic == exam.patient.name_ideographic


def test_iter_datasets_is_lazy(day_plan: Plan) -> None:
    it = iter_datasets(day_plan)
    assert isinstance(it, types.GeneratorType)
    exam, ds = next(it)
    assert exam is day_plan.exams[0] and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_ct512_pixels() -> None:
    plan = plan_days(_devices("CT3", "DX2"), MONDAY, 1, SEED, TZ, scale=0.01, pixels="ct512")
    sizes = {ds.Modality: ds.Rows for _, ds in iter_datasets(plan, exams=plan.exams[:4]) if ds.Modality != "SR"}
    assert sizes.get("CT", 512) == 512 and sizes.get("DX", 64) == 64
    with pytest.raises(ValueError, match="pixels"):
        plan_days(_devices("CT3"), MONDAY, 1, SEED, pixels="huge")


# ------------------------------------------------------------------------------------------------------------
# Truth and files
# ------------------------------------------------------------------------------------------------------------


def test_truth_is_json_and_complete(day_plan: Plan, tmp_path: Path) -> None:
    path = write_truth(day_plan, tmp_path / "truth.json")
    truth = json.loads(path.read_text(encoding="utf-8"))
    assert truth["n_instances"] == day_plan.n_instances == sum(e["n_instances"] for e in truth["exams"])
    assert truth["n_exams"] == len(truth["exams"]) == sum(d["n_exams"] for d in truth["devices"])
    exam = truth["exams"][0]
    for key in ("study_instance_uid", "accession", "device_key", "station_name", "modality", "exam_type", "is_qa",
                "start_utc", "end_utc", "start_local", "end_local", "n_series", "n_instances", "dose"):
        assert key in exam, key
    assert exam["start_local"].endswith("+08:00") and exam["start_utc"].endswith("Z")
    assert {d["device_key"] for d in truth["devices"]} == {d.key for d in day_plan.devices}
    assert all(e["exam_type"] in {t.exam_family for t in EXAM_TYPES.values()} for e in truth["exams"])


def test_write_dicom_dir_writes_every_instance(tmp_path: Path) -> None:
    plan = plan_days(_devices("MG1", "DX3"), MONDAY, 1, SEED, TZ, scale=0.02).subset(per_device=3)
    folders = write_dicom_dir(plan, tmp_path)
    files = sorted(tmp_path.rglob("*.dcm"))
    assert len(files) == plan.n_instances
    assert set(folders) <= {"MG1", "DX3"}
    uids = {dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(uids) == len(files)


# ------------------------------------------------------------------------------------------------------------
# The wire (the one test with a socket)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("per_device", "interleave"), [(True, False), (True, True), (False, False)],
                         ids=["per-device", "interleaved", "per-exam"])
def test_send_to_a_pynetdicom_scp(per_device: bool, interleave: bool) -> None:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, evt

    plan = plan_days(default_hospital(), MONDAY, 1, SEED, TZ, scale=0.02).subset(("CT3", "DX2", "MG1", "RF1"), 2)
    assert len(plan.exams) == 8 and len(plan.devices) == 4

    received: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        ds = event.dataset
        with lock:
            received.append((event.assoc.requestor.ae_title, ds.SOPInstanceUID))
        return 0x0000

    scp = AE(ae_title="RADPULSE")
    for sop_class in [*sim_dicom.IMAGE_SOP_CLASS.values(), sim_dicom.RDSR_SOP_CLASS]:
        scp.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        port = server.server_address[1]
        stats = send(plan, "127.0.0.1", port, "RADPULSE", progress=False, per_device_associations=per_device,
                     interleave=interleave)
    finally:
        server.shutdown()
    assert stats.ok, stats
    assert stats.by_status == {"0x0000": plan.n_instances}
    assert stats.succeeded == stats.attempted == len(received) == plan.n_instances
    assert stats.associations == (4 if per_device else len(plan.exams))
    assert len({uid for _, uid in received}) == plan.n_instances
    assert {ae for ae, _ in received} == {d.ae_title for d in plan.devices}


# ------------------------------------------------------------------------------------------------------------
# Workflow: orders, bookings, arrivals, MPPS
# ------------------------------------------------------------------------------------------------------------

_WORKFLOW_KEYS = ("order_time_utc", "scheduled_start_utc", "arrival_utc", "has_mpps", "mpps_status",
                  "mpps_sop_instance_uid", "discontinued", "arrival_to_start_s", "order_to_start_s",
                  "scheduled_delay_s")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_workflow_planning_is_deterministic_and_leaves_the_images_alone() -> None:
    devices = _devices("CT1", "MR2", "DX1")
    a = plan_days(devices, MONDAY, 2, SEED, TZ, scale=0.02)
    b = plan_days(devices, MONDAY, 2, SEED, TZ, scale=0.02)
    c = plan_days(devices, MONDAY, 2, SEED + 1, TZ, scale=0.02)
    wf = [{k: t[k] for k in _WORKFLOW_KEYS} for t in a.truth()["exams"]]
    assert wf == [{k: t[k] for k in _WORKFLOW_KEYS} for t in b.truth()["exams"]]
    assert wf != [{k: t[k] for k in _WORKFLOW_KEYS} for t in c.truth()["exams"]]
    # the workflow streams are the exam's own: stripping the workflow gives the exam exactly as planned before
    for exam in a.exams:
        bare = dataclasses.replace(exam, order_utc=None, scheduled_start_utc=None, arrival_utc=None,
                                   mpps_status=None, mpps_uid=None)
        assert {k: v for k, v in exam.truth().items() if k not in _WORKFLOW_KEYS} == {
            k: v for k, v in bare.truth().items() if k not in _WORKFLOW_KEYS}
    first = [_encode(ds) for _, ds in iter_datasets(a, exams=a.exams[:4])]
    assert first == [_encode(ds) for _, ds in iter_datasets(b, exams=b.exams[:4])]


def test_workflow_times_and_waits_are_consistent(day_plan: Plan) -> None:
    truth = day_plan.truth()
    patients = [t for t in truth["exams"] if not t["is_qa"]]
    assert patients
    for t in truth["exams"]:
        if t["is_qa"]:
            assert t["order_time_utc"] is t["arrival_utc"] is t["mpps_status"] is None and not t["has_mpps"]
            assert t["arrival_to_start_s"] is t["order_to_start_s"] is t["scheduled_delay_s"] is None
            continue
        start = _utc(t["start_utc"])  # also the MPPS start when the device sends MPPS
        order, booked, arrival = _utc(t["order_time_utc"]), _utc(t["scheduled_start_utc"]), _utc(t["arrival_utc"])
        assert t["arrival_to_start_s"] == (start - arrival).total_seconds()
        assert t["order_to_start_s"] == (start - order).total_seconds()
        assert t["scheduled_delay_s"] == (start - booked).total_seconds()
        assert 5 * 60 <= t["arrival_to_start_s"] <= 60 * 60
        assert 3600 <= t["order_to_start_s"] <= 48 * 3600
        assert -9 * 60 < t["scheduled_delay_s"] < 13 * 60
        assert booked.second == 0, "bookings are whole minutes"
        assert order < arrival < start
    json.dumps(truth)  # still plain JSON
    waits = [t["arrival_to_start_s"] for t in patients]
    assert len(set(waits)) > len(waits) / 2, "waits vary between exams"


def test_mpps_devices_and_one_discontinued_exam_per_day() -> None:
    hospital = default_hospital()
    assert {d.key for d in hospital if d.sends_mpps} == {"CT1", "MR1", "DX1"}
    plan = plan_days(hospital, MONDAY, 2, SEED, TZ, scale=0.02)
    truth = plan.truth()
    zone = ZoneInfo(TZ)
    for exam in plan.exams:
        assert exam.has_mpps == (exam.device.sends_mpps and not exam.is_qa)
        assert (exam.mpps_uid is not None) == exam.has_mpps
        if exam.has_mpps:
            assert exam.mpps_start_utc == exam.start_utc and exam.mpps_end_utc == exam.end_utc
    stopped = [e for e in plan.exams if e.discontinued]
    assert sorted(e.start_utc.astimezone(zone).date() for e in stopped) == [MONDAY, MONDAY + timedelta(days=1)]
    assert all(e.has_mpps and not e.is_qa for e in stopped)
    assert {t["mpps_status"] for t in truth["exams"]} == {None, "COMPLETED", "DISCONTINUED"}
    per_day = Counter((d["device_key"], day["local_date"]) for d in truth["devices"] for day in d["days"]
                      for _ in range(day["n_discontinued_exams"]))
    assert sum(per_day.values()) == 2
    assert {d["device_key"]: d["sends_mpps"] for d in truth["devices"]}["CT1"] is True


def test_hl7_and_mpps_builders_say_what_the_edge_reads(day_plan: Plan) -> None:
    from edge_ingest.deid import DeidContext
    from edge_ingest.hl7 import parse, to_workflow_events
    from edge_ingest.keys import EdgeKeys
    from edge_ingest.mpps import mpps_event
    from edge_ingest.pseudonyms import pseudonym, uid_pseudonym
    from synthetic_hospital.workflow import adt_a10, hl7_messages, mpps_n_create, mpps_n_set, orm_o01

    keys = EdgeKeys(b"k" * 32, b"a" * 32)
    ctx = DeidContext(keys=keys, site_id="site-a", edge_id="edge-1", site_timezone=TZ)
    now = datetime(2025, 3, 4, tzinfo=UTC)
    exam = next(e for e in day_plan.exams if e.has_mpps and e.device.sends_tz_offset)
    acc = pseudonym(keys, "accession", exam.accession)
    orm = to_workflow_events(parse(orm_o01(exam, SEED)), ctx, received_at=now)
    assert [e.kind for e in orm] == ["ordered", "scheduled"]
    assert orm[0].order_time_utc == exam.order_utc and orm[1].scheduled_start_utc == exam.scheduled_start_utc
    assert all(e.accession_pseudonym == acc for e in orm)
    assert orm[0].patient_pseudonym == pseudonym(keys, "patient", exam.patient.patient_id)
    (arrival,) = to_workflow_events(parse(adt_a10(exam, SEED)), ctx, received_at=now)
    assert arrival.kind == "arrival" and arrival.occurred_at == exam.arrival_utc and arrival.accession_pseudonym == acc
    assert len(hl7_messages(exam, SEED)) == 2
    assert hl7_messages(next(e for e in day_plan.exams if e.is_qa), SEED) == []

    create = mpps_event(mpps_n_create(exam), message="N-CREATE", pps_uid=exam.mpps_uid or "", ctx=ctx,
                        calling_ae=exam.device.ae_title, received_at=now)
    assert create.kind == "pps_in_progress" and create.pps_start_utc == exam.start_utc
    assert create.study_pseudonym == uid_pseudonym(keys, exam.study_uid) and create.accession_pseudonym == acc
    done = mpps_event(mpps_n_set(exam), message="N-SET", pps_uid=exam.mpps_uid or "", ctx=ctx,
                      calling_ae=exam.device.ae_title, received_at=now)
    assert done.kind == ("pps_discontinued" if exam.discontinued else "pps_completed")
    assert done.pps_end_utc == exam.end_utc
    stopped = next(e for e in day_plan.exams if e.discontinued)
    assert mpps_n_set(stopped).PerformedProcedureStepStatus == "DISCONTINUED"
    # the non-offset devices: local time read in the site zone gives the same instants
    plain = next(e for e in day_plan.exams if e.has_mpps and not e.device.sends_tz_offset)
    ev = mpps_event(mpps_n_create(plain), message="N-CREATE", pps_uid="1.2.3", ctx=ctx, calling_ae="X",
                    received_at=now)
    assert ev.pps_start_utc == plain.start_utc


def test_send_with_workflow_over_mllp_and_mpps() -> None:
    import socket as socketlib

    from pynetdicom import AE, evt

    from synthetic_hospital.workflow import MPPS_SOP_CLASS, START_BLOCK

    plan = plan_days(default_hospital(), MONDAY, 1, SEED, TZ, scale=0.02).subset(("CT1", "MR2"), 2)
    hl7: list[str] = []
    mpps: list[tuple[str, str, str]] = []

    listener = socketlib.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        buf = b""
        with conn:
            while chunk := conn.recv(65536):
                buf += chunk
                while b"\x1c\r" in buf:
                    frame, buf = buf.split(b"\x1c\r", 1)
                    text = frame[frame.find(START_BLOCK) + 1:].decode()
                    hl7.append(text)
                    control = text.split("\r")[0].split("|")[9]
                    conn.sendall(START_BLOCK + f"MSH|^~\\&|R|R|S|S|x||ACK|1|P|2.5.1\rMSA|AA|{control}\r".encode()
                                 + b"\x1c\r")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def on_n(event: Any, message: str) -> tuple[int, Dataset]:
        ds = event.attribute_list if message == "N-CREATE" else event.modification_list
        uid = event.request.AffectedSOPInstanceUID if message == "N-CREATE" else \
            event.request.RequestedSOPInstanceUID
        mpps.append((event.assoc.requestor.ae_title, message, str(ds.PerformedProcedureStepStatus)))
        assert uid
        return 0x0000, ds

    scp = AE(ae_title="RADPULSE")
    scp.add_supported_context(MPPS_SOP_CLASS)
    for sop_class in [*sim_dicom.IMAGE_SOP_CLASS.values(), sim_dicom.RDSR_SOP_CLASS]:
        scp.add_supported_context(sop_class)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_N_CREATE, on_n, ["N-CREATE"]), (evt.EVT_N_SET, on_n, ["N-SET"]),
        (evt.EVT_C_STORE, lambda event: 0x0000)])
    try:
        stats = send(plan, "127.0.0.1", server.server_address[1], progress=False, workflow=True,
                     hl7_port=listener.getsockname()[1])
    finally:
        server.shutdown()
        listener.close()
    assert stats.ok, stats
    patients = [e for e in plan.exams if not e.is_qa]
    assert stats.workflow.hl7_accepted == len(hl7) == 2 * len(patients)
    assert [m.split("\r")[0].split("|")[8] for m in hl7[:2]] == ["ORM^O01^ORM_O01", "ADT^A10^ADT_A09"]
    with_mpps = [e for e in patients if e.has_mpps]
    assert with_mpps and len(mpps) == 2 * len(with_mpps) == stats.workflow.mpps_succeeded
    assert {ae for ae, _, _ in mpps} == {"CT1_FLASH"}
    assert [(m, s) for _, m, s in mpps[:2]] == [("N-CREATE", "IN PROGRESS"), ("N-SET", mpps[1][2])]
    assert stats.succeeded == plan.n_instances
    with pytest.raises(ValueError, match="hl7_port"):
        send(plan, "127.0.0.1", 1, progress=False, workflow=True)
