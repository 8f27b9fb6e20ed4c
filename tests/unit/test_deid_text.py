"""Issue 11 / 9.9: free text leaves only as known words; every character set decodes cleanly; age without the
birthday; reveal never creates a key. Each case below leaked before. No sockets."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from edge_ingest.deid import DeidContext, build_event
from edge_ingest.dose_sr import extract_dose_report
from edge_ingest.extract import parse_header
from edge_ingest.hl7 import parse, to_workflow_events
from edge_ingest.keys import EdgeKeys, KeyMissingError, load_keys
from edge_ingest.mpps import mpps_event
from edge_ingest.pseudonyms import pseudonym
from edge_ingest.text import UNDECODABLE, decode_bytes, element_value, encodings_of
from edge_ingest.vocabulary import (
    DEFAULT_RULES,
    MARK,
    VocabularyStore,
    build_vocabulary,
    default_vocabulary,
    identifiers_from,
    rule_terms,
)
from schemas import codec
from tests.helpers import encode_dataset, make_image

KEYS = EdgeKeys(b"k" * 32, b"a" * 32)
NOW = datetime(2026, 3, 17, 3, 0, tzinfo=UTC)


def ctx(**kw: object) -> DeidContext:
    return DeidContext(keys=KEYS, site_id="site-a", edge_id="edge-1", site_timezone="Asia/Shanghai", **kw)  # type: ignore[arg-type]


def event_of(ds: Dataset, context: DeidContext | None = None):
    return build_event(parse_header(encode_dataset(ds), "1.2.840.10008.1.2.1"), context or ctx(),
                       calling_ae="MOD1", received_at=NOW, dose_extractor=extract_dose_report)


def strings(value: object) -> list[str]:
    """Every string an event carries, nested reports included."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in strings(getattr(value, f.name))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


def wire_text(event: object) -> str:
    """The event's strings, and its Avro bytes decoded as UTF-8 where they are text."""
    return "\n".join(strings(event)) + codec.encode(event).decode("utf-8", "ignore")  # type: ignore[arg-type]


def raw_text(ds: Dataset, keyword: str, vr: str, value: bytes) -> None:
    """Put bytes on the wire exactly as a console wrote them (no pydicom encoding)."""
    from pydicom.datadict import tag_for_keyword

    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


# ------------------------------------------------------------------------------------------------ known words


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ("CT胸部平扫 张伟", "CT胸部平扫", ["张", "伟"]),
    ("张先生 头颅CT平扫", "头颅CT平扫", ["张"]),
    ("王心怡 心脏增强", "心脏增强", ["王", "心怡", "怡"]),
    ("MUELLER JUERGEN MR Knee", "MR Knee", ["MUELLER", "JUERGEN"]),
    ("Muller Jurgen CT head", "CT head", ["Muller", "Jurgen"]),
    ("born 17 March 1952 CT chest", "CT chest", ["March", "1952", "born"]),
    ("rad 12345 CT", "CT", ["12345", "rad"]),
    ("Head 12345", "Head", ["12345"]),
    ("CT chest mj.mueller@example.org", "CT chest", ["mj", "mueller", "example"]),
    ("胸腹盆增强 1952年3月17日", "胸腹盆增强", ["1952", "3月17"]),
    ("建国路88号 CT", "CT", ["建国路"]),
    ("CT 2026-03-16 13812345678", "CT", ["2026", "1381234"]),
])
def test_only_known_words_leave(text: str, kept: str, gone: list[str]) -> None:
    out = default_vocabulary().filter(text).text or ""
    assert kept in out, out
    for g in gone:
        assert g.casefold() not in out.casefold(), (g, out)


def test_full_width_names_are_normalised_before_matching() -> None:
    ds = make_image(PatientName="ＺＨＡＮＧ^ＷＥＩ", StudyDescription="ＺＨＡＮＧ ＷＥＩ CT HEAD",
                    SpecificCharacterSet="ISO_IR 192")
    event = event_of(ds)
    assert event.study_description == f"{MARK} CT HEAD"
    assert "ZHANG" not in wire_text(event).upper()


def test_identifiers_go_even_when_they_are_known_words() -> None:
    # a patient called Head Stone: both are vocabulary words, the object's own name still removes them
    ds = make_image(PatientName="STONE^HEAD", StudyDescription="CT Head Stone protocol")
    assert event_of(ds).study_description == f"CT {MARK} protocol"


