"""The de-identification allow-list: a parsed header → ``InstanceEvent``. Pure once given the keys.

Only the fields of ``InstanceEvent`` leave the edge; nothing is copied wholesale, so an attribute nobody listed
(a private tag, an address, a physician) cannot leak by default. Identifiers become keyed pseudonyms, the
accession number an encrypted token, the birth date an age in whole years (capped at 90, PS3.15 practice), and
free text is kept (exam types are recognised from it) but scrubbed of every name, ID and number the header itself
says belongs to a person or an order, then truncated.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from edge_ingest.dicomtime import age_in_years, combine_utc, parse_age_string, parse_da, parse_dt_utc
from edge_ingest.extract import ExtractError, Header
from edge_ingest.keys import EdgeKeys
from edge_ingest.pseudonyms import encrypt_accession, event_id_for, pseudonym, uid_pseudonym
from schemas.events import DoseReport, Exposure, InstanceEvent

AGE_CAP = 90
SCRUB_MARK = "*"

# Attributes whose values are identifiers of a person or an order: used only to scrub free text.
_ID_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "StudyID",
    "AdmissionID",
    "ServiceEpisodeID",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "PatientBirthDate",
    "PatientTelephoneNumbers",
    "PatientAddress",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "MedicalRecordLocator",
)
_ID_SEQUENCES = ("OtherPatientIDsSequence", "RequestAttributesSequence", "ReferencedPatientSequence")
_PHANTOM_CODES = {"113690": "HEAD16", "113691": "BODY32"}
_LONG_NUMBER = re.compile(r"\d[\d\-/.]{5,}\d")  # ≥7 digits-ish: record numbers, phone numbers, dates
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


@dataclass(frozen=True)
class DeidContext:
    """Everything de-identification needs besides the header."""

    keys: EdgeKeys = field(repr=False)
    site_id: str
    edge_id: str
    site_timezone: str
    description_max_len: int = 64
    test_patient_patterns: tuple[re.Pattern[str], ...] = ()


DoseExtractor = Callable[..., DoseReport | None]


@lru_cache(maxsize=1024)
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def _get(ds: Dataset, keyword: str) -> Any:
    """Value of a top-level attribute, or None when absent, empty or undecodable (a bad optional value must not
    cost the object). Looks the tag up first so absent attributes cost no conversion."""
    tag = _tag(keyword)
    if tag not in ds._dict:
        return None
    try:
        value = ds[tag].value
    except Exception:
        return None
    if value is None or value == "" or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 0):
        return None
    return value


def _str(ds: Dataset, keyword: str) -> str | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip().strip("\x00").strip()
    return text or None


def _float(ds: Dataset, keyword: str) -> float | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    if type(value).__name__ == "MultiValue" or isinstance(value, list | tuple):
        value = value[0] if len(value) else None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _int(ds: Dataset, keyword: str) -> int | None:
    f = _float(ds, keyword)
    return int(f) if f is not None else None


def _seq_items(ds: Dataset, keyword: str) -> list[Dataset]:
    value = _get(ds, keyword)
    try:
        return [item for item in value if isinstance(item, Dataset)] if value is not None else []
    except TypeError:
        return []


def _functional_groups(ds: Dataset, sequence: str) -> Iterator[Dataset]:
    """Items of a macro sequence in enhanced objects: shared groups first, then the first frame's."""
    for container in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in _seq_items(ds, container)[:1]:
            yield from _seq_items(group, sequence)[:1]


def _enhanced_float(ds: Dataset, keyword: str, sequence: str) -> float | None:
    value = _float(ds, keyword)
    if value is not None:
        return value
    for item in _functional_groups(ds, sequence):
        value = _float(item, keyword)
        if value is not None:
            return value
    return None


def _max_item_float(ds: Dataset, sequence: str, keyword: str) -> float | None:
    """Largest value over a sequence's items (a Philips CT dose-info capture lists CTDIvol per acquisition)."""
    values = [v for item in _seq_items(ds, sequence) if (v := _float(item, keyword)) is not None]
    return max(values) if values else None


def _enhanced_str(ds: Dataset, keyword: str, sequence: str) -> str | None:
    value = _str(ds, keyword)
    if value is not None:
        return value
    for item in _functional_groups(ds, sequence):
        value = _str(item, keyword)
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------------------------------------------- scrubbing


def _name_parts(value: Any) -> list[str]:
    text = str(value)
    parts: list[str] = []
    for group in text.split("="):  # alphabetic = ideographic = phonetic representations
        comps = [c.strip() for c in group.split("^") if c.strip()]
        parts.extend(comps)
        if len(comps) >= 2:
            a, b = comps[0], comps[1]
            parts.extend([a + b, b + a, f"{a} {b}", f"{b} {a}", f"{a}, {b}"])
        parts.extend(w for c in comps for w in c.split() if len(w) >= 2)
    return parts


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


