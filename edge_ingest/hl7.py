"""HL7 v2 messages → de-identified ``WorkflowEvent``s, and the ACKs that answer them. Pure: no sockets, no I/O.

Where HL7 v2 bites:
- Segments end with CR, but feeds (and messages pasted by hand) also use LF or CRLF: all three are accepted.
- The delimiters are declared per message in MSH-1/MSH-2, and MSH is the one segment whose field numbers are
  offset by one (MSH-1 *is* the field separator). Escapes (``\\F\\`` ``\\S\\`` ``\\T\\`` ``\\R\\`` ``\\E\\``) are
  undone only after a field has been split, so an escaped delimiter never splits a value.
- A time without its own offset is the sender's local time: it is read in the site's IANA zone (DST-correct per
  instant), not with MSH-7's offset, because a scheduled start weeks ahead may lie across a DST change.
  A date without a time gives no instant and becomes ``None`` rather than a fake local midnight.
- MSH-10 is unique per sending application only, so event ids hash (site, MSH-3, MSH-4, MSH-10, index): a resend
  with the same control id is the same event, but a sender that restarts its counter collides with old events,
  and an engine that renumbers a resend makes a second event.
- Accession numbers travel in different fields per RIS; ``ACCESSION_FIELDS`` lists the order they are read in.
  ADT and SIU rarely carry one: then only the patient pseudonym links the event.

Nothing from PID, PV1, NK1 or ORC leaves except through ``pseudonym``/``encrypt_accession``, a table-checked code,
a parsed time, or free text scrubbed of every name, ID, address, phone and birth date the message itself carries.
``Hl7Error`` messages name segments and fields, never their values, and the parsed objects' reprs print no values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from edge_ingest.deid import DeidContext, _worth_scrubbing, scrub_text
from edge_ingest.dicomtime import parse_dt_utc
from edge_ingest.pseudonyms import encrypt_accession, pseudonym, uid_pseudonym
from edge_ingest.text import clean_text
from schemas.events import WorkflowEvent

AckCode = Literal["AA", "AE", "AR"]  # original mode: accept, error (content), reject (retry later)
ACK_CODES: tuple[AckCode, ...] = ("AA", "AE", "AR")
DEFAULT_VERSION = "2.5.1"

# (segment, field, component): read in this order, first non-empty wins.
ACCESSION_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("IPC", 1, 1),  # OMI Accession Identifier: the field HL7 made for it
    ("OBR", 18, 1),  # Placer Field 1: the accession number in IHE Scheduled Workflow ORM (v2.3.1)
    ("OBR", 3, 1),  # Filler Order Number: the accession at RIS that fill orders under their own number
    ("ORC", 3, 1),  # Filler Order Number, repeated in the common order segment
)
STUDY_UID_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("IPC", 3, 1),  # OMI Study Instance UID
    ("ZDS", 1, 1),  # IHE Scheduled Workflow's ZDS-1 Study Instance UID (ORM v2.3.1)
)

# Table 0357 message error condition codes used in ERR.
ERR_SEGMENT_SEQUENCE = 100
ERR_REQUIRED_FIELD = 101
ERR_DATA_TYPE = 102
ERR_UNSUPPORTED_TYPE = 200
ERR_INTERNAL = 207
_ERR_TEXT = {
    ERR_SEGMENT_SEQUENCE: "Segment sequence error",
    ERR_REQUIRED_FIELD: "Required field missing",
    ERR_DATA_TYPE: "Data type error",
    ERR_UNSUPPORTED_TYPE: "Unsupported message type",
    ERR_INTERNAL: "Application internal error",
}

_ORDER_STATUSES = frozenset({"SC", "IP", "CM", "CA", "DC", "HD", "A", "ER", "RP"})  # table 0038
_CANCEL_CONTROLS = frozenset({"CA", "OC", "CR", "DC", "OD", "DR"})  # table 0119: cancel/discontinue (+ replies)
_CHANGE_CONTROLS = frozenset({"XO", "XX", "XR"})  # table 0119: order changed
_ADT_KINDS = {"A10": "arrival", "A04": "registration"}
_SIU_KINDS = {
    "S12": "scheduled", "S13": "scheduled", "S14": "scheduled",
    "S15": "cancelled", "S16": "cancelled", "S17": "cancelled",  # cancelled, discontinued, deleted
    "S26": "no_show",
}
_ORDER_TYPES = frozenset({("ORM", "O01"), ("OMI", "O23")})
# DICOM acquisition modalities (CID 29) radiology sends; anything else (free text, canaries) is dropped.
_MODALITIES = frozenset(
    {"CR", "CT", "DX", "ES", "IO", "MG", "MR", "NM", "OT", "PT", "PX", "RF", "RG", "US", "XA", "XC", "BMD"}
)
_TABLE_0074_TO_MODALITY = {"NMR": "MR", "NMS": "NM", "RUS": "US", "OUS": "US", "VUS": "US"}
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_TYPE_CODE = re.compile(r"[A-Z0-9]{3}")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_TS_DIGITS = re.compile(r"^\s*(\d+)")
_PADDING = "\ufeff \t\x0b"  # a BOM, blanks or a stray start block before MSH


class Hl7Error(ValueError):
    """A message that cannot be read; ``str()`` names the segment and field, never a value from the message."""

    def __init__(
        self,
        message: str,
        *,
        segment: str = "MSH",
        sequence: int = 1,
        field_no: int | None = None,
        code: int = ERR_DATA_TYPE,
    ) -> None:
        super().__init__(message)
        self.segment = segment
        self.sequence = sequence
        self.field_no = field_no
        self.code = code


# ------------------------------------------------------------------------------------------------------ encoding


@dataclass(frozen=True, slots=True)
class Encoding:
    """The five delimiters of one message (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    def unescape(self, text: str) -> str:
        """Undo HL7 escape sequences; formatting escapes vanish, unknown ones stay as written."""
        esc = self.escape
        if not esc or esc not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            if text[i] != esc:
                out.append(text[i])
                i += 1
                continue
            end = text.find(esc, i + 1)
            if end < 0:
                out.append(text[i:])
                break
            replacement = self._escape_value(text[i + 1 : end])
            out.append(text[i : end + 1] if replacement is None else replacement)
            i = end + 1
        return "".join(out)

    def _escape_value(self, seq: str) -> str | None:
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition, "E": self.escape}
        if seq in simple:
            return simple[seq]
        if seq in (".br", ".sp") or seq.startswith(".sp"):
            return "\n"
        if seq in ("H", "N", "P") or seq.startswith((".", "C", "M", "Z")):
            return ""  # highlighting, truncation, formatting and character-set switches carry no text
        if seq.startswith("X") and len(seq) > 1 and len(seq) % 2 == 1:
            try:
                raw = bytes.fromhex(seq[1:])
            except ValueError:
                return None
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        return None

    def escape_text(self, text: str) -> str:
        """Text → a value safe to put between these delimiters."""
        esc = self.escape
        out = text.replace(esc, f"{esc}E{esc}")
        for char, code in (
            (self.field, "F"), (self.component, "S"), (self.subcomponent, "T"), (self.repetition, "R"),
        ):
            out = out.replace(char, f"{esc}{code}{esc}")
        return out.replace("\r\n", f"{esc}.br{esc}").replace("\r", f"{esc}.br{esc}").replace("\n", f"{esc}.br{esc}")