def test_every_exam_type_rule_term_is_a_known_word() -> None:
    vocab = default_vocabulary()
    latin, cjk = rule_terms(DEFAULT_RULES)
    assert latin <= vocab.latin and cjk <= vocab.cjk
    for term in ("胸腹盆增强", "CT HEAD W/O", "头颅CT平扫", "CTPA", "LOW DOSE CT CHEST", "C+"):
        assert MARK not in (vocab.filter(term).text or ""), term


def test_site_words_are_added(tmp_path: Path) -> None:
    words = tmp_path / "site.txt"
    words.write_text("# our protocols\nSuzhouProtocolA\n苏大附一\n", encoding="utf-8")
    vocab = build_vocabulary(word_files=[words], extra_words=["RoutineX"])
    assert vocab.filter("SuzhouProtocolA RoutineX 苏大附一").text == "SuzhouProtocolA RoutineX 苏大附一"
    with pytest.raises(ValueError, match="vocabulary_files"):
        build_vocabulary(word_files=[tmp_path / "missing.txt"])


def test_words_of_k_distinct_patients_are_learned_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.sqlite"

    def store() -> VocabularyStore:
        return VocabularyStore(path, 3, lambda w: pseudonym(KEYS, "word", w))

    s = store()
    vocab = build_vocabulary(store=s)
    for patient in ("p1", "p2"):
        f = vocab.filter("CT Zorblax chest")
        assert f.text == f"CT {MARK} chest" and f.unknown == ("zorblax",)
        for _ in range(3):  # the same patient and study again: counted once
            s.record(f"study-{patient}", patient, f.unknown)
    assert vocab.filter("CT Zorblax chest").text == f"CT {MARK} chest"
    s.record("study-p3", "p3", ["zorblax"])
    assert vocab.filter("CT Zorblax chest").text == "CT Zorblax chest"
    assert b"zorblax" not in path.read_bytes().lower()  # keyed hashes only
    s.close()
    again = build_vocabulary(store=store())
    assert again.filter("CT Zorblax chest").text == "CT Zorblax chest"


# ---------------------------------------------------------------------------------------------- character sets


@pytest.mark.parametrize(("charset", "encoded", "expected"), [
    ("\\ISO 2022 IR 58", b"CT \x1b$)A" + "胸部平扫 张伟".encode("gb2312"), "CT 胸部平扫 张伟"),
    ("\\ISO 2022 IR 87", "山田太郎 胸部".encode("iso2022_jp"), "山田太郎 胸部"),
    ("\\ISO 2022 IR 149", b"\x1b$)C" + "김희중 흉부".encode("euc_kr"), "김희중 흉부"),
    ("\\ISO 2022 IR 87\\ISO 2022 IR 159", "鸂 山田".encode("iso2022_jp_2"), "鸂 山田"),
    ("ISO_IR 13", "ﾔﾏﾀﾞ".encode("shift_jis"), "ﾔﾏﾀﾞ"),
    ("GB18030", "胸部CT 张伟".encode("gb18030"), "胸部CT 张伟"),
    ("GBK", "胸部CT 张伟".encode("gbk"), "胸部CT 张伟"),
    ("ISO_IR 192", "胸部CT Müller".encode(), "胸部CT Müller"),
    ("ISO_IR 100", "Müller Jürgen".encode("latin-1"), "Müller Jürgen"),
    ("ISO_IR 144", "Иванов".encode("iso8859_5"), "Иванов"),
    ("", "胸部CT".encode("gb18030"), "胸部CT"),  # undeclared: a Chinese console's GB18030
])
def test_every_character_set_decodes_cleanly(charset: str, encoded: bytes, expected: str) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    raw_text(ds, "StudyDescription", "LO", encoded + (b" " if len(encoded) % 2 else b""))
    assert element_value(ds, 0x00081030) == expected
    assert decode_bytes(encoded, encodings_of(ds)) == expected


def test_iso_2022_ir_58_name_never_leaves_and_no_escape_byte_reaches_the_event() -> None:
    ds = make_image(SpecificCharacterSet=["", "ISO 2022 IR 58"])
    raw_text(ds, "PatientName", "PN", b"Zhang^Wei=\x1b$)A" + "张^伟".encode("gb2312") + b"=")
    raw_text(ds, "StudyDescription", "LO", b"\x1b$)A" + "张伟 胸部CT平扫".encode("gb2312") + b" ")
    event = event_of(ds)
    assert event.study_description == f"{MARK} 胸部CT平扫"
    text = wire_text(event)
    # an escape byte is judged in the event's strings: the Avro binary around them holds 0x1B as a length or float
    assert not any("\x1b" in s for s in strings(event)) and "张" not in text and "伟" not in text


