"""Property tests: names, IDs, dates, phone numbers and addresses (Faker zh_CN / en_US / de_DE / ja_JP) inserted
into every free-text field of images, dose SRs, MPPS and HL7, in every character set; no sensitive string, nor
its NFKC / case-folded / separator-free / transliterated form, appears in any event.

About 11,000 generated cases; derandomized (the same cases in every CI run, so a failure reproduces), no deadline.
A "leak" is a form that appears in what leaves for the text with the PHI but not for the same text without it:
a given-name character that is also part of a known word (心 in 心脏) is not a leak when 心脏 was in the text.
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from edge_ingest.deid import DeidContext, build_event
from edge_ingest.dose_sr import extract_dose_report
from edge_ingest.extract import Header, parse_header
from edge_ingest.hl7 import decode_bytes as hl7_decode
from edge_ingest.hl7 import parse, to_workflow_events
from edge_ingest.keys import EdgeKeys
from edge_ingest.mpps import mpps_event
from edge_ingest.vocabulary import default_vocabulary, identifiers_from
from schemas import codec
from tests.helpers import encode_dataset, make_image
from tests.unit.test_deid_text import strings

KEYS = EdgeKeys(b"k" * 32, b"a" * 32)
CTX = DeidContext(keys=KEYS, site_id="site-a", edge_id="edge-1", site_timezone="Asia/Shanghai")
NOW = datetime(2026, 3, 17, 3, 0, tzinfo=UTC)
LOCALES = ("zh_CN", "en_US", "de_DE", "ja_JP")
FAKERS = {loc: Faker(loc) for loc in LOCALES}
SCALE = float(os.environ.get("RADPULSE_PROPERTY_SCALE", "1"))  # e.g. 0.05 while developing


def ci(examples: int) -> settings:
    """Derandomized (the same cases on every run, so a CI failure reproduces), no deadline, no example database."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), database=None)

TEMPLATES = (
    "CT胸部平扫 {}", "{} 头颅CT平扫", "CT chest {} w/o contrast", "MR knee left {}", "{}", "胸腹盆增强 {} 复查",
    "XR CHEST PA {} LAT", "CTA coronary {} ECG gated", "腰椎MR平扫({})", "Thorax {} 1.0 B70f", "{} 先生 胸部CT",
    "乳腺钼靶筛查 {}女士", "CT abdomen {}, follow up", "MRI brain: {}", "低剂量胸部CT {}", "Knee ap+lat {}",
)
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%m/%d/%Y", "%Y年%m月%d日", "%d %B %Y", "%B %d, %Y", "%Y/%m/%d")


@dataclasses.dataclass
class Person:
    family: str
    given: str
    ids: list[str]  # patient ID, ID card / SSN, accession
    phone: str
    address: str
    postcode: str
    birth: date
    birth_text: str  # as typed in free text

    @property
    def name(self) -> str:
        return f"{self.family}{self.given}" if _cjk(self.family) else f"{self.given} {self.family}"

    def sensitive(self) -> list[str]:
        return [self.family, self.given, self.name, *self.ids, self.phone, self.address, self.postcode,
                self.birth_text, self.birth.strftime("%Y%m%d")]

    def header_values(self) -> list[str]:
        return [f"{self.family}^{self.given}", *self.ids, self.phone, self.address, self.postcode]