STANDARD = Encoding()


def _encoding_from_msh(line: str) -> Encoding:
    if len(line) < 8:
        raise Hl7Error("MSH-1/MSH-2: the MSH segment is too short to declare its delimiters, e.g. MSH|^~\\&|",
                       field_no=2)
    sep = line[3]
    if sep.isalnum() or sep.isspace():
        raise Hl7Error("MSH-1: the field separator must be a punctuation character, usually '|'", field_no=1)
    end = line.find(sep, 4)
    chars = line[4:end] if end >= 0 else line[4:]
    # v2.7 adds a fifth (truncation) character; it has no effect on reading
    ok = (
        len(chars) in (4, 5)
        and len(set(chars) | {sep}) == len(chars) + 1
        and not any(c.isalnum() or c.isspace() for c in chars)
    )
    if not ok:
        raise Hl7Error(
            "MSH-2: expected 4 distinct delimiter characters (component, repetition, escape, subcomponent), "
            "usually ^~\\&", field_no=2,
        )
    return Encoding(sep, chars[0], chars[1], chars[2], chars[3])


# ------------------------------------------------------------------------------------------------------ segments


class Segment:
    """One segment; ``fields[n]`` is field n as written (so for MSH, ``fields[1]`` is the separator)."""

    __slots__ = ("encoding", "fields", "name")

    def __init__(self, name: str, fields: tuple[str, ...], encoding: Encoding) -> None:
        self.name = name
        self.fields = fields
        self.encoding = encoding

    def __repr__(self) -> str:  # values are PHI: show the shape only
        return f"Segment({self.name}, {len(self.fields) - 1} fields)"

    def raw(self, n: int) -> str:
        return self.fields[n] if 0 < n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        raw = self.raw(n)
        if self.name == "MSH" and n in (1, 2):
            return [raw]
        return raw.split(self.encoding.repetition) if raw else []

    def components(self, n: int, repetition: int = 0) -> list[str]:
        """Components of one repetition, unescaped (subcomponents left joined by the subcomponent character)."""
        reps = self.repetitions(n)
        if repetition >= len(reps):
            return []
        return [self.encoding.unescape(c) for c in reps[repetition].split(self.encoding.component)]

    def get(self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 0) -> str | None:
        """One value, unescaped and stripped; empty and the HL7 null ``""`` become None."""
        reps = self.repetitions(n)
        if repetition >= len(reps):
            return None
        if self.name == "MSH" and n in (1, 2):
            return reps[0]
        comps = reps[repetition].split(self.encoding.component)
        if component > len(comps):
            return None
        subs = comps[component - 1].split(self.encoding.subcomponent)
        if subcomponent > len(subs):
            return None
        value = self.encoding.unescape(subs[subcomponent - 1]).strip()
        return None if value in ("", '""') else value