def test_undecodable_and_control_text_is_a_marker_and_counted() -> None:
    seen: list[str] = []
    ds = make_image(SpecificCharacterSet="ISO_IR 192")
    raw_text(ds, "StationName", "SH", b"CT\xff\xfe01")  # not UTF-8
    raw_text(ds, "StudyDescription", "LO", b"CT\x00\x1b$B HEAD\x07 ")
    raw_text(ds, "Manufacturer", "LO", "Ven\u202edor\ufffd".encode())
    event = event_of(ds, ctx(on_text_issue=seen.append))
    assert event.station_name == UNDECODABLE
    assert event.study_description == "CT HEAD"
    assert event.manufacturer == UNDECODABLE  # a literal U+FFFD means an upstream decoder already lost bytes
    assert seen.count("undecodable") == 2 and "cleaned" in seen
    for ch in ("\x00", "\x1b", "\x07", "\ufffd", "\u202e"):
        assert not any(ch in s for s in strings(event)), repr(ch)


def test_unknown_escape_sequence_is_undecodable() -> None:
    assert decode_bytes(b"CT \x1b%G chest", ["iso8859"]) is None
    assert decode_bytes("张".encode("gb18030"), ["UTF8"]) is None


# --------------------------------------------------------------------------------------------------- age


def test_age_changes_on_1_january_not_on_the_birthday(tmp_path: Path) -> None:
    store = VocabularyStore(tmp_path / "v.sqlite", 5, lambda w: w)
    context = ctx(vocabulary=build_vocabulary(store=store))
    ages = []
    for day, age in (("20260316", "073Y"), ("20260317", "074Y"), ("20261231", "074Y"), ("20270101", "074Y")):
        ds = make_image(PatientID="P73", StudyDate=day, PatientAge=age)
        ages.append(event_of(ds, context).patient_age_years)
    assert ages == [73, 73, 73, 74]
    # with a birth date: study year − birth year, whatever the day
    for day in ("20260101", "20261231"):
        ds = make_image(PatientID="P52", StudyDate=day, PatientBirthDate="19520317")
        assert event_of(ds, context).patient_age_years == 74
    # the birth year survives a restart
    store.close()
    again = ctx(vocabulary=build_vocabulary(store=VocabularyStore(tmp_path / "v.sqlite", 5, lambda w: w)))
    assert event_of(make_image(PatientID="P73", StudyDate="20260320", PatientAge="074Y"), again).patient_age_years == 73


# -------------------------------------------------------------------------------------- MPPS, HL7 and dose SR


def _mpps(message: str, **attrs: object) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_mpps_create_and_set_descriptions_lose_their_identifiers() -> None:
    step = Dataset()
    step.AccessionNumber = "A778812"
    step.StudyInstanceUID = "1.2.3.4"
    step.RequestedProcedureID = "RP5512"
    create = _mpps("N-CREATE", PatientName="LI^XIAOMING", PatientID="P1", PerformedProcedureStepStatus="IN PROGRESS",
                   PerformedProcedureStepDescription="CT chest A778812 RP5512 LI",
                   ScheduledStepAttributesSequence=[step])
    ev = mpps_event(create, message="N-CREATE", pps_uid="1.2.3.9", ctx=ctx(), calling_ae="CT1", received_at=NOW)
    assert ev.procedure_description == f"CT chest {MARK}"
    # an N-SET carries no identifiers at all: the vocabulary alone removes the given name
    nset = _mpps("N-SET", PerformedProcedureStepStatus="COMPLETED",
                 PerformedProcedureStepDescription="CT chest Xiaoming 晓明")
    ev = mpps_event(nset, message="N-SET", pps_uid="1.2.3.9", ctx=ctx(), calling_ae="CT1", received_at=NOW)
    assert ev.procedure_description == f"CT chest {MARK}"


