"""HL7 v2 parsing, mapping to WorkflowEvents, ACKs, MLLP deframing and the ingestor, on messages written here.
No sockets: the ingestor runs against a fake delivery."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from edge_ingest.deid import DeidContext
from edge_ingest.hl7 import (
    ACCESSION_FIELDS,
    Hl7Error,
    Hl7Message,
    ack,
    decode_bytes,
    identifying_tokens,
    parse,
    parse_ts,
    python_codec,
    to_workflow_events,
)
from edge_ingest.ingest import Status
from edge_ingest.keys import EdgeKeys
from edge_ingest.mllp import RETRY_LATER, Frame, FrameReader, Hl7Ingestor, Oversized, frame
from edge_ingest.pseudonyms import decrypt_accession, pseudonym, uid_pseudonym
from schemas import codec
from schemas.events import WorkflowEvent

KEYS = EdgeKeys(b"k" * 32, b"a" * 32)
CTX = DeidContext(keys=KEYS, site_id="site-a", edge_id="edge-1", site_timezone="Asia/Shanghai")
NOW = datetime(2024, 3, 1, 3, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ message builders


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: raw value}, so nobody counts pipes by hand."""
    last = max(fields, default=0)
    return "|".join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def msh(type_code: str, control: str = "MSG00001", *, ts: str = "20240301101500", version: str = "2.5.1",
        charset: str | None = None, facility: str = "HOSPITAL") -> str:
    fields = {3: "RIS", 4: facility, 5: "RADPULSE", 6: "EDGE", 7: ts, 9: type_code, 10: control, 11: "P",
              12: version}
    if charset:
        fields[18] = charset
    return "MSH|^~\\&|" + "|".join(fields.get(i, "") for i in range(3, max(fields) + 1))


def message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


PID = seg("PID", {
    1: "1", 3: "MRN0042^^^HOSP^MR~ID777^^^NATL^NI", 5: "WANG^XIAOMING^^^^^L", 7: "19610413", 8: "M",
    11: "12 Garden Road^^Shanghai^^200000^CHN", 13: "^PRN^PH^^86^21^55501234",
})
PV1 = seg("PV1", {1: "1", 2: "O", 3: "CT^ROOM1^1^HOSP", 7: "D001^LI^MING^^^DR", 19: "V123456"})


def events_of(raw: str, ctx: DeidContext = CTX) -> list[WorkflowEvent]:
    return to_workflow_events(parse(raw), ctx, received_at=NOW)


def one(raw: str, ctx: DeidContext = CTX) -> WorkflowEvent:
    events = events_of(raw, ctx)
    assert len(events) == 1, events
    return events[0]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def orm(orc: dict[int, str], obr: dict[int, str] | None = None, *extra: str, control: str = "ORM0001") -> str:
    obr = {1: "1", 2: "PLC778", 4: "CTCHEST^CT chest with contrast^L", 24: "CT"} | (obr or {})
    return message(msh("ORM^O01", control, version="2.3.1"), PID, PV1, seg("ORC", orc), seg("OBR", obr), *extra)


# ----------------------------------------------------------------------------------------------------- parsing


def test_msh_fields() -> None:
    msg = parse(message(msh("ADT^A10^ADT_A09", "CTRL42", charset="UNICODE UTF-8"), PID))
    assert (msg.message_type, msg.trigger, msg.structure, msg.control_id) == ("ADT", "A10", "ADT_A09", "CTRL42")
    assert (msg.version, msg.sending_application, msg.sending_facility) == ("2.5.1", "RIS", "HOSPITAL")
    assert (msg.receiving_application, msg.receiving_facility, msg.processing_id) == ("RADPULSE", "EDGE", "P")
    assert msg.charset == "UNICODE UTF-8" and msg.timestamp == "20240301101500" and msg.type_code == "ADT^A10"
    assert msg.msh.get(1) == "|" and msg.msh.get(2) == "^~\\&"
    assert [s.name for s in msg.segments] == ["MSH", "PID"]


def test_escape_sequences_are_undone_after_splitting() -> None:
    raw = message(msh("ORM^O01"), seg("NTE", {3: r"a\F\b\S\c\T\d\R\e\E\f", 4: r"x\X4142\y\.br\z\H\bold\N\ "}))
    nte = parse(raw).first("NTE")
    assert nte is not None
    assert nte.get(3) == "a|b^c&d~e\\f"  # escaped delimiters do not split the field
    assert nte.get(4) == "xABy\nzbold"
    assert nte.components(3) == ["a|b^c&d~e\\f"]


def test_repetitions_components_and_subcomponents() -> None:
    pid = parse(message(msh("ADT^A04"), PID)).first("PID")
    assert pid is not None
    assert pid.repetitions(3) == ["MRN0042^^^HOSP^MR", "ID777^^^NATL^NI"]
    assert pid.get(3) == "MRN0042" and pid.get(3, 5) == "MR" and pid.get(3, 1, 1, 1) == "ID777"
    assert pid.get(3, 1, 1, 2) is None and pid.get(3, 9) is None and pid.get(99) is None
    assert pid.components(5)[:2] == ["WANG", "XIAOMING"]
    zzz = parse(message(msh("ADT^A04"), seg("ZZZ", {1: "a&b^c~d"}))).first("ZZZ")
    assert zzz is not None
    assert (zzz.get(1), zzz.get(1, 1, 2), zzz.get(1, 2), zzz.get(1, 1, 1, 1)) == ("a", "b", "c", "d")


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n"])
def test_line_endings_cr_lf_crlf(ending: str) -> None:
    raw = ending.join([msh("ADT^A10"), seg("EVN", {2: "20240301081500"}), PID, PV1]) + ending
    msg = parse("\ufeff" + ending + raw + ending + ending)  # BOM, blank lines before and after
    assert [s.name for s in msg.segments] == ["MSH", "EVN", "PID", "PV1"]
    assert one(raw).patient_pseudonym == pseudonym(KEYS, "patient", "MRN0042")