@dataclass(frozen=True, slots=True, repr=False)
class Hl7Message:
    """A parsed message: its delimiters, segments, and the MSH fields every consumer needs."""

    encoding: Encoding
    segments: tuple[Segment, ...]
    message_type: str  # MSH-9.1, e.g. "ADT"
    trigger: str  # MSH-9.2 (EVN-1 for old ADT), e.g. "A10"; may be ""
    structure: str | None  # MSH-9.3
    control_id: str  # MSH-10
    timestamp: str | None  # MSH-7, as written
    processing_id: str | None  # MSH-11.1
    version: str | None  # MSH-12.1
    sending_application: str | None  # MSH-3.1
    sending_facility: str | None  # MSH-4.1
    receiving_application: str | None  # MSH-5.1
    receiving_facility: str | None  # MSH-6.1
    charset: str | None  # MSH-18, first repetition

    def __repr__(self) -> str:
        return (f"Hl7Message({self.type_code}, control_id={self.control_id!r}, version={self.version!r}, "
                f"{len(self.segments)} segments)")

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def type_code(self) -> str:
        """"ADT^A10" (or just "ACK" when there is no trigger)."""
        return f"{self.message_type}^{self.trigger}" if self.trigger else self.message_type

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def _split_lines(message: str) -> list[str]:
    lines = [line for line in re.split(r"\r\n|\r|\n", message) if line.strip(_PADDING)]
    if lines:
        lines[0] = lines[0].lstrip(_PADDING)
    return lines