_ID_TAGS = frozenset(t for k in _ID_KEYWORDS if (t := tag_for_keyword(k)) is not None)
_ID_SEQUENCE_TAGS = frozenset(t for k in _ID_SEQUENCES if (t := tag_for_keyword(k)) is not None)


def identifying_strings(ds: Dataset) -> tuple[str, ...]:
    """Every name part, ID and order number this object itself carries: what free text must not repeat.
    Only person-name, identifier and order elements are decoded; the rest of the header stays raw."""
    found: set[str] = set()

    def collect(d: Dataset, depth: int) -> None:
        for tag, raw in list(d._dict.items()):
            vr = raw.VR or _dictionary_vr(tag)  # implicit VR carries no VR on the wire
            if vr != "PN" and tag not in _ID_TAGS and not (vr == "SQ" and tag in _ID_SEQUENCE_TAGS and depth < 2):
                continue
            try:
                value = d[tag].value
                if vr == "SQ":
                    for item in value:
                        collect(item, depth + 1)
                    continue
                values = value if type(value).__name__ == "MultiValue" else [value]
                for v in values:
                    if not v:
                        continue
                    if vr == "PN":
                        found.update(_name_parts(v))
                    else:
                        text = str(v).strip()
                        found.add(text)
                        found.update(w for w in re.split(r"[\s,;^]+", text) if len(w) >= 3)
            except Exception:
                continue

    collect(ds, 0)
    return tuple(sorted((s for s in found if _worth_scrubbing(s)), key=len, reverse=True))


def _worth_scrubbing(s: str) -> bool:
    s = s.strip()
    if not s:
        return False
    if any(ord(ch) > 0x2E7F for ch in s):  # CJK names are short; any 2+ characters are worth removing
        return len(s) >= 2
    return (len(s) >= 2 and not s.isdigit()) or (s.isdigit() and len(s) >= 3)


@lru_cache(maxsize=512)
def _scrub_pattern(tokens: tuple[str, ...]) -> re.Pattern[str] | None:
    if not tokens:
        return None
    alternatives = []
    for t in tokens:
        escaped = re.escape(t)
        if t.isascii():
            # word boundaries keep "Li" (a surname) from eating "Limb"
            alternatives.append(rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])")
        else:
            alternatives.append(escaped)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def scrub_text(text: str | None, tokens: tuple[str, ...], max_len: int) -> str | None:
    """Remove identifiers from free text, then truncate."""
    if not text:
        return None
    text = unicodedata.normalize("NFKC", text)
    pattern = _scrub_pattern(tokens)
    if pattern is not None:
        text = pattern.sub(SCRUB_MARK, text)
    text = _EMAIL.sub(SCRUB_MARK, text)
    text = _LONG_NUMBER.sub(SCRUB_MARK, text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:max_len] or None


# ------------------------------------------------------------------------------------------------ patient fields


def patient_age(ds: Dataset, reference: datetime | None) -> int | None:
    """Whole years from PatientAge, else from the birth date and the study (or acquisition) date; capped at 90."""
    age = parse_age_string(_str(ds, "PatientAge"))
    if age is None:
        birth = parse_da(_str(ds, "PatientBirthDate"))
        on = next((d for k in ("StudyDate", "AcquisitionDate", "ContentDate") if (d := parse_da(_str(ds, k)))), None)
        if on is None and reference is not None:
            on = reference.date()
        if birth is not None and on is not None and birth <= on:
            age = age_in_years(birth, on)
    if age is None or age < 0 or age > 150:
        return None
    return min(age, AGE_CAP)


def patient_sex(ds: Dataset) -> str | None:
    value = (_str(ds, "PatientSex") or "").upper()[:1]
    return value if value in ("M", "F", "O") else None


def patient_weight_kg(ds: Dataset) -> float | None:
    w = _float(ds, "PatientWeight")
    return round(w, 2) if w is not None and 0 < w < 500 else None


def patient_height_m(ds: Dataset) -> float | None:
    h = _float(ds, "PatientSize")
    if h is None or h <= 0:
        return None
    if 30 <= h <= 250:  # quirk: some consoles store centimetres in a metres attribute
        h = h / 100
    return round(h, 3) if h < 3 else None


def is_test_patient(ds: Dataset, patterns: tuple[re.Pattern[str], ...]) -> bool:
    if not patterns:
        return False
    candidates = [_str(ds, "PatientName"), _str(ds, "PatientID")]
    return any(p.search(c) for c in candidates if c for p in patterns)


# ------------------------------------------------------------------------------------------------------- exposure


