"""The de-identification allow-list: a parsed header → ``InstanceEvent``. Pure once given the keys (and, at the
edge, the vocabulary's small state file).

Only the fields of ``InstanceEvent`` leave the edge; nothing is copied wholesale, so an attribute nobody listed
(a private tag, an address, a physician) cannot leak by default. Identifiers become keyed pseudonyms, the
accession number an encrypted token, the birth date an age in whole years that changes only on 1 January
(study year − birth year, the birth year fixed at the patient's first event; capped at 90, PS3.15 practice), and
free text leaves only as known words (``vocabulary.py``): every other word, and every name, ID and number the
object itself carries, becomes a marker. Every text value is decoded strictly in its character set and cleaned
(``text.py``); one that cannot be decoded leaves as ``(undecodable)`` and is counted.

The hot path reads raw element bytes itself (pydicom's per-element conversion was most of the edge's CPU), and
whatever is per study (identifiers, pseudonyms, accession token, age, filtered descriptions) is cached.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydicom.datadict import DicomDictionary, tag_for_keyword
from pydicom.dataset import Dataset

from edge_ingest.dicomtime import combine_utc, parse_age_string, parse_da, parse_dt_utc
from edge_ingest.extract import ExtractError, Header
from edge_ingest.keys import EdgeKeys
from edge_ingest.pseudonyms import encrypt_accession, event_id_for, pseudonym, uid_pseudonym
from edge_ingest.text import UNDECODABLE, TextIssue, clean_text, element_value, elements
from edge_ingest.vocabulary import MARK, Identifiers, Vocabulary, default_vocabulary, identifiers_from
from schemas.events import DoseReport, Exposure, InstanceEvent

AGE_CAP = 90
SCRUB_MARK = MARK

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
    "MilitaryRank",
    "BranchOfService",
    "RegionOfResidence",
    "CountryOfResidence",
    "PatientInsurancePlanCodeSequence",
    "InstitutionalDepartmentName",
)
_ID_SEQUENCES = (
    "OtherPatientIDsSequence",
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "ScheduledStepAttributesSequence",
    "ReferencedRequestSequence",
    "IssuerOfAccessionNumberSequence",
)
_PHANTOM_CODES = {"113690": "HEAD16", "113691": "BODY32"}


@dataclass(frozen=True)
class DeidContext:
    """Everything de-identification needs besides the header."""

    keys: EdgeKeys = field(repr=False)
    site_id: str
    edge_id: str
    site_timezone: str
    description_max_len: int = 64
    test_patient_patterns: tuple[re.Pattern[str], ...] = ()
    vocabulary: Vocabulary = field(default_factory=default_vocabulary, repr=False, compare=False)
    on_text_issue: TextIssue | None = field(default=None, repr=False, compare=False)  # "undecodable" | "cleaned"


DoseExtractor = Callable[..., DoseReport | None]


_TAGS: dict[str, int] = {}


def _tag(keyword: str) -> int:
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        _TAGS[keyword] = tag
    return tag


@lru_cache(maxsize=8192)
def _combine_utc(date: str | None, time: str, offset: str | None, zone: str) -> datetime | None:
    return combine_utc(date, time, offset=offset, site_zone=zone)


def _get(ds: Dataset, keyword: str, on_issue: TextIssue | None = None) -> Any:
    """Value of a top-level attribute, or None when absent, empty or unreadable (a bad optional value must not
    cost the object). Text is decoded strictly and cleaned; see ``text.element_value``."""
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _tag(keyword)
    d = ds.__dict__
    elems = d.get("_rp_elems")
    if elems is None:
        elems = elements(ds)
    if tag not in elems:
        return None  # most keywords asked for are absent from any one header: answer before anything else
    memo = d.get("_rp_values")
    if memo is not None and tag in memo:  # a value this header already gave
        value = memo[tag]
    else:
        try:
            value = element_value(ds, tag, on_issue)
        except Exception:
            return None
    if value is None or value == "":
        return None
    if type(value) is not str and hasattr(value, "__len__") and len(value) == 0:
        return None
    return value


def _str(ds: Dataset, keyword: str, on_issue: TextIssue | None = None) -> str | None:
    value = _get(ds, keyword, on_issue)
    if value is None:
        return None
    if type(value) is str:  # decoded and cleaned already (text.element_value)
        return value.strip() or None
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
    if type(value) is float:
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str) and "\\" in value:
        value = value.split("\\", 1)[0]
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


_SHARED_GROUPS = 0x52009229
_PER_FRAME_GROUPS = 0x52009230


def _functional_groups(ds: Dataset, sequence: str) -> Iterator[Dataset]:
    """Items of a macro sequence in enhanced objects: shared groups first, then the first frame's."""
    elems = elements(ds)
    if _SHARED_GROUPS not in elems and _PER_FRAME_GROUPS not in elems:
        return  # not an enhanced object: most headers, and the cheap answer
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