def parse(message: str) -> Hl7Message:
    """Text of one message → ``Hl7Message``. Raises ``Hl7Error`` for what no receiver could read."""
    lines = _split_lines(message)
    if not lines or not lines[0].startswith("MSH"):
        batch = bool(lines) and lines[0][:3] in ("FHS", "BHS")
        raise Hl7Error(
            "batch envelopes (FHS/BHS) are not supported: send one message per MLLP frame" if batch
            else "no MSH segment: an HL7 v2 message starts with MSH|^~\\&|",
            code=ERR_SEGMENT_SEQUENCE,
        )
    enc = _encoding_from_msh(lines[0])
    segments: list[Segment] = []
    for i, line in enumerate(lines):
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or (len(line) > 3 and line[3] != enc.field):
            raise Hl7Error(
                f"segment {i + 1}: expected a 3-character segment id followed by the field separator",
                segment=name if _SEGMENT_ID.fullmatch(name) else "MSH", code=ERR_SEGMENT_SEQUENCE,
            )
        if i > 0 and name == "MSH":
            raise Hl7Error(f"segment {i + 1}: a second MSH; send one message per MLLP frame",
                           code=ERR_SEGMENT_SEQUENCE)
        parts = line.split(enc.field)
        fields = ("MSH", enc.field, *parts[1:]) if i == 0 else tuple(parts)
        segments.append(Segment(name, fields, enc))
    msh = segments[0]
    message_type = (msh.get(9, 1) or "").upper()
    trigger = (msh.get(9, 2) or "").upper()
    if not message_type:
        raise Hl7Error("MSH-9 (message type) is empty: it says what the message is, e.g. ADT^A04",
                       field_no=9, code=ERR_REQUIRED_FIELD)
    if not trigger and message_type == "ADT" and (evn := next((s for s in segments if s.name == "EVN"), None)):
        trigger = (evn.get(1) or "").upper()  # before v2.3 the ADT trigger lived in EVN-1
    if not _TYPE_CODE.fullmatch(message_type) or (trigger and not _TYPE_CODE.fullmatch(trigger)):
        raise Hl7Error("MSH-9: message type and trigger must be 3 letters/digits each, e.g. ORM^O01",
                       field_no=9, code=ERR_DATA_TYPE)
    control_id = msh.get(10)
    if not control_id:
        raise Hl7Error("MSH-10 (message control id) is empty: the acknowledgement must quote it",
                       field_no=10, code=ERR_REQUIRED_FIELD)
    return Hl7Message(
        encoding=enc,
        segments=tuple(segments),
        message_type=message_type,
        trigger=trigger,
        structure=msh.get(9, 3),
        control_id=control_id,
        timestamp=msh.get(7),
        processing_id=msh.get(11),
        version=msh.get(12),
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        receiving_application=msh.get(5),
        receiving_facility=msh.get(6),
        charset=msh.get(18),
    )


# ------------------------------------------------------------------------------------------------------ charsets

_CHARSETS = {
    "ASCII": "ascii", "ISOIR6": "ascii",
    "UNICODEUTF8": "utf-8", "UTF8": "utf-8", "ISOIR192": "utf-8",
    "GB180302000": "gb18030", "GB18030": "gb18030", "GBK": "gb18030", "GB2312": "gb18030",
    "BIG5": "big5", "KSX1001": "euc_kr", "ISOIR87": "iso2022_jp", "ISOIR100": "latin-1",
}


def python_codec(charset: str | None) -> str | None:
    """An MSH-18 value (table 0211, e.g. "UNICODE UTF-8", "8859/1", "GB 18030-2000") → a Python codec name."""
    if not charset:
        return None
    key = re.sub(r"[\s_/\-]", "", charset).upper()
    if key in _CHARSETS:
        return _CHARSETS[key]
    if (m := re.fullmatch(r"(?:ISO)?8859(\d{1,2})", key)) and 1 <= int(m[1]) <= 16 and m[1] != "12":
        return f"iso8859-{m[1]}"
    return None


def _msh18_from_bytes(data: bytes) -> str | None:
    start = data.find(b"MSH")
    if start < 0:
        return None
    end = min((i for i in (data.find(b"\r", start), data.find(b"\n", start)) if i >= 0), default=len(data))
    line = data[start:end].decode("latin-1")  # one byte per character, so positions survive any charset
    if len(line) < 4:
        return None
    fields = line.split(line[3])
    rep = line[5] if len(line) > 5 else "~"
    named = [i for i, f in enumerate(fields) if python_codec(f.split(rep)[0])]
    if not named:
        return None
    # multi-byte text in MSH-3..17 (GB18030 trail bytes can be '|') can shift the count; prefer index 17
    best = 17 if 17 in named else named[-1]
    return python_codec(fields[best].split(rep)[0])


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Bytes of one message → (text, codec used): MSH-18's charset when it decodes, else UTF-8, else Latin-1."""
    for codec in dict.fromkeys(c for c in (_msh18_from_bytes(data), "utf-8") if c):
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1"), "latin-1"