def exposure_from_header(ds: Dataset, uid_pseudo: Callable[[str], str]) -> Exposure | None:
    """Dose and exposure attributes of one image header, in the units named by each field."""
    ct_seq = "CTExposureSequence"
    xr_seq = "XRayExposureControlSensingRegionsSequence"
    ma = _enhanced_float(ds, "XRayTubeCurrentInmA", ct_seq) or _float(ds, "XRayTubeCurrent")
    time_ms = _enhanced_float(ds, "ExposureTimeInms", ct_seq) or _float(ds, "ExposureTime")
    if time_ms is None and (us := _float(ds, "ExposureTimeInuS")) is not None:
        time_ms = us / 1000
    # (0018,1152) Exposure is an integer (IS): the µAs value, where sent, keeps the decimals (1.04, not 1 mAs)
    mas = _enhanced_float(ds, "ExposureInmAs", ct_seq)
    if mas is None and (uas := _float(ds, "ExposureInuAs")) is not None:
        mas = uas / 1000
    if mas is None:
        mas = _float(ds, "Exposure")
    phantom = None
    for item in _seq_items(ds, "CTDIPhantomTypeCodeSequence")[:1]:
        phantom = _PHANTOM_CODES.get(_str(item, "CodeValue") or "")
    dap_dgy_cm2 = _float(ds, "ImageAndFluoroscopyAreaDoseProduct")
    entrance = _float(ds, "EntranceDoseInmGy")
    if entrance is None and (e_dgy := _float(ds, "EntranceDose")) is not None and e_dgy > 0:
        entrance = e_dgy * 100  # (0040,0302) EntranceDose is in dGy; 0 means "not recorded"
    organ_dgy = _float(ds, "OrganDose")
    event_uid = _str(ds, "IrradiationEventUID")
    exposure = Exposure(
        kvp=_enhanced_float(ds, "KVP", "CTXRayDetailsSequence") or _enhanced_float(ds, "KVP", xr_seq),
        tube_current_ma=ma,
        exposure_time_ms=time_ms,
        exposure_mas=mas,
        ctdivol_mgy=_enhanced_float(ds, "CTDIvol", ct_seq) or _max_item_float(ds, "ExposureDoseSequence", "CTDIvol"),
        ctdi_phantom=phantom,
        dap_gy_cm2=dap_dgy_cm2 / 10 if dap_dgy_cm2 is not None else None,
        exposure_index=_float(ds, "ExposureIndex"),
        target_exposure_index=_float(ds, "TargetExposureIndex"),
        deviation_index=_float(ds, "DeviationIndex"),
        entrance_dose_mgy=entrance,
        organ_dose_mgy=organ_dgy * 100 if organ_dgy is not None else None,  # OrganDose is in dGy
        organ_exposed=_str(ds, "OrganExposed"),
        fluoro_time_s=_float(ds, "TotalTimeOfFluoroscopy"),
        water_equivalent_diameter_mm=_float(ds, "WaterEquivalentDiameter"),
        irradiation_event_pseudonym=uid_pseudo(event_uid.split("\\")[0]) if event_uid else None,
    )
    return None if exposure.is_empty() else exposure


# ------------------------------------------------------------------------------------------------------ the event


def _requested_procedure_description(ds: Dataset) -> str | None:
    text = _str(ds, "RequestedProcedureDescription")
    if text:
        return text
    for item in _seq_items(ds, "RequestAttributesSequence")[:1]:
        return _str(item, "RequestedProcedureDescription")
    return None


