"""Text as it arrives → clean Unicode, or a marker. Pure.

Every character set of DICOM PS3.3 C.12.1.1.2 is decoded strictly, code extensions included (ISO 2022 IR 58, 87,
149, 159, 13 with their escape sequences; GB18030, GBK, ISO_IR 192 and the single-byte sets). Nothing is decoded
"with replacement": a value whose bytes do not fit its declared character set becomes ``UNDECODABLE`` and is
reported, so no U+FFFD, escape sequence or control character ever leaves the edge.

Undeclared non-ASCII text (default repertoire) is common on Chinese consoles: it is tried as UTF-8, then GB18030,
both strictly, before it counts as undecodable.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from pydicom.charset import CODES_TO_ENCODINGS, convert_encodings
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

UNDECODABLE = "(undecodable)"
ESC = 0x1B
TextIssue = Callable[[str], None]  # receives "undecodable" or "cleaned" (never a value)

_DEFAULT = "iso8859"  # pydicom's name for the default repertoire (ISO_IR 6)
_KEEP_ESCAPES = frozenset({"iso2022_jp", "iso2022_jp_2"})  # Python's codecs read these escapes themselves
_FALLBACKS = ("utf-8", "gb18030")  # undeclared non-ASCII on Chinese consoles
_STAND_ALONE = frozenset({"UTF8", "utf_8", "utf-8", "GB18030", "gb18030", "GBK", "gbk"})
_ESCAPE_SEQ = re.compile(r"\x1b[\x20-\x2f]*[\x30-\x7e]?")
# C0/C1 controls, DEL, format characters (bidi overrides, zero widths), surrogates, private use, U+FFFD, BOM
_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
                  r"\ufff9-\ufffd\ud800-\udfff\ue000-\uf8ff]")
_PRIVATE = re.compile(r"[\ue000-\uf8ff\U000f0000-\U0010ffff]")
_SPACES = re.compile(r"[\t\r\n]+")
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                      "UR", "UT"})
_BINARY = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}


def encodings_of(ds: Dataset) -> tuple[str, ...]:
    """Python codec names for a dataset's Specific Character Set (an item inherits its parent's); cached on it."""
    cached = ds.__dict__.get("_rp_encodings")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    raw = ds._dict.get(0x00080005)
    terms: list[str] | None = None
    if raw is not None:
        value = raw.value
        if isinstance(value, bytes):
            terms = [t.strip() for t in value.decode("ascii", "replace").rstrip("\x00 ").split("\\")]
        elif isinstance(value, str):
            terms = [t.strip() for t in value.split("\\")]
        elif value is not None:
            terms = [str(t).strip() for t in value]
    if terms:
        encodings = tuple(convert_encodings(terms))
    else:
        parent = ds.__dict__.get("_parent_encoding") or [_DEFAULT]
        encodings = tuple(parent if isinstance(parent, list | tuple) else [parent])
    ds.__dict__["_rp_encodings"] = encodings
    return encodings


def decode_bytes(raw: bytes, encodings: Sequence[str]) -> str | None:
    """Strict decode with code extensions; None when the bytes do not fit (never a replacement character)."""
    if raw.isascii() and ESC not in raw:
        return raw.decode("ascii")
    first = encodings[0] if encodings else _DEFAULT
    if ESC not in raw or first in _STAND_ALONE:  # UTF-8/GB18030/GBK allow no code extensions: ESC is a control
        if first != _DEFAULT:
            candidates = [first]  # a declared character set is taken at its word
        else:
            # ISO 2022 sets put their G1 bytes after an escape: tolerate a console that omitted it; undeclared
            # non-ASCII is most often UTF-8 or GB18030 here
            candidates = [e for e in encodings[1:] if e != _DEFAULT]
            candidates += [e for e in _FALLBACKS if e not in candidates]
        for enc in candidates:
            try:
                text = raw.decode(enc)
            except (UnicodeDecodeError, LookupError):
                continue
            if first == _DEFAULT and _PRIVATE.search(text):
                continue  # a guessed charset that lands in private use is a wrong guess
            return text
        return None
    out: list[str] = []
    for fragment in re.findall(rb"(^[^\x1b]+|\x1b[^\x1b]*)", raw):
        text = _decode_fragment(fragment, first)
        if text is None:
            return None
        out.append(text)
    return "".join(out)


def _decode_fragment(fragment: bytes, first: str) -> str | None:
    try:
        if not fragment.startswith(b"\x1b"):
            return fragment.decode("ascii" if first == _DEFAULT else first)
        length = 4 if fragment.startswith((b"\x1b$(", b"\x1b$)")) else 3
        encoding = CODES_TO_ENCODINGS.get(fragment[:length])
        if encoding is None:
            return None  # an escape sequence the standard does not define
        if encoding in _KEEP_ESCAPES:
            return fragment.decode(encoding)
        body = fragment[length:]
        return body.decode("ascii" if encoding == _DEFAULT else encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def clean(text: str) -> tuple[str, bool]:
    """(text without escape sequences, controls, format characters or U+FFFD, whether anything was removed)."""
    if text.isprintable() and "\ufffd" not in text:
        return text, False
    cleaned = _ESCAPE_SEQ.sub("", text)
    cleaned = _SPACES.sub(" ", cleaned)
    cleaned = _BAD.sub("", cleaned)
    return cleaned, cleaned != text


def clean_text(text: str | None, on_issue: TextIssue | None = None) -> str | None:
    """A str from anywhere (HL7, pydicom) → clean text; a value pydicom decoded with replacements is undecodable."""
    if text is None:
        return None
    if "\ufffd" in text:
        if on_issue:
            on_issue("undecodable")
        return UNDECODABLE
    cleaned, changed = clean(text)
    if changed and on_issue:
        on_issue("cleaned")
    return cleaned


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def elements(ds: Dataset) -> dict[int, Any]:
    """The dataset's elements keyed by plain int (pydicom's BaseTag keys compare in Python: slow lookups)."""
    cached = ds.__dict__.get("_rp_elems")
    if cached is None or len(cached) != len(ds._dict):  # built once; rebuilt if someone added elements
        raw = ds._dict
        cached = dict(zip(map(int, raw.keys()), raw.values(), strict=True))
        ds.__dict__["_rp_elems"] = cached
    return cached  # type: ignore[no-any-return]


def element_value(ds: Dataset, tag: int, on_issue: TextIssue | None = None) -> Any:
    """The value of one top-level element without pydicom's conversion (the edge's hot path): text VRs decoded
    strictly and cleaned (str, backslash-joined when multi-valued), binary numbers unpacked; anything else
    (sequences, odd VRs) through pydicom. None when absent or empty. Memoised per dataset (and each problem
    reported once), since one header asks for some attributes several times."""
    memo = ds.__dict__.get("_rp_values")
    if memo is None:
        memo = ds.__dict__["_rp_values"] = {}
    elif tag in memo:
        return memo[tag]
    value = _element_value(ds, tag, on_issue)
    memo[tag] = value
    return value


def _element_value(ds: Dataset, tag: int, on_issue: TextIssue | None) -> Any:
    elem = elements(ds).get(tag)
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement):
        value = elem.value
        if isinstance(value, str):
            return clean_text(value, on_issue) or None
        return value
    raw = elem.value
    if raw is None or len(raw) == 0:
        return None
    vr = elem.VR or _dictionary_vr(tag)
    if vr in TEXT_VRS:
        # nearly every value of a CT header is plain ASCII: no character set to look up
        text = raw.decode("ascii") if raw.isascii() and ESC not in raw else decode_bytes(raw, encodings_of(ds))
        if text is None:
            if on_issue:
                on_issue("undecodable")
            return UNDECODABLE
        text = text.rstrip("\x00 ").lstrip()
        if "\ufffd" in text:  # the sender's own decoder already lost bytes
            if on_issue:
                on_issue("undecodable")
            return UNDECODABLE
        cleaned, changed = clean(text)
        if changed and on_issue:
            on_issue("cleaned")
        return cleaned or None
    fmt = _BINARY.get(vr or "")
    if fmt is not None:
        little = ds.__dict__.get("_rp_little")
        if little is None:
            little = ds.original_encoding[1] is not False
            ds.__dict__["_rp_little"] = little
        size = struct.calcsize(fmt)
        if len(raw) % size:
            return None
        values = struct.unpack(("<" if little else ">") + fmt * (len(raw) // size), raw)
        return values[0] if len(values) == 1 else list(values)
    try:
        value = ds[tag].value
    except Exception:
        return None
    elements(ds)[tag] = ds._dict[tag]  # pydicom replaced the raw element with its converted one
    return value


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)