# --------------------------------------------------------------------------------------------------------- times


def parse_ts(value: str | None, site_zone: str) -> datetime | None:
    """HL7 TS/DTM (YYYYMMDDHH[MM[SS[.S+]]][+/-ZZZZ]) → UTC; its own offset wins, else the site's zone."""
    if not value:
        return None
    m = _TS_DIGITS.match(value)
    if not m or len(m[1]) < 10:
        return None  # a bare date is no instant; a guessed midnight would poison durations
    return parse_dt_utc(value.strip(), site_zone=site_zone)


# ---------------------------------------------------------------------------------------------------- scrubbing

# (segment, field, kind): everything the message says about a person or an order, used only to scrub free text.
_IDENTIFYING: tuple[tuple[str, int, str], ...] = (
    ("PID", 2, "id"), ("PID", 3, "id"), ("PID", 4, "id"), ("PID", 5, "name"), ("PID", 6, "name"),
    ("PID", 7, "date"), ("PID", 9, "name"), ("PID", 11, "address"), ("PID", 13, "phone"), ("PID", 14, "phone"),
    ("PID", 18, "id"), ("PID", 19, "id"), ("PID", 20, "id"), ("PID", 21, "id"),
    ("PD1", 4, "provider"),
    ("PV1", 7, "provider"), ("PV1", 8, "provider"), ("PV1", 9, "provider"), ("PV1", 17, "provider"),
    ("PV1", 19, "id"), ("PV1", 50, "id"), ("PV1", 52, "provider"),
    ("NK1", 2, "name"), ("NK1", 4, "address"), ("NK1", 5, "phone"), ("NK1", 6, "phone"), ("NK1", 30, "name"),
    ("NK1", 31, "phone"), ("NK1", 32, "address"), ("NK1", 33, "id"),
    ("GT1", 3, "name"), ("GT1", 5, "address"), ("GT1", 6, "phone"), ("IN1", 16, "name"),
    ("ORC", 2, "id"), ("ORC", 3, "id"), ("ORC", 4, "id"), ("ORC", 10, "provider"), ("ORC", 11, "provider"),
    ("ORC", 12, "provider"), ("ORC", 14, "phone"), ("ORC", 19, "provider"),
    ("OBR", 2, "id"), ("OBR", 3, "id"), ("OBR", 16, "provider"), ("OBR", 17, "phone"), ("OBR", 18, "id"),
    ("OBR", 19, "id"), ("OBR", 20, "id"), ("OBR", 28, "provider"), ("OBR", 32, "staff"), ("OBR", 33, "staff"),
    ("OBR", 34, "staff"), ("OBR", 35, "staff"),
    ("IPC", 1, "id"), ("IPC", 2, "id"), ("IPC", 4, "id"),
    ("SCH", 1, "id"), ("SCH", 2, "id"), ("SCH", 12, "provider"), ("SCH", 16, "provider"), ("SCH", 20, "provider"),
    ("SCH", 26, "id"), ("SCH", 27, "id"), ("AIP", 3, "provider"), ("MRG", 1, "id"), ("MRG", 7, "name"),
)
# components holding identifying text, per kind (names: family, given, middle; providers: id, family, given, middle)
_KIND_COMPONENTS = {
    # addresses: street, other, city, state, postal code, other designation, county
    "id": (1,), "name": (1, 2, 3), "provider": (1, 2, 3, 4), "staff": (1,), "address": (1, 2, 3, 4, 5, 8, 9),
    "phone": (1, 4, 6, 7), "date": (1,),
}


def _name_tokens(parts: list[str]) -> list[str]:
    out = list(parts)
    if len(parts) >= 2:
        a, b = parts[0], parts[1]
        out += [a + b, b + a, f"{a} {b}", f"{b} {a}", f"{a}, {b}"]  # written orders, CJK names run together
    out += [w for p in parts for w in p.split() if len(w) >= 2]
    return out