# Every person-name attribute of the dictionary: read by tag, so finding them costs no walk over the header.
_PN_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "PN")
_ID_TAGS = frozenset(t for k in _ID_KEYWORDS if (t := tag_for_keyword(k)) is not None)
_ID_SEQUENCE_TAGS = frozenset(t for k in _ID_SEQUENCES if (t := tag_for_keyword(k)) is not None)
_WANTED_TAGS = _PN_TAGS | _ID_TAGS
_CONTENT_SEQUENCE = 0x0040A730


def _collect(ds: Dataset, found: set[str], depth: int) -> None:
    keys = elements(ds).keys()
    for tag in _WANTED_TAGS.intersection(keys):
        value = element_value(ds, tag)
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
        for v in values:
            if isinstance(v, Dataset):
                _collect(v, found, depth + 1)
                continue
            text = str(v).strip()
            if not text:
                continue
            if tag in _PN_TAGS:
                found.update(_name_parts(text))
            else:
                for piece in text.split("\\"):
                    found.add(piece.strip())
                    found.update(w for w in re.split(r"[\s,;^]+", piece) if len(w) >= 3)
    if depth < 2:
        for tag in _ID_SEQUENCE_TAGS.intersection(keys):
            for item in _seq_items_by_tag(ds, tag):
                _collect(item, found, depth + 1)


def _seq_items_by_tag(ds: Dataset, tag: int) -> list[Dataset]:
    try:
        value = ds[tag].value
        return [item for item in value if isinstance(item, Dataset)]
    except Exception:
        return []


def identifying_strings(ds: Dataset) -> tuple[str, ...]:
    """Every name part, ID and order number this object itself carries (SR person names included): what free
    text must not repeat. Only person-name, identifier and order elements are decoded."""
    found: set[str] = set()
    try:
        _collect(ds, found, 0)
    except Exception:
        pass  # a malformed optional element must not cost the object; the vocabulary still filters
    if _CONTENT_SEQUENCE in elements(ds):
        from edge_ingest.dose_sr import person_names

        for name in person_names(ds):
            found.update(_name_parts(name))
    return tuple(sorted((s for s in found if _worth_scrubbing(s)), key=len, reverse=True))


_IDENTIFIER_CACHE: OrderedDict[tuple[Any, ...], Identifiers] = OrderedDict()
_IDENTIFIER_LOCK = threading.Lock()


def object_identifiers(ds: Dataset) -> Identifiers:
    """``identifying_strings`` normalised for the vocabulary filter; cached on the raw identifier bytes, so the
    instances of one study pay once."""
    elems = elements(ds)
    keys = elems.keys()
    tags = sorted(_WANTED_TAGS.intersection(keys) | _ID_SEQUENCE_TAGS.intersection(keys))
    if _CONTENT_SEQUENCE in keys:
        return identifiers_from(identifying_strings(ds))  # an SR's names sit deep in its tree: no cheap key
    cache_key = tuple((t, _raw_key(elems[t])) for t in tags)
    with _IDENTIFIER_LOCK:  # associations run in threads
        hit = _IDENTIFIER_CACHE.get(cache_key)
        if hit is not None:
            _IDENTIFIER_CACHE.move_to_end(cache_key)
            return hit
    ids = identifiers_from(identifying_strings(ds))
    with _IDENTIFIER_LOCK:
        _IDENTIFIER_CACHE[cache_key] = ids
        if len(_IDENTIFIER_CACHE) > 1024:
            _IDENTIFIER_CACHE.popitem(last=False)
    return ids