def test_delimiters_come_from_msh1_and_msh2() -> None:
    raw = "MSH#$*@%#RIS#HOSPITAL#RADPULSE#EDGE#20240301101500##ADT$A10#C1#P#2.5\rPID###MRN0042$$$HOSP*X9#\r"
    msg = parse(raw)
    pid = msg.first("PID")
    assert msg.type_code == "ADT^A10" and pid is not None
    assert pid.get(3) == "MRN0042" and pid.get(3, 1, 1, 1) == "X9"


def test_hl7_null_and_empty_are_none() -> None:
    pid = parse(message(msh("ADT^A04"), seg("PID", {3: '""', 5: "  "}))).first("PID")
    assert pid is not None and pid.get(3) is None and pid.get(5) is None


def test_reprs_print_no_values() -> None:
    msg = parse(message(msh("ADT^A10"), PID))
    assert "WANG" not in repr(msg) and "MRN0042" not in repr(msg.segments)
    assert "ADT^A10" in repr(msg)


def test_trigger_from_evn1_in_old_adt() -> None:
    msg = parse(message(msh("ADT", version="2.2"), seg("EVN", {1: "A04", 2: "20240301081500"}), PID))
    assert msg.type_code == "ADT^A04"
    assert one(message(msh("ADT", version="2.2"), seg("EVN", {1: "A04"}), PID)).kind == "registration"


# ------------------------------------------------------------------------------------------------------ times


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        ("20240301101500", "Asia/Shanghai", "2024-03-01T02:15:00+00:00"),
        ("202403011015", "Asia/Shanghai", "2024-03-01T02:15:00+00:00"),
        ("2024030110", "Asia/Shanghai", "2024-03-01T02:00:00+00:00"),
        ("20240301101500.1234", "Asia/Shanghai", "2024-03-01T02:15:00.123400+00:00"),
        ("20240301101500+0000", "Asia/Shanghai", "2024-03-01T10:15:00+00:00"),
        ("20240301101500-0500", "Asia/Shanghai", "2024-03-01T15:15:00+00:00"),
        ("202403011015+0530", "UTC", "2024-03-01T04:45:00+00:00"),
        ("20240701101500", "Europe/London", "2024-07-01T09:15:00+00:00"),  # BST, from the zone per instant
        ("20240101101500", "Europe/London", "2024-01-01T10:15:00+00:00"),
    ],
)
def test_ts_values(value: str, zone: str, expected: str) -> None:
    assert parse_ts(value, zone) == utc(expected)


@pytest.mark.parametrize("value", [None, "", "20240301", "202403", "garbage", "2024030110153", "20241301101500"])
def test_ts_values_without_an_instant_are_none(value: str | None) -> None:
    assert parse_ts(value, "Asia/Shanghai") is None


# ------------------------------------------------------------------------------------------------------- ADT


def test_adt_a10_arrival_uses_evn6_in_site_zone() -> None:
    raw = message(msh("ADT^A10"), seg("EVN", {1: "A10", 2: "20240301081500", 6: "20240301081200"}), PID, PV1)
    e = one(raw)
    assert (e.kind, e.source, e.message_type) == ("arrival", "HL7", "ADT^A10")
    assert e.occurred_at == utc("2024-03-01T00:12:00+00:00")  # 08:12 Asia/Shanghai
    assert e.patient_pseudonym == pseudonym(KEYS, "patient", "MRN0042")  # first CX of PID-3
    assert e.accession_pseudonym is None and e.accession_token is None  # ADT carries no accession
    assert (e.site_id, e.edge_id, e.received_at) == ("site-a", "edge-1", NOW)


def test_adt_occurred_at_falls_back_to_evn2_then_msh7() -> None:
    with_evn2 = one(message(msh("ADT^A10"), seg("EVN", {2: "20240301081500+0800"}), PID))
    assert with_evn2.occurred_at == utc("2024-03-01T00:15:00+00:00")
    without_evn = one(message(msh("ADT^A10", ts="20240301090000"), PID))
    assert without_evn.occurred_at == utc("2024-03-01T01:00:00+00:00")


def test_adt_a04_registration() -> None:
    e = one(message(msh("ADT^A04^ADT_A01"), seg("EVN", {2: "20240301075900"}), PID, PV1))
    assert e.kind == "registration" and e.occurred_at == utc("2024-02-29T23:59:00+00:00")


def test_patient_id_falls_back_to_pid2() -> None:
    e = one(message(msh("ADT^A04"), seg("PID", {2: "OLD123", 5: "DOE^JANE"})))
    assert e.patient_pseudonym == pseudonym(KEYS, "patient", "OLD123")


@pytest.mark.parametrize("type_code", ["ADT^A08", "ADT^A01", "ORU^R01", "MDM^T02", "SIU^S20", "QRY^A19"])
def test_unsupported_types_give_no_events(type_code: str) -> None:
    assert events_of(message(msh(type_code), PID, PV1)) == []


# ------------------------------------------------------------------------------------------------------- ORM