def identifying_tokens(msg: Hl7Message) -> tuple[str, ...]:
    """Every name part, ID, address line, phone number and birth date the message carries, longest first."""
    found: set[str] = set()
    for seg_name, n, kind in _IDENTIFYING:
        for seg in msg.all(seg_name):
            for r in range(len(seg.repetitions(n))):
                parts = [v for c in _KIND_COMPONENTS[kind] for s in range(1, 6)
                         if (v := seg.get(n, c, s, r)) is not None]
                if kind in ("name", "provider", "staff"):
                    found.update(_name_tokens(parts))
                elif kind == "date":
                    found.update(parts)
                    found.update(f"{p[:4]}-{p[4:6]}-{p[6:8]}" for p in parts if len(p) >= 8)
                    found.update(f"{p[:4]}/{p[4:6]}/{p[6:8]}" for p in parts if len(p) >= 8)
                else:
                    found.update(parts)
                    found.update(w for p in parts for w in re.split(r"[\s,;]+", p) if len(w) >= 3)
    return tuple(sorted((t for t in found if _worth_scrubbing(t)), key=len, reverse=True))


# ------------------------------------------------------------------------------------------------------- mapping


@dataclass(frozen=True, slots=True)
class _Order:
    """What one order group (ORC and the segments up to the next ORC), or a whole message, says about an order."""

    accession: str | None = None
    study_uid: str | None = None
    modality: str | None = None
    description: str | None = None
    station_ae: str | None = None
    control: str | None = None
    status: str | None = None
    transaction_ts: str | None = None
    requested_ts: str | None = None
    scheduled_ts: str | None = None


def _read(segments: Sequence[Segment], places: Iterable[tuple[str, int, int]]) -> str | None:
    for name, n, comp in places:
        for seg in segments:
            if seg.name == name and (value := seg.get(n, comp)):
                return value
    return None


def _modality(segments: Sequence[Segment]) -> str | None:
    for name, n in (("IPC", 5), ("OBR", 24)):
        for seg in segments:
            if seg.name == name and (code := seg.get(n)):
                code = code.upper()
                code = _TABLE_0074_TO_MODALITY.get(code, code)
                if code in _MODALITIES:
                    return code
    return None


def _order(segments: Sequence[Segment], schedule: Iterable[tuple[str, int, int]]) -> _Order:
    study = _read(segments, STUDY_UID_FIELDS)
    ae = _read(segments, [("IPC", 9, 1)])
    status = (_read(segments, [("ORC", 5, 1)]) or "").upper()
    return _Order(
        accession=_read(segments, ACCESSION_FIELDS),
        study_uid=study if study and len(study) <= 64 and _UID.fullmatch(study) else None,
        modality=_modality(segments),
        description=_read(segments, [("OBR", 4, 2), ("OBR", 4, 5), ("AIS", 3, 2)]),
        station_ae=ae if ae and len(ae) <= 16 and ae.isascii() and ae.isprintable() and "\\" not in ae else None,
        control=(_read(segments, [("ORC", 1, 1)]) or "").upper() or None,
        status=status if status in _ORDER_STATUSES else None,
        transaction_ts=_read(segments, [("ORC", 9, 1)]),
        requested_ts=_read(segments, [("OBR", 6, 1)]),
        scheduled_ts=_read(segments, schedule),
    )


# scheduled start: (segment, field, component), first non-empty wins
_ORDER_SCHEDULE = (("TQ1", 7, 1), ("ORC", 7, 4), ("OBR", 27, 4), ("OBR", 36, 1))
_SIU_SCHEDULE = (("TQ1", 7, 1), ("SCH", 11, 4), ("AIS", 4, 1), ("AIL", 6, 1))


def _order_groups(msg: Hl7Message) -> list[list[Segment]]:
    groups: list[list[Segment]] = []
    for seg in msg.segments:
        if seg.name == "ORC":
            groups.append([seg])
        elif groups:
            groups[-1].append(seg)
    return groups