def _raw_key(elem: Any) -> Any:
    value = getattr(elem, "value", None)
    if isinstance(value, bytes | str):
        return value
    return repr(value) if not isinstance(value, list) else id(elem)  # sequences: no cheap stable key


def _worth_scrubbing(s: str) -> bool:
    s = s.strip()
    if not s:
        return False
    if any(ord(ch) > 0x2E7F for ch in s):  # a CJK name part, even one character (张先生, a given name)
        return True
    return (len(s) >= 2 and not s.isdigit()) or (s.isdigit() and len(s) >= 3)


def scrub_text(
    text: str | None, tokens: Iterable[str], max_len: int, vocabulary: Vocabulary | None = None
) -> str | None:
    """Free text → known words only, with the given identifiers removed even where they are known words."""
    if not text:
        return None
    vocab = vocabulary or default_vocabulary()
    return vocab.filter(text, identifiers_from(tokens), max_len).text


# ------------------------------------------------------------------------------------------------ patient fields


def _study_date(ds: Dataset, reference: datetime | None) -> Any:
    on = next((d for k in ("StudyDate", "AcquisitionDate", "ContentDate") if (d := parse_da(_str(ds, k)))), None)
    if on is None and reference is not None:
        on = reference.date()
    return on


def patient_age(
    ds: Dataset, reference: datetime | None, *, patient: str | None = None, vocabulary: Vocabulary | None = None
) -> int | None:
    """Age = study year − birth year, capped at 90: it changes on 1 January only, so no sequence of events
    narrows the birth date below the year. The birth year comes from the modality's PatientAge (study year −
    age), else from the birth date; at the edge the first birth year seen for a patient is kept, so a
    PatientAge that ticks over on the birthday cannot reveal it either."""
    on = _study_date(ds, reference)
    birth = parse_da(_str(ds, "PatientBirthDate"))
    given = parse_age_string(_str(ds, "PatientAge"))
    if on is None:
        return min(given, AGE_CAP) if given is not None and 0 <= given <= 150 else None
    if given is not None and 0 <= given <= 150:
        year = on.year - given  # the modality's own statement first, as before; off by at most one year
    elif birth is not None and birth <= on:
        year = birth.year
    else:
        return None
    store = vocabulary.store if vocabulary is not None else None
    if store is not None and patient:
        year = store.birth_year(patient, year)
    age = on.year - year
    if age < 0 or age > 150:
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
    values = (ma, time_ms, mas, phantom, dap_dgy_cm2, entrance, organ_dgy, event_uid)
    kvp = _enhanced_float(ds, "KVP", "CTXRayDetailsSequence") or _enhanced_float(ds, "KVP", xr_seq)
    ctdi = _enhanced_float(ds, "CTDIvol", ct_seq) or _max_item_float(ds, "ExposureDoseSequence", "CTDIvol")
    rest = (_float(ds, "ExposureIndex"), _float(ds, "TargetExposureIndex"), _float(ds, "DeviationIndex"),
            _str(ds, "OrganExposed"), _float(ds, "TotalTimeOfFluoroscopy"), _float(ds, "WaterEquivalentDiameter"))
    if kvp is None and ctdi is None and all(v is None for v in values + rest):
        return None  # cheaper than building an empty Exposure and asking it
    exposure = Exposure(
        kvp=kvp,
        tube_current_ma=ma,
        exposure_time_ms=time_ms,
        exposure_mas=mas,
        ctdivol_mgy=ctdi,
        ctdi_phantom=phantom,
        dap_gy_cm2=dap_dgy_cm2 / 10 if dap_dgy_cm2 is not None else None,
        exposure_index=rest[0],
        target_exposure_index=rest[1],
        deviation_index=rest[2],
        entrance_dose_mgy=entrance,
        organ_dose_mgy=organ_dgy * 100 if organ_dgy is not None else None,  # OrganDose is in dGy
        organ_exposed=rest[3],
        fluoro_time_s=rest[4],
        water_equivalent_diameter_mm=rest[5],
        irradiation_event_pseudonym=uid_pseudo(event_uid.split("\\")[0]) if event_uid else None,
    )
    return exposure