def test_orm_new_order_with_scheduled_time() -> None:
    raw = orm(
        {1: "NW", 2: "PLC778", 3: "ACC1001", 5: "SC", 7: "1^ONCE^^20240302093000^^R", 9: "20240301101400+0800",
         12: "D001^LI^MING"},
        {18: "ACC1001", 19: "RP1", 20: "SPS1"},
    )
    ordered, scheduled = events_of(raw)
    assert (ordered.kind, scheduled.kind) == ("ordered", "scheduled")
    for e in (ordered, scheduled):
        assert e.accession_pseudonym == pseudonym(KEYS, "accession", "ACC1001")  # same label as the DICOM edge
        assert e.accession_token is not None and decrypt_accession(KEYS, e.accession_token) == "ACC1001"
        assert e.scheduled_start_utc == utc("2024-03-02T01:30:00+00:00")  # ORC-7.4 in Asia/Shanghai
        assert e.order_status == "SC" and e.modality == "CT" and e.message_type == "ORM^O01"
        assert e.procedure_description == "CT chest with contrast"
        assert e.patient_pseudonym == pseudonym(KEYS, "patient", "MRN0042")
    assert ordered.order_time_utc == utc("2024-03-01T02:14:00+00:00") == ordered.occurred_at  # ORC-9, own offset
    assert scheduled.order_time_utc is None
    assert ordered.event_id != scheduled.event_id


def test_orm_new_order_without_schedule_is_only_ordered() -> None:
    e = one(orm({1: "NW", 3: "ACC1002", 9: "20240301101400"}))
    assert e.kind == "ordered" and e.scheduled_start_utc is None
    assert e.order_time_utc == utc("2024-03-01T02:14:00+00:00")


def test_orm_order_time_falls_back_to_obr6_then_msh7_for_occurred_at() -> None:
    e = one(orm({1: "NW", 3: "ACC1003"}, {6: "20240301094500-0500"}))
    assert e.order_time_utc == utc("2024-03-01T14:45:00+00:00") == e.occurred_at
    bare = one(orm({1: "NW", 3: "ACC1003"}))
    assert bare.order_time_utc is None and bare.occurred_at == utc("2024-03-01T02:15:00+00:00")  # MSH-7


@pytest.mark.parametrize(
    ("orc", "obr", "expected"),
    [
        ({7: "^^^20240302093000"}, {}, "2024-03-02T01:30:00+00:00"),  # ORC-7.4
        ({}, {27: "^^^20240302100000+0000"}, "2024-03-02T10:00:00+00:00"),  # OBR-27.4
        ({}, {36: "20240302110000"}, "2024-03-02T03:00:00+00:00"),  # OBR-36
        ({7: "^^^20240302093000"}, {36: "20240302110000"}, "2024-03-02T01:30:00+00:00"),  # ORC-7.4 wins
    ],
)
def test_orm_scheduled_start_sources(orc: dict[int, str], obr: dict[int, str], expected: str) -> None:
    events = events_of(orm({1: "NW", 3: "ACC1"} | orc, obr))
    assert [e.kind for e in events] == ["ordered", "scheduled"]
    assert {e.scheduled_start_utc for e in events} == {utc(expected)}


def test_tq1_start_wins_over_orc7() -> None:
    raw = orm({1: "NW", 3: "ACC1", 7: "^^^20240302093000"}, {}, seg("TQ1", {1: "1", 7: "20240302080000"}))
    assert events_of(raw)[0].scheduled_start_utc == utc("2024-03-02T00:00:00+00:00")


@pytest.mark.parametrize("status", ["IP", "CM", "HD", "A"])
def test_orm_status_changes(status: str) -> None:
    e = one(orm({1: "SC", 3: "ACC1001", 5: status, 9: "20240301103000"}, {18: "ACC1001"}))
    assert e.kind == "order_status" and e.order_status == status
    assert e.occurred_at == utc("2024-03-01T02:30:00+00:00")  # ORC-9 is the time of this status change
    assert e.order_time_utc is None
    assert e.accession_pseudonym == pseudonym(KEYS, "accession", "ACC1001")


@pytest.mark.parametrize(("control", "status"), [("CA", ""), ("CA", "CA"), ("OC", ""), ("DC", ""), ("SC", "DC"),
                                                 ("SC", "CA"), ("CR", "")])
def test_orm_cancellations(control: str, status: str) -> None:
    e = one(orm({1: control, 3: "ACC1001", 5: status}))
    assert e.kind == "cancelled" and e.order_status == (status or None)


def test_orm_reschedule_by_change_or_sc_status_is_scheduled() -> None:
    assert one(orm({1: "XO", 3: "A1", 7: "^^^20240303090000"})).kind == "scheduled"
    assert one(orm({1: "SC", 3: "A1", 5: "SC", 7: "^^^20240303090000"})).kind == "scheduled"
    assert one(orm({1: "SC", 3: "A1", 5: "SC"})).kind == "order_status"  # no time: a status, not a schedule


def test_orm_without_status_or_known_control_gives_nothing() -> None:
    assert events_of(orm({1: "OK", 3: "A1"})) == []
    assert events_of(orm({1: "SC", 3: "A1", 5: "ZZ"})) == []  # not a table 0038 code


def test_orm_without_orc_is_an_error() -> None:
    raw = message(msh("ORM^O01"), PID, seg("OBR", {1: "1", 18: "ACC1"}))
    with pytest.raises(Hl7Error, match="no ORC segment") as info:
        events_of(raw)
    assert info.value.segment == "ORC"