def _cjk(text: str) -> bool:
    return any("\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in text)


def _pool(locale: str, n: int) -> list[tuple[Any, ...]]:
    """Faker's people for one locale, generated once (Faker is the slow part; hypothesis picks among them)."""
    fake = FAKERS[locale]
    fake.seed_instance(20261207)
    out = []
    for _ in range(n):
        ssn = fake.ssn() if hasattr(fake, "ssn") else fake.bothify("##########")
        out.append((fake.last_name(), fake.first_name(), [fake.bothify("P#######"), ssn, fake.bothify("ACC######")],
                    fake.phone_number(), fake.street_address(), fake.postcode(),
                    fake.date_of_birth(minimum_age=0, maximum_age=100)))
    return out


POOL = {loc: _pool(loc, 300) for loc in LOCALES}


@st.composite
def people(draw: Any) -> Person:
    locale = draw(st.sampled_from(LOCALES))
    family, given, ids, phone, address, postcode, birth = draw(st.sampled_from(POOL[locale]))
    # names and numbers recombined across the pool: more distinct people than Faker was asked for
    if draw(st.booleans()):
        given = draw(st.sampled_from(POOL[locale]))[1]
    fmt = draw(st.sampled_from(DATE_FORMATS))
    return Person(family=family, given=given, ids=list(ids), phone=phone, address=address, postcode=postcode,
                  birth=birth, birth_text=birth.strftime(fmt))


def _forms(value: str) -> set[str]:
    """The ways a string can reappear: as is, NFKC, case-folded, without separators, transliterated."""
    v = unicodedata.normalize("NFKC", value).strip()
    out = {v, v.casefold()}
    bare = re.sub(r"[\W_]+", "", v).casefold()
    out.add(bare)
    stripped = "".join(c for c in unicodedata.normalize("NFKD", bare) if not unicodedata.combining(c))
    german = bare.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    out |= {stripped, german}
    keep = set()
    for f in out:
        if _cjk(f):
            if len(f) >= 1:
                keep.add(f)
        elif len(f) >= 4 or (len(f) >= 3 and not f.isdigit()):
            keep.add(f)  # shorter Latin forms (a 2-letter given name, "12") occur by chance in any text
    return keep


def _haystack(strings: list[str]) -> tuple[str, str]:
    text = "\n".join(unicodedata.normalize("NFKC", s) for s in strings).casefold()
    return text, re.sub(r"[\W_]+", "", text)


def leaks(person_values: list[str], with_phi: list[str], without_phi: list[str]) -> list[str]:
    hay, bare = _haystack(with_phi)
    base, base_bare = _haystack(without_phi)
    found = []
    for value in person_values:
        for form in _forms(value):
            f = form.casefold()
            if (f in hay and f not in base) or (len(f) >= 4 and f in bare and f not in base_bare):
                found.append(f"{value!r} as {form!r}")
    return found




def _free_text(event: object) -> list[str]:
    """The event's strings minus pseudonyms, tokens and UIDs (random hex/digits match digit forms by chance)."""
    return [s for s in strings(event) if not re.fullmatch(r"[0-9a-f]{32}|rpa1\..*|2\.25\.\d+|[0-9a-f-]{36}|[\d.]+", s)]


# --------------------------------------------------------------------------------------------- text level


@ci(6000)
@given(person=people(), template=st.sampled_from(TEMPLATES), what=st.sampled_from(("name", "family", "given", "id",
       "phone", "address", "postcode", "birth", "all")))
def test_descriptions_never_carry_the_objects_own_identifiers(person: Person, template: str, what: str) -> None:
    values = {"name": [person.name], "family": [person.family], "given": [person.given], "id": person.ids[:2],
              "phone": [person.phone], "address": [person.address], "postcode": [person.postcode],
              "birth": [person.birth_text], "all": [person.name, person.ids[0], person.phone, person.birth_text]}[what]
    text = template.format(" ".join(values))
    ids = identifiers_from([*person.header_values(), person.birth.strftime("%Y%m%d")])
    vocab = default_vocabulary()
    out = vocab.filter(text, ids, 64).text or ""
    base = vocab.filter(template.format(""), ids, 64).text or ""
    assert not leaks(values, [out], [base]), (text, out)


@ci(2400)
@given(person=people(), template=st.sampled_from(TEMPLATES))
def test_foreign_names_and_numbers_leave_only_as_known_words(person: Person, template: str) -> None:
    """No identifiers in the header (an N-SET, a colleague's name): the vocabulary alone. A name word that is
    itself a radiology word (Long, Hand, 胸) cannot be told apart from it and is excluded from the check."""
    vocab = default_vocabulary()
    values = [person.name, person.ids[0], person.ids[1], person.phone, person.birth_text]
    text = template.format(" ".join(values))
    out = vocab.filter(text, max_len=256).text or ""
    base = vocab.filter(template.format(""), max_len=256).text or ""
    known = vocab.latin | vocab.cjk
    checked = [v for v in values if unicodedata.normalize("NFKC", v).casefold() not in known]
    if _cjk(person.family):
        checked = [v for v in checked if v not in (person.family, person.given)] + [person.name]
    assert not leaks(checked, [out], [base]), (text, out)


# ------------------------------------------------------------------------------------------ DICOM objects


def _encoders() -> dict[str, Any]:
    def iso2022(prefix: bytes, codec_name: str) -> Any:
        return lambda t: prefix + t.encode(codec_name)

    def jp2(t: str) -> bytes:
        b = t.encode("iso2022_jp_2")
        if b"\x1b." in b or b"\x1bN" in b:  # ISO 8859 via single shift: not a DICOM code extension
            raise UnicodeEncodeError("iso2022_jp_2", t, 0, 1, "not DICOM")
        return b

    return {
        "ISO_IR 192": lambda t: t.encode("utf-8"),
        "GB18030": lambda t: t.encode("gb18030"),
        "GBK": lambda t: t.encode("gbk"),
        "\\ISO 2022 IR 58": iso2022(b"\x1b$)A", "gb2312"),
        "\\ISO 2022 IR 149": iso2022(b"\x1b$)C", "euc_kr"),
        "\\ISO 2022 IR 87": lambda t: t.encode("iso2022_jp"),
        "\\ISO 2022 IR 87\\ISO 2022 IR 159": jp2,
        "ISO_IR 100": lambda t: t.encode("latin-1"),
        "ISO_IR 101": lambda t: t.encode("iso8859_2"),
        "": lambda t: t.encode("ascii"),
    }


ENCODERS = _encoders()
TEXT_FIELDS = {"StudyDescription": "LO", "SeriesDescription": "LO", "ProtocolName": "LO",
               "RequestedProcedureDescription": "LO", "PerformedProcedureStepDescription": "LO",
               "BodyPartExamined": "CS", "StationName": "SH"}


def _raw(ds: Dataset, keyword: str, vr: str, value: bytes) -> None:
    tag = Tag(tag_for_keyword(keyword))
    if len(value) % 2:
        value += b" "
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def _encodable(charset: str, texts: list[str]) -> bytes | None:
    try:
        return b"".join(ENCODERS[charset](t) for t in texts)
    except (UnicodeEncodeError, LookupError):
        return None


@ci(1000)
@given(person=people(), template=st.sampled_from(TEMPLATES), data=st.data())
def test_image_objects_in_every_character_set(person: Person, template: str, data: Any) -> None:
    field = data.draw(st.sampled_from(sorted(TEXT_FIELDS)))
    values = [person.name, person.ids[0], person.phone, person.birth_text, person.address]
    text = template.format(" ".join(data.draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))))
    name = f"{person.family}^{person.given}"
    ok = [c for c in ENCODERS if _encodable(c, [text, name, person.address, template]) is not None]
    if not ok:
        return  # e.g. a rare Chinese character outside every set that could also carry the template
    charset = data.draw(st.sampled_from(ok))

    def build(description: str) -> Any:
        ds = make_image(PatientID=person.ids[0], AccessionNumber=person.ids[2][:16], OtherPatientIDs=person.ids[1][:64],
                        PatientBirthDate=person.birth.strftime("%Y%m%d"), StudyDate="20260317")
        if charset:
            ds.SpecificCharacterSet = charset.lstrip("\\").split("\\") if "\\" in charset else charset
            if charset.startswith("\\"):
                ds.SpecificCharacterSet = ["", *charset.lstrip("\\").split("\\")]
        _raw(ds, "PatientName", "PN", ENCODERS[charset](name))
        _raw(ds, "PatientAddress", "LO", ENCODERS[charset](person.address[:64]))
        _raw(ds, field, TEXT_FIELDS[field], ENCODERS[charset](description))
        event = build_event(parse_header(encode_dataset(ds), "1.2.840.10008.1.2.1"), CTX, calling_ae="MOD1",
                            received_at=NOW)
        codec.encode(event)
        return event

    event = build(text)
    base = build(template.format(""))
    out = _free_text(event)
    for s in out:
        assert "\x1b" not in s and "\ufffd" not in s and not any(unicodedata.category(c) == "Cc" for c in s), s
    assert not leaks([*values, person.family, person.given], out, _free_text(base)), (charset, text, out)