def _order_kinds(order: _Order, has_schedule: bool) -> list[str]:
    control, status = order.control, order.status
    if control in _CANCEL_CONTROLS or status in ("CA", "DC"):
        return ["cancelled"]
    if control == "NW":
        return ["ordered", "scheduled"] if has_schedule else ["ordered"]
    if has_schedule and (control in _CHANGE_CONTROLS or status == "SC"):
        return ["scheduled"]
    return ["order_status"] if status else []


def _patient_id(msg: Hl7Message) -> str | None:
    pid = msg.first("PID")
    if pid is None:
        return None
    for r in range(len(pid.repetitions(3))):
        if value := pid.get(3, 1, 1, r):
            return value
    return pid.get(2)  # pre-2.3 feeds put the patient id in PID-2


def to_workflow_events(msg: Hl7Message, ctx: DeidContext, *, received_at: datetime) -> list[WorkflowEvent]:
    """The allow-list for HL7: one event per fact the message states; [] for message types not mapped."""
    zone = ctx.site_timezone
    keys = ctx.keys
    key = (msg.message_type, msg.trigger)
    sent_at = parse_ts(msg.timestamp, zone)
    drafts: list[tuple[str, _Order, dict[str, Any]]] = []
    if msg.message_type == "ADT" and msg.trigger in _ADT_KINDS:
        evn = msg.first("EVN")
        occurred = (parse_ts(evn.get(6), zone) or parse_ts(evn.get(2), zone)) if evn else None
        order = _order(msg.segments, ())
        drafts.append((_ADT_KINDS[msg.trigger], order, {"occurred_at": occurred or sent_at}))
    elif key in _ORDER_TYPES:
        groups = _order_groups(msg)
        if not groups:
            raise Hl7Error(f"{msg.type_code} has no ORC segment: each order needs one", segment="ORC",
                           code=ERR_SEGMENT_SEQUENCE)
        for group in groups:
            order = _order(group, _ORDER_SCHEDULE)
            scheduled = parse_ts(order.scheduled_ts, zone)
            transaction = parse_ts(order.transaction_ts, zone)
            for kind in _order_kinds(order, scheduled is not None):
                extra: dict[str, Any] = {"occurred_at": transaction or sent_at, "order_status": order.status,
                                         "scheduled_start_utc": scheduled}
                if kind == "ordered":
                    ordered_at = transaction or parse_ts(order.requested_ts, zone)
                    extra["order_time_utc"] = ordered_at
                    extra["occurred_at"] = ordered_at or sent_at
                drafts.append((kind, order, extra))
    elif msg.message_type == "SIU" and msg.trigger in _SIU_KINDS:
        order = _order(msg.segments, _SIU_SCHEDULE)
        drafts.append((_SIU_KINDS[msg.trigger], order, {
            "occurred_at": sent_at, "scheduled_start_utc": parse_ts(order.scheduled_ts, zone),
        }))
    if not drafts:
        return []

    patient_id = _patient_id(msg)
    patient = pseudonym(keys, "patient", patient_id) if patient_id else None
    tokens = identifying_tokens(msg)
    identity = "\x1f".join(
        ("HL7", ctx.site_id, msg.sending_application or "", msg.sending_facility or "", msg.control_id)
    )
    events = []
    for index, (kind, order, extra) in enumerate(drafts):
        acc = order.accession
        events.append(WorkflowEvent(
            event_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{identity}\x1f{index}")),
            site_id=ctx.site_id,
            edge_id=ctx.edge_id,
            source="HL7",
            kind=kind,
            received_at=received_at,
            accession_pseudonym=pseudonym(keys, "accession", acc) if acc else None,
            accession_token=encrypt_accession(keys, acc) if acc else None,
            study_pseudonym=uid_pseudonym(keys, order.study_uid) if order.study_uid else None,
            patient_pseudonym=patient,
            message_type=msg.type_code,
            modality=order.modality,
            station_ae=clean_text(order.station_ae, ctx.on_text_issue),
            procedure_description=scrub_text(clean_text(order.description, ctx.on_text_issue), tokens,
                                             ctx.description_max_len, ctx.vocabulary),
            **extra,
        ))
    return events