def test_orm_with_two_orders_gives_one_event_per_order() -> None:
    raw = message(
        msh("ORM^O01"), PID,
        seg("ORC", {1: "SC", 3: "ACCA", 5: "IP"}), seg("OBR", {1: "1", 18: "ACCA", 24: "CT"}),
        seg("ORC", {1: "SC", 3: "ACCB", 5: "CM"}), seg("OBR", {1: "2", 18: "ACCB", 24: "MR"}),
    )
    a, b = events_of(raw)
    assert (a.order_status, a.modality, b.order_status, b.modality) == ("IP", "CT", "CM", "MR")
    assert a.accession_pseudonym == pseudonym(KEYS, "accession", "ACCA")
    assert b.accession_pseudonym == pseudonym(KEYS, "accession", "ACCB")
    assert a.event_id != b.event_id


@pytest.mark.parametrize(
    ("orc3", "obr3", "obr18", "ipc1", "expected"),
    [
        ("ORC3", "", "", "", "ORC3"),
        ("ORC3", "OBR3", "", "", "OBR3"),
        ("ORC3", "OBR3", "OBR18", "", "OBR18"),
        ("ORC3", "OBR3", "OBR18", "IPC1", "IPC1"),
    ],
)
def test_accession_read_order(orc3: str, obr3: str, obr18: str, ipc1: str, expected: str) -> None:
    extra = [seg("IPC", {1: ipc1, 2: "RP1", 3: "1.2.3", 4: "SPS1", 5: "CT"})] if ipc1 else []
    e = one(orm({1: "SC", 3: orc3, 5: "IP"}, {3: obr3, 18: obr18}, *extra))
    assert e.accession_pseudonym == pseudonym(KEYS, "accession", expected)
    assert [f"{s}-{n}" for s, n, _ in ACCESSION_FIELDS] == ["IPC-1", "OBR-18", "OBR-3", "ORC-3"]


@pytest.mark.parametrize(("obr24", "expected"), [("CT", "CT"), ("mr", "MR"), ("NMR", "MR"), ("RUS", "US"),
                                                 ("RAD", None), ("CHEST CT", None)])
def test_modality_from_obr24_is_allow_listed(obr24: str, expected: str | None) -> None:
    assert one(orm({1: "SC", 3: "A", 5: "IP"}, {24: obr24})).modality == expected


def test_description_is_scrubbed_and_truncated() -> None:
    text = ("CT chest for WANG XIAOMING MRN0042 born 19610413 ref Dr LI MING call 13812345678 "
            "plus a long tail of words to cut")
    e = one(orm({1: "SC", 3: "A", 5: "IP", 12: "D001^LI^MING"}, {4: f"CTC^{text}"}))
    assert e.procedure_description is not None and len(e.procedure_description) <= CTX.description_max_len
    for secret in ("WANG", "XIAOMING", "MRN0042", "19610413", "LI MING", "13812345678"):
        assert secret not in e.procedure_description
    assert e.procedure_description.startswith("CT chest for *")
    short = DeidContext(keys=KEYS, site_id="s", edge_id="e", site_timezone="UTC", description_max_len=8)
    assert one(orm({1: "SC", 3: "A", 5: "IP"}), short).procedure_description == "CT chest"


def test_chinese_names_are_scrubbed_from_chinese_descriptions() -> None:
    raw = message(msh("ORM^O01"), seg("PID", {3: "P1", 5: "张^伟"}), seg("ORC", {1: "SC", 3: "A", 5: "IP"}),
                  seg("OBR", {4: "CT01^张伟 胸部CT平扫"}))
    assert one(raw).procedure_description == "* 胸部CT平扫"


# ------------------------------------------------------------------------------------------------------- OMI


def test_omi_o23_reads_ipc_and_tq1() -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.12345"
    raw = message(
        msh("OMI^O23^OMI_O23", "OMI77"), PID, PV1,
        seg("ORC", {1: "NW", 2: "PLC1", 3: "FIL1", 5: "SC", 9: "20240301101400"}),
        seg("TQ1", {1: "1", 7: "20240302140000"}),
        seg("OBR", {1: "1", 2: "PLC1", 3: "FIL1", 4: "MRKNEE^MR knee left", 18: "OBR18", 24: "RAD"}),
        seg("IPC", {1: "ACC9001", 2: "RP1", 3: study_uid, 4: "SPS1", 5: "MR^Magnetic Resonance^DCM", 9: "MRI_3T_1"}),
        seg("IPC", {1: "ACC9002", 2: "RP2", 3: study_uid, 4: "SPS2", 5: "MR"}),
    )
    ordered, scheduled = events_of(raw)
    assert (ordered.kind, scheduled.kind, ordered.message_type) == ("ordered", "scheduled", "OMI^O23")
    assert ordered.accession_pseudonym == pseudonym(KEYS, "accession", "ACC9001")  # IPC-1 wins; first IPC
    assert ordered.study_pseudonym == uid_pseudonym(KEYS, study_uid)  # joins the exam's study pseudonym
    assert ordered.modality == "MR" and ordered.station_ae == "MRI_3T_1"
    assert ordered.scheduled_start_utc == utc("2024-03-02T06:00:00+00:00")
    assert ordered.procedure_description == "MR knee left"


def test_study_uid_must_look_like_a_uid() -> None:
    raw = orm({1: "SC", 3: "A", 5: "IP"}, {}, seg("ZDS", {1: "not a uid^RIS^Application^DICOM"}))
    assert one(raw).study_pseudonym is None
    raw = orm({1: "SC", 3: "A", 5: "IP"}, {}, seg("ZDS", {1: "1.2.3.4^RIS^Application^DICOM"}))
    assert one(raw).study_pseudonym == uid_pseudonym(KEYS, "1.2.3.4")


# ------------------------------------------------------------------------------------------------------- SIU