def build_event(
    header: Header,
    ctx: DeidContext,
    *,
    calling_ae: str,
    received_at: datetime,
    sop_class_uid: str | None = None,
    dose_extractor: DoseExtractor | None = None,
) -> InstanceEvent:
    """The allow-list. Raises ``ExtractError`` when the object lacks the UIDs that identify it."""
    ds = header.dataset
    keys = ctx.keys
    sop_instance = _str(ds, "SOPInstanceUID")
    study_uid = _str(ds, "StudyInstanceUID")
    sop_class = sop_class_uid or _str(ds, "SOPClassUID")
    if not sop_instance:
        raise ExtractError("missing (0008,0018) SOPInstanceUID")
    if not study_uid:
        raise ExtractError("missing (0020,000D) StudyInstanceUID")
    if not sop_class:
        raise ExtractError("missing (0008,0016) SOPClassUID")

    offset = _str(ds, "TimezoneOffsetFromUTC")
    zone = ctx.site_timezone

    def dt(date_kw: str, time_kw: str, *fallback_dates: str) -> datetime | None:
        # a date without a time would pose as local midnight: better unknown than wrong
        time = _str(ds, time_kw)
        if time is None:
            return None
        date = _str(ds, date_kw) or next((d for k in fallback_dates if (d := _str(ds, k))), None)
        return combine_utc(date, time, offset=offset, site_zone=zone)

    acquisition = parse_dt_utc(_str(ds, "AcquisitionDateTime"), offset=offset, site_zone=zone)
    if acquisition is None:
        acquisition = dt("AcquisitionDate", "AcquisitionTime", "ContentDate", "SeriesDate", "StudyDate")
    if acquisition is None:
        for item in _functional_groups(ds, "FrameContentSequence"):
            acquisition = parse_dt_utc(_str(item, "FrameAcquisitionDateTime"), offset=offset, site_zone=zone)
    study_dt = dt("StudyDate", "StudyTime")
    content_dt = dt("ContentDate", "ContentTime", "AcquisitionDate", "SeriesDate", "StudyDate")

    tokens = identifying_strings(ds)
    max_len = ctx.description_max_len

    def scrub(text: str | None) -> str | None:
        return scrub_text(text, tokens, max_len)

    def uid_pseudo(uid: str) -> str:
        return uid_pseudonym(keys, uid)

    instance_pseudo = uid_pseudo(sop_instance)
    series_uid = _str(ds, "SeriesInstanceUID")
    patient_id = _str(ds, "PatientID")
    accession = _str(ds, "AccessionNumber")
    manufacturer = _str(ds, "Manufacturer")
    model = _str(ds, "ManufacturerModelName")
    station = _str(ds, "StationName")
    serial = _str(ds, "DeviceSerialNumber")
    device_key = "|".join(v or "" for v in (manufacturer, model, serial, station))

    dose_report = None
    if dose_extractor is not None and (_str(ds, "Modality") == "SR" or "ContentSequence" in ds):
        dose_report = dose_extractor(
            ds,
            pseudonymize_uid=uid_pseudo,
            to_utc=lambda value: parse_dt_utc(value, offset=offset, site_zone=zone),
            scrub=lambda text: scrub_text(text, tokens, max_len) or "",
        )

    patterns = ctx.test_patient_patterns
    return InstanceEvent(
        event_id=event_id_for(instance_pseudo),
        site_id=ctx.site_id,
        edge_id=ctx.edge_id,
        received_at=received_at,
        calling_ae=calling_ae,
        sop_class_uid=sop_class,
        transfer_syntax_uid=header.transfer_syntax_uid,
        instance_pseudonym=instance_pseudo,
        study_pseudonym=uid_pseudo(study_uid),
        series_pseudonym=uid_pseudo(series_uid) if series_uid else None,
        patient_pseudonym=pseudonym(keys, "patient", patient_id) if patient_id else None,
        accession_pseudonym=pseudonym(keys, "accession", accession) if accession else None,
        accession_token=encrypt_accession(keys, accession) if accession else None,
        device_id=pseudonym(keys, "device", device_key) if device_key.strip("|") else None,
        modality=_str(ds, "Modality"),
        manufacturer=manufacturer,
        model=model,
        station_name=station,
        device_serial=serial,
        software_versions=_str(ds, "SoftwareVersions"),
        image_type=tuple(p.strip() for p in (_str(ds, "ImageType") or "").split("\\") if p.strip()),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        patient_age_years=patient_age(ds, study_dt or acquisition),
        patient_sex=patient_sex(ds),
        patient_weight_kg=patient_weight_kg(ds),
        patient_height_m=patient_height_m(ds),
        not_patient=is_test_patient(ds, patterns),
        study_description=scrub(_str(ds, "StudyDescription")),
        series_description=scrub(_str(ds, "SeriesDescription")),
        protocol_name=scrub(_str(ds, "ProtocolName")),
        requested_procedure_description=scrub(_requested_procedure_description(ds)),
        performed_procedure_step_description=scrub(_str(ds, "PerformedProcedureStepDescription")),
        body_part=scrub(_str(ds, "BodyPartExamined")),
        view_position=_str(ds, "ViewPosition"),
        laterality=_str(ds, "ImageLaterality") or _str(ds, "Laterality"),
        study_datetime_utc=study_dt,
        series_datetime_utc=dt("SeriesDate", "SeriesTime", "StudyDate"),
        acquisition_datetime_utc=acquisition,
        content_datetime_utc=content_dt,
        pps_start_utc=dt("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
        pps_end_utc=dt("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"),
        mr_receive_coil=scrub(_enhanced_str(ds, "ReceiveCoilName", "MRReceiveCoilSequence")),
        mr_transmit_coil=scrub(_enhanced_str(ds, "TransmitCoilName", "MRTransmitCoilSequence")),
        mr_field_strength_t=_float(ds, "MagneticFieldStrength"),
        number_of_frames=_int(ds, "NumberOfFrames"),
        exposure=exposure_from_header(ds, uid_pseudo),
        dose_report=dose_report,
    )