def test_hl7_postal_code_and_chinese_street_address_do_not_leave() -> None:
    pid = ("PID|1||MRN0042^^^HOSP^MR||WANG^XIAOMING||19610413|M|||建国路88号^^北京^^100022^CHN")
    orc = "ORC|NW|PLC1|FIL1||SC"
    obr = "OBR|1|PLC1|FIL1|CT^CT chest 建国路88号 100022 WANG^L||||||||||||||||||||||CT"
    raw = "\r".join(["MSH|^~\\&|RIS|H|RP|E|20260317101500||ORM^O01|C1|P|2.3.1", pid, orc, obr]) + "\r"
    events = to_workflow_events(parse(raw), ctx(), received_at=NOW)
    assert events
    for e in events:
        assert e.procedure_description == f"CT chest {MARK}", e.procedure_description
        assert "100022" not in wire_text(e) and "建国" not in wire_text(e)


def test_dose_sr_person_observer_name_is_removed_from_the_protocol(samples_dir: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(samples_dir / "CT-RDSR-Siemens_Flash-TAP-SS.dcm")
    protocols = []

    def walk(items: list[Dataset]) -> None:
        for item in items:
            if item.get("ValueType") == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "125203":
                protocols.append(item)
            walk(list(item.get("ContentSequence") or []))

    walk(list(ds.ContentSequence))
    assert protocols
    protocols[0].TextValue = "Thorax Stone"  # "Stone" is a known word (kidney stone protocols)
    observer = Dataset()
    observer.RelationshipType, observer.ValueType = "HAS OBS CONTEXT", "PNAME"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121008", "DCM", "Person Observer Name"
    observer.ConceptNameCodeSequence = [code]
    observer.PersonName = "STONE^EMMA"
    ds.ContentSequence.append(observer)  # after the text it appears in
    event = event_of(ds)
    assert event.dose_report is not None
    texts = [e.acquisition_protocol for e in event.dose_report.events]
    assert f"Thorax {MARK}" in texts and not any("Stone" in (t or "") for t in texts)


# ------------------------------------------------------------------------------------------------- reveal


def test_reveal_with_no_key_names_what_is_missing_and_creates_nothing(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edge_ingest.cli import run_reveal

    with pytest.raises(KeyMissingError, match=re.escape(str(tmp_path / "keys" / "pseudonym.key"))):
        load_keys(tmp_path, create=False)
    config = tmp_path / "radpulse.toml"
    config.write_text(f'[edge]\ndata_dir = "{tmp_path / "edge"}"\n', encoding="utf-8")
    assert run_reveal(argparse.Namespace(config=str(config), token=["rpa1.xyz"])) == 2
    err = capsys.readouterr().err
    assert "pseudonym.key is missing" in err and str(tmp_path / "edge" / "keys") in err
    assert not (tmp_path / "edge" / "keys").exists()
    # with the edge's keys in place it opens the edge's tokens
    from edge_ingest.pseudonyms import encrypt_accession

    token = encrypt_accession(load_keys(tmp_path / "edge"), "ACC42")
    assert run_reveal(argparse.Namespace(config=str(config), token=[token])) == 0
    assert "ACC42" in capsys.readouterr().out


def test_identifiers_include_transliterations() -> None:
    ids = identifiers_from(["Müller^Jürgen"])
    assert {"müller", "mueller", "muller", "jürgen", "juergen", "jurgen"} <= ids.latin


@pytest.mark.parametrize(("station", "kept"), [
    ("CTAWP73491", True), ("PHILIPS-MR3T", True), ("CXDI-710C", True), ("CT 2011-03-21", False),
    ("CT 15241157815", False), ("DOE", False), ("CT室1", False),
])
def test_station_names_stay_unless_they_carry_identifiers(station: str, kept: bool) -> None:
    event = event_of(make_image(StationName=station, SpecificCharacterSet="ISO_IR 192"))
    assert (event.station_name == station) is kept, event.station_name


def test_a_one_character_identifier_part_does_not_hide_the_station() -> None:
    # the simulator's DX1 went out as "*": a one-character identifier part ("1") matched DRXEVO1's trailing digit
    from synthetic_hospital.hospital import default_hospital
    from synthetic_hospital.plan import plan_days
    from synthetic_hospital.sender import iter_datasets

    plan = plan_days(default_hospital(), date(2024, 3, 4), 1, 7, "Asia/Shanghai", scale=0.05)
    ds = next(ds for _exam, ds in iter_datasets(plan) if getattr(ds, "StationName", "") == "DRXEVO1")
    assert event_of(ds).station_name == "DRXEVO1"