def siu(trigger: str, *extra: str, sch: dict[int, str] | None = None) -> str:
    sch = {1: "APPT123^RIS", 2: "FAPPT9^RIS", 11: "^^30^20240305143000^20240305150000"} | (sch or {})
    return message(msh(f"SIU^{trigger}^SIU_S12", f"SIU{trigger}"), seg("SCH", sch), PID, PV1,
                   seg("RGS", {1: "1"}), *extra)


@pytest.mark.parametrize("trigger", ["S12", "S13", "S14"])
def test_siu_booking_is_scheduled(trigger: str) -> None:
    e = one(siu(trigger))
    assert e.kind == "scheduled" and e.message_type == f"SIU^{trigger}"
    assert e.scheduled_start_utc == utc("2024-03-05T06:30:00+00:00")  # SCH-11.4
    assert e.occurred_at == utc("2024-03-01T02:15:00+00:00")  # MSH-7
    assert e.accession_pseudonym is None  # appointment ids (SCH-1/SCH-2) are not accessions
    assert e.patient_pseudonym == pseudonym(KEYS, "patient", "MRN0042")


def test_siu_start_from_ais4_then_ail6() -> None:
    ais = seg("AIS", {1: "1", 3: "CTABD^CT abdomen WANG", 4: "20240305160000"})
    ail = seg("AIL", {1: "1", 3: "CT1^^^RADIOLOGY", 6: "20240305170000"})
    e = one(siu("S12", ais, ail, sch={11: ""}))
    assert e.scheduled_start_utc == utc("2024-03-05T08:00:00+00:00")
    assert e.procedure_description == "CT abdomen *"
    assert one(siu("S12", ail, sch={11: ""})).scheduled_start_utc == utc("2024-03-05T09:00:00+00:00")


def test_siu_links_by_accession_only_when_it_carries_an_order() -> None:
    e = one(siu("S12", seg("OBR", {1: "1", 18: "ACC5005", 24: "US"})))
    assert e.accession_pseudonym == pseudonym(KEYS, "accession", "ACC5005") and e.modality == "US"


@pytest.mark.parametrize(("trigger", "kind"), [("S15", "cancelled"), ("S17", "cancelled"), ("S26", "no_show")])
def test_siu_cancel_and_no_show(trigger: str, kind: str) -> None:
    assert one(siu(trigger)).kind == kind


# -------------------------------------------------------------------------------------------------- identities


def test_event_ids_are_deterministic_per_facility_control_id_and_index() -> None:
    raw = orm({1: "NW", 3: "ACC1", 7: "^^^20240302093000"}, control="C1")
    first = [e.event_id for e in events_of(raw)]
    assert first == [e.event_id for e in events_of(raw)]  # a resend is the same event
    assert len(set(first)) == 2
    other_control = [e.event_id for e in events_of(raw.replace("|C1|", "|C2|"))]
    other_facility = [e.event_id for e in events_of(raw.replace("|HOSPITAL|", "|CLINIC|"))]
    assert not set(first) & set(other_control) and not set(first) & set(other_facility)


def test_events_round_trip_through_the_codec() -> None:
    for e in events_of(orm({1: "NW", 3: "ACC1", 7: "^^^20240302093000", 9: "20240301101400"})):
        assert codec.decode(WorkflowEvent, codec.encode(e)) == e


# ------------------------------------------------------------------------------------------------------ canary


def _canary_segment(name: str, count: int, canaries: list[str], keep: dict[int, str] | None = None) -> str:
    fields: dict[int, str] = {}
    for n in range(1, count + 1):
        comps = []
        for c in range(1, 5):
            value = f"CANARY{name}{n}X{c}Q"
            canaries.append(value)
            comps.append(value)
        fields[n] = "^".join(comps) + f"~CANARY{name}{n}REPQ"
        canaries.append(f"CANARY{name}{n}REPQ")
    fields |= keep or {}
    return seg(name, fields)


def _canary_messages() -> tuple[list[str], list[str]]:
    canaries: list[str] = []
    pid = _canary_segment("PID", 39, canaries)
    pv1 = _canary_segment("PV1", 52, canaries)
    nk1 = _canary_segment("NK1", 39, canaries)
    orc = _canary_segment("ORC", 31, canaries, keep={1: "NW"})  # a new order, so events come out
    planted = "CT chest CANARYPID5X1Q CANARYPID5X2Q MRN CANARYPID3X1Q NOK CANARYNK12X1Q Dr CANARYORC12X2Q"
    obr = seg("OBR", {1: "1", 4: f"CTC^{planted}", 24: "CT", 36: "20240302093000"})
    # SIU carries no ORC: a name the message does not carry cannot be scrubbed, so plant none there
    siu_obr = seg("OBR", {1: "1", 4: "CTC^" + planted.replace("CANARYORC12X2Q", "CANARYPID5X2Q"), 24: "CT"})
    evn = seg("EVN", {2: "20240301081500"})
    messages = [
        message(msh("ADT^A10"), evn, pid, pv1, nk1),
        message(msh("ADT^A04"), evn, pid, pv1, nk1),
        message(msh("ORM^O01"), pid, pv1, nk1, orc, obr),
        message(msh("OMI^O23"), pid, pv1, nk1, orc, seg("TQ1", {7: "20240302093000"}), obr,
                seg("IPC", {1: "ACC1", 3: "1.2.3", 5: "CT"})),
        message(msh("SIU^S12"), seg("SCH", {11: "^^^20240302093000"}), pid, pv1, nk1, siu_obr),
    ]
    return messages, canaries