# ----------------------------------------------------------------------------------------------------------- ACK


def _lenient_msh(raw: str) -> tuple[Segment | None, Encoding]:
    """The MSH of a message that failed to parse, read as far as it goes (to address the NAK)."""
    line = next((ln.lstrip(_PADDING) for ln in _split_lines(raw) if "MSH" in ln[:8]), None)
    if line is None:
        return None, STANDARD
    line = line[line.index("MSH"):]
    try:
        enc = _encoding_from_msh(line)
    except Hl7Error:
        enc = STANDARD
        if len(line) > 3 and not line[3].isalnum():
            enc = Encoding(field=line[3])
    if len(line) < 4 or line[3] != enc.field:
        return None, STANDARD
    parts = line.split(enc.field)
    return Segment("MSH", ("MSH", enc.field, *parts[1:]), enc), enc


def _reencode(seg: Segment | None, n: int) -> str:
    """A field of the original MSH, rewritten with the standard delimiters (components kept)."""
    if seg is None or not seg.raw(n):
        return ""
    first = seg.repetitions(n)[0]
    comps = first.split(seg.encoding.component)
    return "^".join(
        "&".join(STANDARD.escape_text(seg.encoding.unescape(s)) for s in c.split(seg.encoding.subcomponent))
        for c in comps
    ).rstrip("^")


def ack(
    msg_or_raw: Hl7Message | str,
    code: AckCode,
    text: str = "",
    *,
    error: Hl7Error | None = None,
    control_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """An original-mode ACK: MSH (sender and receiver swapped), MSA (code, their control id, text), ERR if not AA.

    Works on raw text that failed to parse too, reading its MSH as far as it goes. Segments end with CR."""
    if code not in ACK_CODES:
        raise ValueError(f"ACK code {code!r}: expected one of {', '.join(ACK_CODES)}")
    if isinstance(msg_or_raw, Hl7Message):
        msh: Segment | None = msg_or_raw.msh
    else:
        try:
            msh = parse(msg_or_raw).msh
        except Hl7Error:
            msh, _ = _lenient_msh(msg_or_raw)
    their_control = _reencode(msh, 10).split("^")[0]
    trigger = (msh.get(9, 2) or "") if msh is not None else ""
    version = (msh.get(12) if msh is not None else None) or DEFAULT_VERSION
    version = version if re.fullmatch(r"\d\.\d+(\.\d+)?", version) else DEFAULT_VERSION
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    fields = [
        "MSH", "^~\\&", _reencode(msh, 5), _reencode(msh, 6), _reencode(msh, 3), _reencode(msh, 4), stamp, "",
        f"ACK^{STANDARD.escape_text(trigger)}^ACK" if _TYPE_CODE.fullmatch(trigger) else "ACK",
        control_id or "A" + uuid.uuid4().hex[:19],
        _reencode(msh, 11).split("^")[0] or "P", version, "", "", "", "", "", _reencode(msh, 18).split("^")[0],
    ]
    while fields[-1] == "":
        fields.pop()
    segments = ["|".join(fields), "|".join(["MSA", code, their_control, STANDARD.escape_text(text[:80])]).rstrip("|")]
    if code != "AA":
        segments.append(_err_segment(error, text, version))
    return "\r".join(segments) + "\r"


def _err_segment(error: Hl7Error | None, text: str, version: str) -> str:
    err_code = error.code if error is not None else ERR_INTERNAL
    condition = f"{err_code}^{_ERR_TEXT.get(err_code, 'Application error')}^HL70357"
    location = ["", "", ""]
    if error is not None:
        location = [error.segment, str(error.sequence), str(error.field_no or "")]
    if version.startswith(("2.1", "2.2", "2.3", "2.4")):
        # before v2.5 receivers read ERR-1: segment^sequence^field^code&text&table
        return "ERR|" + "^".join([*location, condition.replace("^", "&")])
    return f"ERR||{'^'.join(location).rstrip('^')}|{condition}|E||||{STANDARD.escape_text(text[:250])}"
