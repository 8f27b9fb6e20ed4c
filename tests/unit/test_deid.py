"""De-identification on the real vendor samples and on planted canaries. No sockets."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from edge_ingest.deid import DeidContext, build_event, identifying_strings, scrub_text
from edge_ingest.dose_sr import extract_dose_report
from edge_ingest.extract import ExtractError, parse_header
from edge_ingest.keys import EdgeKeys
from schemas import codec
from tests.helpers import CT_IMAGE, MR_IMAGE, canary_object, dataset_bytes, encode_dataset, make_image

KEYS = EdgeKeys(b"k" * 32, b"a" * 32)
CTX = DeidContext(
    keys=KEYS,
    site_id="site-a",
    edge_id="edge-1",
    site_timezone="Asia/Shanghai",
    test_patient_patterns=(re.compile(r"(?i)\b(QA|PHANTOM)\b"),),
)
NOW = datetime(2024, 3, 1, 3, 0, tzinfo=UTC)


def event_for(data: bytes, ts: str = "1.2.840.10008.1.2.1", ctx: DeidContext = CTX):
    return build_event(
        parse_header(data, ts), ctx, calling_ae="MOD1", received_at=NOW, dose_extractor=extract_dose_report
    )


def test_every_sample_becomes_an_event_without_its_identifiers(samples_dir: Path) -> None:
    files = sorted(samples_dir.glob("*.dcm"))
    assert len(files) >= 11
    for path in files:
        data, ts = dataset_bytes(path)
        raw = pydicom.dcmread(path, stop_before_pixels=True)
        event = event_for(data, ts)
        wire = codec.encode(event)
        text = repr(event)
        for uid in (raw.SOPInstanceUID, raw.StudyInstanceUID, raw.get("SeriesInstanceUID")):
            if uid:
                assert str(uid) not in text and str(uid).encode() not in wire, path.name
        for keyword in ("PatientID", "AccessionNumber", "PatientName"):
            value = str(raw.get(keyword, "") or "").strip()
            if len(value) >= 4:
                assert value not in text, (path.name, keyword)
        assert event.modality == raw.Modality
        assert event.study_pseudonym.startswith("2.25.")


def test_dx_header_exposure_ge_xr220(samples_dir: Path) -> None:
    event = event_for(*dataset_bytes(samples_dir / "DX-Im-GE_XR220-1.dcm"))
    e = event.exposure
    assert e is not None
    assert e.exposure_index == pytest.approx(51.745061) and e.target_exposure_index == pytest.approx(438.469173)
    assert e.deviation_index == pytest.approx(-9.3)
    assert e.dap_gy_cm2 == pytest.approx(0.041)  # 0.41 dGy·cm² in the header
    assert e.kvp == pytest.approx(69.64, abs=0.01)
    assert e.exposure_mas == pytest.approx(1.04)  # ExposureInuAs 1040, not the integer Exposure 1
    assert event.acquisition_datetime_utc is not None and event.acquisition_datetime_utc.tzinfo is not None


def test_mg_header_agd_ge_senographe(samples_dir: Path) -> None:
    event = event_for(*dataset_bytes(samples_dir / "MG-Im-GE_Seno_1_ForPresentation.dcm"))
    e = event.exposure
    assert e is not None
    assert e.organ_dose_mgy == pytest.approx(0.547) and e.organ_exposed == "BREAST"  # 0.00547 dGy
    assert e.entrance_dose_mgy == pytest.approx(1.694)
    assert e.kvp == 26.0
    assert e.exposure_mas == pytest.approx(20.8)  # ExposureInuAs 20800, not the integer Exposure 21


def test_cr_header_dap_kodak(samples_dir: Path) -> None:
    e = event_for(*dataset_bytes(samples_dir / "DX-Im-Carestream_DR7500-1.dcm")).exposure
    assert e is not None and e.dap_gy_cm2 == pytest.approx(1.1013) and e.kvp == 80.0


def test_rdsr_sample_carries_its_dose_report(samples_dir: Path) -> None:
    event = event_for(*dataset_bytes(samples_dir / "CT-RDSR-Siemens_Flash-TAP-SS.dcm"))
    assert event.dose_report is not None and event.dose_report.kind == "CT"
    assert event.dose_report.totals.ct_dlp_total_mgy_cm == pytest.approx(724.52)
    assert len(event.dose_report.events) == 4
    non_dose = event_for(*dataset_bytes(samples_dir / "ESR_non-dose.dcm"))
    assert non_dose.dose_report is None


def test_canaries_never_reach_the_event() -> None:
    ds, canaries = canary_object()
    event = event_for(encode_dataset(ds))
    wire = codec.encode(event)
    text = repr(event)
    for canary in canaries:
        assert canary not in text, canary
        assert canary.encode() not in wire, canary
    # the clinical content survives scrubbing
    assert event.study_description is not None and "CT CHEST" in event.study_description
    # study year − birth year (2024 − 1961): the age changes on 1 January, never on the birthday
    assert event.patient_age_years == 63 and event.patient_sex == "F" and event.patient_weight_kg == 72.0


def test_identifying_strings_include_nested_ids_and_name_parts() -> None:
    ds, canaries = canary_object("Q")
    found = identifying_strings(ds)
    assert any(c in found for c in canaries if "OTHERSEQ" in c)
    assert any(c in found for c in canaries if "FAM" in c)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CT CAP - 72F - Dr Wong", "CT CAP - 72F - Dr *"),
        ("胸部CT平扫 张三", "胸部CT平扫 *"),
        ("Limb XR", "Limb XR"),  # a surname 'Li' must not eat words
        ("call 0123456789 or x@y.org", "call * or *"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text, ("Wong", "张三", "Li"), 64) == expected


def test_descriptions_are_truncated() -> None:
    assert len(scrub_text("CT " * 200, (), 64) or "") <= 64


def test_age_from_birth_date_capped_at_90() -> None:
    ds = make_image(PatientBirthDate="19200101", StudyDate="20240301")
    assert event_for(encode_dataset(ds)).patient_age_years == 90
    ds = make_image(PatientAge="045Y", PatientBirthDate="19200101")
    assert event_for(encode_dataset(ds)).patient_age_years == 45


def test_times_in_site_zone_and_with_offset() -> None:
    ds = make_image(AcquisitionDate="20240301", AcquisitionTime="081500")
    assert event_for(encode_dataset(ds)).acquisition_datetime_utc == datetime(2024, 3, 1, 0, 15, tzinfo=UTC)
    ds = make_image(AcquisitionDate="20240301", AcquisitionTime="081500", TimezoneOffsetFromUTC="+0100")
    assert event_for(encode_dataset(ds)).acquisition_datetime_utc == datetime(2024, 3, 1, 7, 15, tzinfo=UTC)


def test_mr_coil_and_field_strength() -> None:
    ds = make_image(
        MR_IMAGE, modality="MR", ReceiveCoilName="HeadNeck_20", MagneticFieldStrength="3", TransmitCoilName="Body"
    )
    event = event_for(encode_dataset(ds))
    assert (event.mr_receive_coil, event.mr_transmit_coil, event.mr_field_strength_t) == ("HeadNeck_20", "Body", 3.0)


def test_ct_header_ctdivol_and_phantom() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = make_image(CT_IMAGE, CTDIvol=12.34, KVP="120", XRayTubeCurrent="250", ExposureTime="500", Exposure="125")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113691", "DCM", "IEC Body Dosimetry Phantom"
    ds.CTDIPhantomTypeCodeSequence = Sequence([code])
    e = event_for(encode_dataset(ds)).exposure
    assert e is not None
    assert (e.ctdivol_mgy, e.ctdi_phantom, e.kvp, e.tube_current_ma, e.exposure_time_ms, e.exposure_mas) == (
        12.34,
        "BODY32",
        120.0,
        250.0,
        500.0,
        125.0,
    )


def test_qa_patient_is_flagged_and_only_the_flag_leaves() -> None:
    ds = make_image(PatientName="QA^PHANTOM", PatientID="QA123")
    event = event_for(encode_dataset(ds))
    assert event.not_patient is True and "PHANTOM" not in repr(event)
    assert event_for(encode_dataset(make_image())).not_patient is False


def test_missing_study_uid_is_an_error_naming_the_tag() -> None:
    ds = make_image()
    del ds.StudyInstanceUID
    with pytest.raises(ExtractError, match=r"\(0020,000D\)"):
        event_for(encode_dataset(ds))


def test_same_object_twice_is_the_same_event() -> None:
    data = encode_dataset(make_image(AccessionNumber="A1"))
    a, b = event_for(data), event_for(data)
    assert a.event_id == b.event_id and codec.encode(a) == codec.encode(b)


def test_cr_header_without_microamp_seconds_keeps_the_integer_exposure(samples_dir: Path) -> None:
    e = event_for(*dataset_bytes(samples_dir / "DX-Im-Carestream_DR7500-1.dcm")).exposure
    assert e is not None and e.exposure_mas == 10.0  # only Exposure (0018,1152) = 10 is sent


def test_philips_dose_info_capture_ctdivol_from_its_exposure_dose_sequence() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = make_image("1.2.840.10008.5.1.4.1.1.7", modality="CT")
    items = []
    for ctdi in (8.5, 12.25, 3.1):
        item = Dataset()
        item.CTDIvol = ctdi
        items.append(item)
    ds.ExposureDoseSequence = Sequence(items)
    e = event_for(encode_dataset(ds)).exposure
    assert e is not None and e.ctdivol_mgy == 12.25  # the largest acquisition's CTDIvol, never a sum