def test_canaries_in_pid_pv1_nk1_orc_never_leave() -> None:
    messages, canaries = _canary_messages()
    produced = []
    for raw in messages:
        events = events_of(raw)
        assert events, raw[:20]
        produced += events
    for e in produced:
        text, wire = repr(e), codec.encode(e)
        for canary in canaries:
            assert canary not in text and canary.encode() not in wire, (e.message_type, canary)
        assert e.patient_pseudonym == pseudonym(KEYS, "patient", "CANARYPID3X1Q")
    ordered = [e for e in produced if e.kind == "ordered"]
    assert {e.accession_pseudonym for e in ordered} == {
        pseudonym(KEYS, "accession", "ACC1"), pseudonym(KEYS, "accession", "CANARYORC3X1Q")
    }
    assert all(e.order_status is None for e in ordered)  # a canary is no table 0038 code
    described = [e.procedure_description for e in produced if e.message_type not in ("ADT^A10", "ADT^A04")]
    assert set(described) == {"CT chest * Dr *"}, described  # names, MRN, NOK: unknown words, one mark


def test_canaries_never_reach_acks_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    messages, canaries = _canary_messages()
    delivery = FakeDelivery()
    ingestor = Hl7Ingestor(CTX, delivery, "t.workflow", FakeCounters())
    broken = [
        messages[0].replace("|MSG00001|", "||"),  # no MSH-10
        messages[2].replace("|ORM^O01|", "|ORM^O01\\X00\\|"),  # MSH-9 garbage
        messages[2].replace("\rORC|", "\rO C|"),  # a bad segment id
        "\r".join(messages[2].split("\r")[1:]),  # no MSH at all
    ]
    with caplog.at_level(logging.DEBUG):
        replies = [ingestor.handle(raw) for raw in messages + broken]
    assert [r.split("\r")[1].split("|")[1] for r in replies] == ["AA"] * 5 + ["AE"] * 4
    blob = "\n".join(replies) + caplog.text + b"".join(v for _, _, v in delivery.sent).decode("latin-1")
    for canary in canaries:
        assert canary not in blob, canary
    assert any("MSH-10" in r for r in replies) and any("no MSH" in r for r in replies)


def test_identifying_tokens_cover_names_ids_and_addresses() -> None:
    tokens = set(identifying_tokens(parse(message(msh("ADT^A04"), PID, PV1))))
    assert {"WANG", "XIAOMING", "WANG XIAOMING", "MRN0042", "ID777", "19610413", "1961-04-13", "12 Garden Road",
            "Shanghai", "LI", "MING", "D001", "V123456"} <= tokens
    assert "CT" not in tokens and "ROOM1" not in tokens  # locations are not people: "CT" must survive in text


# -------------------------------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("", "no MSH"),
        ("PID|1||CANARYID^^^H||CANARYNAME^X\r", "no MSH"),
        ("FHS|^~\\&|RIS\rMSH|^~\\&|RIS|H|R|E|2024||ADT^A04|1|P|2.5\r", "FHS/BHS"),
        ("MSH|^~|RIS|H\rPID|||CANARYID\r", "MSH-2"),
        ("MSH|^^\\&|RIS|H|R|E|2024||ADT^A04|1|P|2.5\rPID|||CANARYID\r", "MSH-2"),
        ("MSHX^~\\&XRISXH\rPID|||CANARYID\r", "MSH-1"),
        ("MSH|^\r", "MSH-1/MSH-2"),
        ("MSH|^~\\&|RIS|H|R|E|2024|||1|P|2.5\rPID|||CANARYID\r", "MSH-9"),
        ("MSH|^~\\&|RIS|H|R|E|2024||CANARY NAME^A04|1|P|2.5\rPID|||CANARYID\r", "MSH-9"),
        ("MSH|^~\\&|RIS|H|R|E|2024||ADT^A04||P|2.5\rPID|||CANARYID\r", "MSH-10"),
        ("MSH|^~\\&|RIS|H|R|E|2024||ADT^A04|1|P|2.5\rCANARY NAME SMITH\r", "segment 2"),
        ("MSH|^~\\&|RIS|H|R|E|2024||ADT^A04|1|P|2.5\rMSH|^~\\&|RIS\r", "second MSH"),
    ],
)
def test_malformed_messages_raise_phi_free_errors(raw: str, where: str) -> None:
    with pytest.raises(Hl7Error) as info:
        parse(raw)
    assert where in str(info.value) and "CANARY" not in str(info.value)
    nak = ack(raw, "AE", str(info.value), error=info.value)
    assert parse(nak).first("MSA") is not None and "CANARY" not in nak


def test_missing_fields_name_their_position_and_code() -> None:
    with pytest.raises(Hl7Error) as info:
        parse("MSH|^~\\&|RIS|H|R|E|2024||ADT^A04||P|2.5\r")
    assert (info.value.segment, info.value.field_no, info.value.code) == ("MSH", 10, 101)


# ------------------------------------------------------------------------------------------------------- ACKs


def fields_of(text: str, name: str) -> list[str]:
    line = next(s for s in text.split("\r") if s.startswith(name))
    return line.split("|")


def test_ack_aa_structure() -> None:
    msg = parse(message(msh("ADT^A10^ADT_A09", "CTRL42", version="2.3.1", charset="8859/1"), PID))
    text = ack(msg, "AA", control_id="ACK0001", now=datetime(2024, 3, 1, 2, 15, 30, tzinfo=UTC))
    assert text.endswith("\r") and text.count("\r") == 2
    h = fields_of(text, "MSH")
    assert h[1] == "^~\\&" and (h[2], h[3], h[4], h[5]) == ("RADPULSE", "EDGE", "RIS", "HOSPITAL")  # swapped
    assert (h[6], h[8], h[9], h[10], h[11], h[17]) == (
        "20240301021530+0000", "ACK^A10^ACK", "ACK0001", "P", "2.3.1", "8859/1")
    assert fields_of(text, "MSA") == ["MSA", "AA", "CTRL42"]
    assert "ERR" not in text
    back = parse(text)
    assert (back.type_code, back.control_id) == ("ACK^A10", "ACK0001")