# ------------------------------------------------------------------------------------------------ HL7, MPPS


@ci(1000)
@given(person=people(), template=st.sampled_from(TEMPLATES),
       charset=st.sampled_from(("UNICODE UTF-8", "GB 18030-2000")))
def test_hl7_orders(person: Person, template: str, charset: str) -> None:
    values = [person.name, person.ids[0], person.phone, person.birth_text, person.address, person.postcode]
    text = template.format(" ".join(values)).replace("|", " ").replace("^", " ").replace("~", " ")
    text = text.replace("\\", " ").replace("&", " ")
    codec_name = "utf-8" if "UTF" in charset else "gb18030"

    def run(description: str) -> list[str]:
        pid = (f"PID|1||{person.ids[0]}^^^HOSP^MR~{person.ids[1]}^^^NATL^NI||{person.family}^{person.given}||"
               f"{person.birth.strftime('%Y%m%d')}|F|||{person.address}^^City^^{person.postcode}^CHN||{person.phone}")
        raw = "\r".join([f"MSH|^~\\&|RIS|H|RP|E|20260317101500||ORM^O01|C1|P|2.5.1|||||CHN|{charset}", pid,
                         f"ORC|NW|PLC1|{person.ids[2]}||SC", f"OBR|1|PLC1|{person.ids[2]}|X^{description}"]) + "\r"
        try:
            data = raw.encode(codec_name)
        except UnicodeEncodeError:
            return []
        decoded, _ = hl7_decode(data)
        return [s for e in to_workflow_events(parse(decoded), CTX, received_at=NOW) for s in _free_text(e)]

    out = run(text)
    assert not leaks([*values, person.family, person.given], out, run(template.format(""))), (text, out)