# ------------------------------------------------------------------------------------------------------ the event


def _requested_procedure_description(ds: Dataset, issue: TextIssue | None = None) -> str | None:
    text = _str(ds, "RequestedProcedureDescription", issue)
    if text:
        return text
    for item in _seq_items(ds, "RequestAttributesSequence")[:1]:
        return _str(item, "RequestedProcedureDescription", issue)
    return None


@lru_cache(maxsize=16384)
def _pseudonym(keys: EdgeKeys, label: str, value: str) -> str:
    return pseudonym(keys, label, value)


@lru_cache(maxsize=16384)
def _uid_pseudonym(keys: EdgeKeys, value: str) -> str:
    return uid_pseudonym(keys, value)


@lru_cache(maxsize=4096)
def _accession_token(keys: EdgeKeys, accession: str) -> str:
    return encrypt_accession(keys, accession)


_DEVICE_TEXT = re.compile(r"[A-Za-z0-9_ .+\-:#/]{1,32}")
# a year, a date, a phone or record number standing alone: never part of a name kept as is (CTAWP73491 is)
_LONE_NUMBER = re.compile(r"(?<![A-Za-z0-9])\d{4,}(?![A-Za-z0-9])|\d+[-/.:]\d+[-/.:]\d+")


class Describer:
    """Filters an object's free-text fields through the vocabulary and remembers the unknown words, so the
    vocabulary's counts are updated once per study and word, not per field or instance."""

    def __init__(self, vocabulary: Vocabulary, identifiers: Identifiers, max_len: int,
                 on_issue: TextIssue | None) -> None:
        self.vocabulary = vocabulary
        self.identifiers = identifiers
        self.max_len = max_len
        self.on_issue = on_issue
        self.unknown: list[str] = []

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return None
        text = clean_text(text, self.on_issue)  # SR text arrives decoded by pydicom: escapes, U+FFFD
        if not text or text == UNDECODABLE:
            return text or None
        result = self.vocabulary.filter(text, self.identifiers, self.max_len)
        self.unknown.extend(result.unknown)
        return result.text

    def device_text(self, text: str | None) -> str | None:
        """Names the console sets, not the radiographer (coil names like HeadNeck_20): kept as they are when
        short, Latin and free of this object's identifiers; otherwise filtered like any description."""
        if text and _DEVICE_TEXT.fullmatch(text) and not _LONE_NUMBER.search(text):
            tokens = re.findall(r"[A-Za-z0-9]+", text.casefold())
            # one character names no one: DRXEVO1's "1" must not match a "1" among the identifiers
            words = {w for w in (*tokens, *(p for t in tokens for p in re.findall(r"[a-z]+|\d+", t))) if len(w) > 1}
            if not words & self.identifiers.latin:
                return text
        return self(text)

    def field(self, ds: Dataset, keyword: str) -> str | None:
        return self(_str(ds, keyword, self.on_issue))

    def learn(self, study: str | None, patient: str | None) -> None:
        store = self.vocabulary.store
        if store is not None and self.unknown and study:
            store.record(study, patient, self.unknown)


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
    issue = ctx.on_text_issue
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
        return _combine_utc(date, time, offset, zone)

    acquisition = parse_dt_utc(_str(ds, "AcquisitionDateTime"), offset=offset, site_zone=zone)
    if acquisition is None:
        acquisition = dt("AcquisitionDate", "AcquisitionTime", "ContentDate", "SeriesDate", "StudyDate")
    if acquisition is None:
        for item in _functional_groups(ds, "FrameContentSequence"):
            acquisition = parse_dt_utc(_str(item, "FrameAcquisitionDateTime"), offset=offset, site_zone=zone)
    study_dt = dt("StudyDate", "StudyTime")
    content_dt = dt("ContentDate", "ContentTime", "AcquisitionDate", "SeriesDate", "StudyDate")

    describe = Describer(ctx.vocabulary, object_identifiers(ds), ctx.description_max_len, issue)

    def uid_pseudo(uid: str) -> str:
        return _uid_pseudonym(keys, uid)

    def text(keyword: str) -> str | None:
        return _str(ds, keyword, issue)

    instance_pseudo = uid_pseudo(sop_instance)
    study_pseudo = uid_pseudo(study_uid)
    series_uid = _str(ds, "SeriesInstanceUID")
    patient_id = _str(ds, "PatientID")
    patient_pseudo = _pseudonym(keys, "patient", patient_id) if patient_id else None
    accession = _str(ds, "AccessionNumber")
    manufacturer = text("Manufacturer")
    model = text("ManufacturerModelName")
    station = text("StationName")
    station_out = describe.device_text(station)  # console-set; a typed name still goes
    serial = text("DeviceSerialNumber")
    device_key = "|".join(v or "" for v in (manufacturer, model, serial, station))

    dose_report = None
    if dose_extractor is not None and (_str(ds, "Modality") == "SR" or _CONTENT_SEQUENCE in elements(ds)):
        dose_report = dose_extractor(
            ds,
            pseudonymize_uid=uid_pseudo,
            to_utc=lambda value: parse_dt_utc(value, offset=offset, site_zone=zone),
            scrub=lambda t: describe(t) or "",
        )

    patterns = ctx.test_patient_patterns
    event = InstanceEvent(
        event_id=event_id_for(instance_pseudo),
        site_id=ctx.site_id,
        edge_id=ctx.edge_id,
        received_at=received_at,
        calling_ae=calling_ae,
        sop_class_uid=sop_class,
        transfer_syntax_uid=header.transfer_syntax_uid,
        instance_pseudonym=instance_pseudo,
        study_pseudonym=study_pseudo,
        series_pseudonym=uid_pseudo(series_uid) if series_uid else None,
        patient_pseudonym=patient_pseudo,
        accession_pseudonym=_pseudonym(keys, "accession", accession) if accession else None,
        accession_token=_accession_token(keys, accession) if accession else None,
        device_id=_pseudonym(keys, "device", device_key) if device_key.strip("|") else None,
        modality=text("Modality"),
        manufacturer=manufacturer,
        model=model,
        station_name=station_out,
        device_serial=serial,
        software_versions=text("SoftwareVersions"),
        image_type=tuple(p.strip() for p in (text("ImageType") or "").split("\\") if p.strip()),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        patient_age_years=patient_age(ds, study_dt or acquisition, patient=patient_pseudo,
                                      vocabulary=ctx.vocabulary),
        patient_sex=patient_sex(ds),
        patient_weight_kg=patient_weight_kg(ds),
        patient_height_m=patient_height_m(ds),
        not_patient=is_test_patient(ds, patterns),
        study_description=describe.field(ds, "StudyDescription"),
        series_description=describe.field(ds, "SeriesDescription"),
        protocol_name=describe.field(ds, "ProtocolName"),
        requested_procedure_description=describe(_requested_procedure_description(ds, issue)),
        performed_procedure_step_description=describe.field(ds, "PerformedProcedureStepDescription"),
        body_part=describe.field(ds, "BodyPartExamined"),
        view_position=text("ViewPosition"),
        laterality=text("ImageLaterality") or text("Laterality"),
        study_datetime_utc=study_dt,
        series_datetime_utc=dt("SeriesDate", "SeriesTime", "StudyDate"),
        acquisition_datetime_utc=acquisition,
        content_datetime_utc=content_dt,
        pps_start_utc=dt("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
        pps_end_utc=dt("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"),
        mr_receive_coil=describe.device_text(_enhanced_str(ds, "ReceiveCoilName", "MRReceiveCoilSequence")),
        mr_transmit_coil=describe.device_text(_enhanced_str(ds, "TransmitCoilName", "MRTransmitCoilSequence")),
        mr_field_strength_t=_float(ds, "MagneticFieldStrength"),
        number_of_frames=_int(ds, "NumberOfFrames"),
        exposure=exposure_from_header(ds, uid_pseudo),
        dose_report=dose_report,
    )
    describe.learn(study_pseudo, patient_pseudo)
    return event