def test_ack_control_ids_are_unique_by_default() -> None:
    msg = parse(message(msh("ADT^A10"), PID))
    ids = {parse(ack(msg, "AA")).control_id for _ in range(50)}
    assert len(ids) == 50 and all(len(i) <= 20 for i in ids)


def test_ack_ae_has_err_v25() -> None:
    raw = message(msh("ORM^O01", "C9"), PID, seg("OBR", {1: "1"}))
    with pytest.raises(Hl7Error) as info:
        events_of(raw)
    text = ack(raw, "AE", str(info.value), error=info.value)
    assert fields_of(text, "MSA")[:3] == ["MSA", "AE", "C9"]
    err = fields_of(text, "ERR")
    assert err[2] == "ORC^1" and err[3] == "100^Segment sequence error^HL70357" and err[4] == "E"
    assert "no ORC segment" in err[8]


def test_ack_err_v23_uses_err1() -> None:
    raw = message(msh("ADT^A04", version="2.3"), PID)
    text = ack(raw, "AE", "bad", error=Hl7Error("bad", segment="PID", field_no=3, code=101))
    assert fields_of(text, "ERR") == ["ERR", "PID^1^3^101&Required field missing&HL70357"]


def test_ack_escapes_its_text_and_truncates_msa3() -> None:
    text = ack(parse(message(msh("ADT^A04"), PID)), "AR", "a|b^c&d " + "x" * 200)
    msa = fields_of(text, "MSA")
    assert msa[3].startswith("a\\F\\b\\S\\c\\T\\d") and len(msa) == 4
    assert parse(text).first("MSA").get(3).startswith("a|b^c&d")  # type: ignore[union-attr]


def test_ack_of_garbage_is_still_an_ack() -> None:
    text = ack("not hl7 at all", "AE", "no MSH segment")
    msg = parse(text)
    assert msg.type_code == "ACK" and fields_of(text, "MSA")[:3] == ["MSA", "AE", ""]
    assert fields_of(text, "MSH")[11] == "2.5.1"


def test_ack_reads_what_it_can_of_a_broken_msh() -> None:
    raw = "MSH|^~\\&|RIS|HOSP|RP|EDGE|2024||ADT^A04|C77|P|2.4\rPID|||X\rBAD SEGMENT\r"
    text = ack(raw, "AE", "bad segment")
    assert fields_of(text, "MSA")[:3] == ["MSA", "AE", "C77"] and fields_of(text, "MSH")[4:6] == ["RIS", "HOSP"]


def test_ack_rejects_unknown_codes() -> None:
    with pytest.raises(ValueError, match="AA, AE, AR"):
        ack("MSH|^~\\&|", "CA")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- charsets


@pytest.mark.parametrize(
    ("charset", "codec_name"),
    [("UNICODE UTF-8", "utf-8"), ("8859/1", "iso8859-1"), ("8859/15", "iso8859-15"), ("GB 18030-2000", "gb18030"),
     ("GB18030", "gb18030"), ("ASCII", "ascii"), ("BIG-5", "big5"), ("UNICODE", None), ("", None), (None, None)],
)
def test_python_codec(charset: str | None, codec_name: str | None) -> None:
    assert python_codec(charset) == codec_name


def test_decode_by_msh18_gb18030_even_with_pipe_trail_bytes() -> None:
    tricky = next(ch for ch in map(chr, range(0x4E00, 0x9FFF)) if b"|" in ch.encode("gb18030"))
    raw = message(msh("ADT^A04", charset="GB 18030-2000", facility=f"医院{tricky}"), seg("PID", {3: "1", 5: "张^伟"}))
    text, used = decode_bytes(raw.encode("gb18030"))
    assert used == "gb18030" and text == raw
    assert parse(text).first("PID").get(5) == "张"  # type: ignore[union-attr]


def test_decode_defaults_to_utf8_then_latin1() -> None:
    raw = message(msh("ADT^A04"), seg("PID", {3: "1", 5: "Müller^Zoë"}))
    assert decode_bytes(raw.encode("utf-8")) == (raw, "utf-8")
    assert decode_bytes(raw.encode("latin-1")) == (raw, "latin-1")
    latin = message(msh("ADT^A04", charset="8859/1"), seg("PID", {5: "Müller"}))
    assert decode_bytes(latin.encode("latin-1")) == (latin, "iso8859-1")


# ------------------------------------------------------------------------------------------------ MLLP frames


def test_frames_with_junk_between_them_and_byte_by_byte_delivery() -> None:
    stream = b"junk\r\n" + frame("MSH|A") + b"\n\n  " + frame("MSH|B") + b"\x1c\r" + frame("MSH|C")
    assert FrameReader().feed(stream) == [Frame(b"MSH|A"), Frame(b"MSH|B"), Frame(b"MSH|C")]
    reader = FrameReader()
    out = [item for i in range(len(stream)) for item in reader.feed(stream[i : i + 1])]
    assert out == [Frame(b"MSH|A"), Frame(b"MSH|B"), Frame(b"MSH|C")]
    assert reader.discarded_bytes == len(b"junk") + len(b"  ") + 1  # the stray 0x1C