@ci(500)
@given(person=people(), template=st.sampled_from(TEMPLATES), message=st.sampled_from(("N-CREATE", "N-SET")))
def test_mpps_create_and_set(person: Person, template: str, message: str) -> None:
    values = [person.name, person.ids[2], person.phone, person.birth_text]
    text = template.format(" ".join(values))

    def run(description: str) -> list[str]:
        ds = Dataset()
        ds.PerformedProcedureStepDescription = description[:64]
        if message == "N-CREATE":
            step = Dataset()
            step.AccessionNumber = person.ids[2][:16]
            step.StudyInstanceUID = "1.2.3.4"
            ds.ScheduledStepAttributesSequence = [step]
            ds.PatientName = f"{person.family}^{person.given}"
            ds.PatientID = person.ids[0]
            ds.PerformedProcedureStepStatus = "IN PROGRESS"
        else:
            ds.PerformedProcedureStepStatus = "COMPLETED"
        return _free_text(mpps_event(ds, message=message, pps_uid="1.2.3.9", ctx=CTX, calling_ae="CT1",
                                     received_at=NOW))

    out = run(text)
    vocab = default_vocabulary()
    checked = [*values, person.family, person.given]
    if message == "N-SET":  # no identifiers in an N-SET: a name word that is a known word can't be told apart
        checked = [v for v in checked if unicodedata.normalize("NFKC", v).casefold() not in vocab.latin | vocab.cjk]
        if _cjk(person.family):
            checked = [v for v in checked if v not in (person.family, person.given)]
    assert not leaks(checked, out, run(template.format(""))), (text, out)


# ---------------------------------------------------------------------------------------------------- dose SR


@pytest.fixture(scope="module")
def rdsr(samples_dir: Path) -> tuple[Dataset, Dataset, Dataset]:
    ds = pydicom.dcmread(samples_dir / "CT-RDSR-Siemens_Flash-TAP-SS.dcm")
    protocol = None

    def walk(items: Any) -> None:
        nonlocal protocol
        for item in items:
            if protocol is None and item.get("ValueType") == "TEXT" and \
                    item.ConceptNameCodeSequence[0].CodeValue == "125203":
                protocol = item
            walk(item.get("ContentSequence") or [])

    walk(ds.ContentSequence)
    observer = Dataset()
    observer.RelationshipType, observer.ValueType = "HAS OBS CONTEXT", "PNAME"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121008", "DCM", "Person Observer Name"
    observer.ConceptNameCodeSequence = [code]
    ds.ContentSequence.append(observer)
    ds.SpecificCharacterSet = "ISO_IR 192"
    assert protocol is not None
    return ds, protocol, observer


@ci(200)
@given(person=people(), template=st.sampled_from(TEMPLATES))
def test_dose_sr_protocol_text_and_observer_names(rdsr: tuple[Dataset, Dataset, Dataset], person: Person,
                                                  template: str) -> None:
    ds, protocol, observer = rdsr
    observer.PersonName = f"{person.family}^{person.given}"
    values = [person.name, person.ids[0], person.phone, person.birth_text]

    def run(text: str) -> list[str]:
        protocol.TextValue = text
        for memo in ("_rp_values", "_rp_elems"):  # the same dataset object is reused: drop its read cache
            ds.__dict__.pop(memo, None)
        event = build_event(Header(ds, str(ds.file_meta.TransferSyntaxUID)), CTX, calling_ae="MOD1",
                            received_at=NOW, dose_extractor=extract_dose_report)
        return _free_text(event)

    out = run(template.format(" ".join(values)))
    assert not leaks([*values, person.family, person.given], out, run(template.format(""))), out