def test_oversized_frame_is_reported_once_then_reading_resyncs() -> None:
    reader = FrameReader(max_message_bytes=100)
    big = b"\x0bMSH|^~\\&|A|B|C|D|2024||ADT^A04|BIG1|P|2.5\r" + b"x" * 10_000 + b"\x1c\r"
    out = []
    for i in range(0, len(big), 333):
        out += reader.feed(big[i : i + 333])
    out += reader.feed(frame("MSH|NEXT"))
    assert len(out) == 2 and isinstance(out[0], Oversized) and out[1] == Frame(b"MSH|NEXT")
    assert out[0].size == len(big) - 3 and b"BIG1" in out[0].head


def test_a_frame_cut_short_by_a_new_start_block_is_dropped() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x0bMSH|HALF" + frame("MSH|WHOLE")) == [Frame(b"MSH|WHOLE")]
    assert reader.abandoned_frames == 1


# ------------------------------------------------------------------------------------------------- ingestor


class FakeDelivery:
    def __init__(self, statuses: list[Status] | None = None, fail: Exception | None = None) -> None:
        self.statuses = statuses or []
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes]] = []

    def deliver(self, topic: str, key: bytes, value: bytes) -> Status:
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, key, value))
        return self.statuses.pop(0) if self.statuses else Status.SUCCESS


class FakeCounters:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.rejected: list[str] = []

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def reject(self, reason: str) -> None:
        self.rejected.append(reason)


def msa(reply: str) -> list[str]:
    return fields_of(reply, "MSA")


def test_ingestor_delivers_every_event_before_aa() -> None:
    delivery, counters = FakeDelivery(), FakeCounters()
    ingestor = Hl7Ingestor(CTX, delivery, "t.workflow", counters)
    raw = orm({1: "NW", 3: "ACC1001", 7: "^^^20240302093000"}, control="C1")
    reply = ingestor.handle(raw)
    assert msa(reply)[:3] == ["MSA", "AA", "C1"]
    events = [codec.decode(WorkflowEvent, v) for _, _, v in delivery.sent]
    assert [e.kind for e in events] == ["ordered", "scheduled"]
    assert {k for _, k, _ in delivery.sent} == {pseudonym(KEYS, "accession", "ACC1001").encode()}
    assert {t for t, _, _ in delivery.sent} == {"t.workflow"} and counters.counts == {"workflow": 2}


def test_ingestor_keys_by_patient_without_accession() -> None:
    delivery = FakeDelivery()
    Hl7Ingestor(CTX, delivery, "t", FakeCounters()).handle(message(msh("ADT^A10"), PID))
    assert [k for _, k, _ in delivery.sent] == [pseudonym(KEYS, "patient", "MRN0042").encode()]


def test_ingestor_answers_ar_retry_later_when_the_spool_is_full() -> None:
    delivery, counters = FakeDelivery([Status.SUCCESS, Status.OUT_OF_RESOURCES]), FakeCounters()
    reply = Hl7Ingestor(CTX, delivery, "t", counters).handle(orm({1: "NW", 3: "A", 7: "^^^20240302093000"}))
    assert msa(reply)[:4] == ["MSA", "AR", "ORM0001", RETRY_LATER]
    assert fields_of(reply, "ERR")[1] == "MSH^1^^207&Application internal error&HL70357"  # v2.3.1: ERR-1
    assert counters.counts == {"workflow": 1}  # the first event is delivered; the resend repeats it with its id


def test_ingestor_ignores_unmapped_types_with_aa() -> None:
    delivery, counters = FakeDelivery(), FakeCounters()
    reply = Hl7Ingestor(CTX, delivery, "t", counters).handle(message(msh("ADT^A08", "U1"), PID))
    assert msa(reply)[:3] == ["MSA", "AA", "U1"] and "ignored" in msa(reply)[3]
    assert delivery.sent == [] and counters.counts == {"ignored": 1}


def test_ingestor_rejects_malformed_with_ae_and_counts_it() -> None:
    counters = FakeCounters()
    ingestor = Hl7Ingestor(CTX, FakeDelivery(), "t", counters)
    reply = ingestor.handle("MSH|^~\\&|RIS|H|R|E|2024||ADT^A04||P|2.5\rPID|||SECRET\r")
    assert msa(reply)[1] == "AE" and "MSH-10" in msa(reply)[3] and "SECRET" not in reply
    reply = ingestor.handle(message(msh("ORM^O01", "NOORC"), PID, seg("OBR", {1: "1"})))
    assert msa(reply)[:3] == ["MSA", "AE", "NOORC"]
    assert counters.rejected == ["hl7_malformed", "hl7_malformed"]


def test_ingestor_internal_error_is_ae_without_values(caplog: pytest.LogCaptureFixture) -> None:
    counters = FakeCounters()
    ingestor = Hl7Ingestor(CTX, FakeDelivery(fail=RuntimeError("WANG XIAOMING")), "t", counters)
    with caplog.at_level(logging.DEBUG):
        reply = ingestor.handle(message(msh("ADT^A10", "E1"), PID))
    assert msa(reply)[:3] == ["MSA", "AE", "E1"] and "RuntimeError" in reply
    assert "WANG" not in reply and "WANG" not in caplog.text and counters.rejected == ["hl7_processing_failure"]


def test_ingestor_does_not_acknowledge_acks() -> None:
    delivery = FakeDelivery()
    assert Hl7Ingestor(CTX, delivery, "t", FakeCounters()).handle(message(msh("ACK^A01"), "MSA|AA|X1")) == ""
    assert delivery.sent == []


def test_parsed_message_type_is_exported() -> None:
    assert isinstance(parse(message(msh("ADT^A04"), PID)), Hl7Message)
