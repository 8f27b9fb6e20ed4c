"""Received bytes + transfer syntax → the header fields radpulse needs. Stops before pixel data. Pure.

The dataset is parsed from the bytes exactly as received in the negotiated transfer syntax (deflate is inflated
first), never decoded by pynetdicom, and parsing stops at (7FE0,0010) so pixel data is neither decoded nor copied.
The returned ``Header`` still holds identifiers (names, IDs, accession): it lives only inside ``ingest`` and
``deid`` and its ``repr`` shows none of them.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.valuerep import VR as _VR

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"

# pydicom's validation warnings quote element values (a malformed name is still a name): never emit them.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
logging.getLogger("pydicom").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")

_VALID_VRS = frozenset(str(v) for v in _VR)
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_MAX_INFLATED_HEADER = 64 * 1024 * 1024
_VR_BYTES = {v.encode(): v for v in _VALID_VRS}
_LONG_VRS = frozenset(str(v) for v in EXPLICIT_VR_LENGTH_32)
_EMPTY_RAW = {v: empty_value_for_VR(v, raw=True) for v in _VALID_VRS}
_EXPLICIT_LE_SHORT = struct.Struct("<HH2sH")
_EXPLICIT_BE_SHORT = struct.Struct(">HH2sH")
_IMPLICIT_LE = struct.Struct("<HHI")
_IMPLICIT_BE = struct.Struct(">HHI")
_U32_LE, _U32_BE = struct.Struct("<I"), struct.Struct(">I")


_UNCHECKED = "pydicom's reader read it: _validate checks it"


class _Unusual(Exception):
    """Something the fast reader leaves to pydicom's reader (VR switch, unknown VR)."""


class ExtractError(ValueError):
    """The object cannot be parsed. The message names the reason and never a value from the object."""


def _stop_at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAGS


@dataclass(frozen=True)
class Header:
    """Header fields of one object, raw (identifiers included). Never logged: ``repr`` is masked."""

    dataset: Dataset = field(repr=False)
    transfer_syntax_uid: str

    def __repr__(self) -> str:
        return f"Header(transfer_syntax_uid={self.transfer_syntax_uid!r}, <identifiers masked>)"


def _syntax_flags(transfer_syntax_uid: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) for a transfer syntax; every other syntax is explicit VR LE."""
    if transfer_syntax_uid == IMPLICIT_LE:
        return True, True, False
    if transfer_syntax_uid == EXPLICIT_BE:
        return False, False, False
    if transfer_syntax_uid == DEFLATED_LE:
        return False, True, True
    return False, True, False


def _inflate(data: bytes | memoryview) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, _MAX_INFLATED_HEADER)
    except zlib.error:
        raise ExtractError("deflated dataset does not inflate (corrupt deflate stream)") from None
    return out


def _inflate_file(fp: BinaryIO) -> bytes:
    """Inflate a spilled deflated dataset chunk by chunk, keeping at most the header-size cap."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    try:
        while len(out) < _MAX_INFLATED_HEADER and (chunk := fp.read(1024 * 1024)):
            out += inflater.decompress(chunk, _MAX_INFLATED_HEADER - len(out))
    except zlib.error:
        raise ExtractError("deflated dataset does not inflate (corrupt deflate stream)") from None
    return bytes(out)


def _check_pixel_element(fp: BinaryIO, total: int, little: bool, implicit: bool) -> None:
    """Where parsing stopped at pixel data, a defined length longer than what arrived means a truncated object."""
    endian = "<" if little else ">"

    def pixel_tag_at(pos: int) -> bool:
        fp.seek(pos)
        tag = fp.read(4)
        return len(tag) == 4 and struct.unpack(endian + "HH", tag)[0] == 0x7FE0

    start = fp.tell()
    # pydicom may leave the stream at the stopping element's tag or just after it
    if not pixel_tag_at(start) and start >= 4 and pixel_tag_at(start - 4):
        start -= 4
    fp.seek(start)
    head = fp.read(12)
    if len(head) < 8:
        if len(head):
            raise ExtractError("truncated at the pixel data element header")
        return
    if implicit:
        length = struct.unpack(endian + "I", head[4:8])[0]
        value_start = start + 8
    else:
        vr = head[4:6]
        if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            if len(head) < 12:
                raise ExtractError("truncated at the pixel data element header")
            length = struct.unpack(endian + "I", head[8:12])[0]
            value_start = start + 12
        else:
            length = struct.unpack(endian + "H", head[6:8])[0]
            value_start = start + 8
    if length != 0xFFFFFFFF and value_start + length > total:
        raise ExtractError(f"truncated pixel data: {total - value_start} of {length} declared bytes arrived")


def parse_header(data: bytes | BinaryIO, transfer_syntax_uid: str) -> Header:
    """Parse one received dataset (no file meta, no preamble) up to its pixel data."""
    implicit, little, deflated = _syntax_flags(transfer_syntax_uid)
    # pynetdicom's BytesIO holds the whole object (pixels too): parse it in place rather than copy it out
    raw: bytes | memoryview | None
    if isinstance(data, io.BytesIO):
        raw, fp = data.getbuffer(), data
    elif isinstance(data, bytes):
        raw, fp = data, io.BytesIO(data)
    else:  # a large object spilled to disk: parse from the file, the pixel data is never read
        raw, fp = None, data
    if deflated:
        raw = _inflate(raw) if raw is not None else _inflate_file(data)  # type: ignore[arg-type]
        fp = io.BytesIO(raw)
    total = len(raw) if raw is not None else fp.seek(0, io.SEEK_END)
    if not total:
        raise ExtractError("empty dataset")
    fp.seek(0)
    try:
        try:
            if raw is None:
                raise _Unusual
            ds, problem = _fast_read(raw, fp, implicit, little)
        except _Unusual:
            fp.seek(0)
            ds, problem = read_dataset(fp, implicit, little, stop_when=_stop_at_pixels), _UNCHECKED
    except (EOFError, OSError, struct.error):
        raise ExtractError("truncated or malformed dataset (an element runs past the end of the data)") from None
    except (ValueError, KeyError, TypeError, NotImplementedError, AttributeError) as exc:
        raise ExtractError(f"malformed dataset ({type(exc).__name__})") from None
    # pydicom switches VR mode when the data contradicts the negotiated syntax; check pixels the way it read
    read_implicit, read_little = ds.original_encoding
    _check_pixel_element(fp, total, little if read_little is None else read_little,
                         implicit if read_implicit is None else read_implicit)
    if not ds._dict:
        raise ExtractError("no data elements could be read")
    if problem is _UNCHECKED:
        _validate(ds, implicit)
    elif problem is not None:
        raise ExtractError(problem)
    return Header(ds, transfer_syntax_uid)


def _fast_read(raw: bytes | memoryview, fp: io.BytesIO, implicit: bool, little: bool) -> tuple[Dataset, str | None]:
    """What ``read_dataset(..., stop_when=_stop_at_pixels)`` returns for the top level, read straight from the bytes
    (pydicom's reader costs ~2 µs per element through its file API), and the first problem ``_validate`` would
    report (checked here on plain ints, far cheaper). Undefined-length elements (sequences) are handed to pydicom's
    own element reader; anything unusual raises ``_Unusual`` so pydicom reads it all. Leaves `fp` where pydicom
    would: at the pixel data element's tag, or at the end."""
    problem: str | None = None
    previous = -1
    elements: dict[BaseTag, RawDataElement | object] = {}
    encoding: str | list[str] = default_encoding
    end = len(raw)
    short = (_IMPLICIT_LE if little else _IMPLICIT_BE) if implicit else (_EXPLICIT_LE_SHORT if little
                                                                          else _EXPLICIT_BE_SHORT)
    u32 = _U32_LE if little else _U32_BE
    if implicit and end >= 6 and 0x40 < raw[4] < 0x5B and 0x40 < raw[5] < 0x5B:
        raise _Unusual  # looks explicit: pydicom decides which encoding it is
    pos = 0
    while pos + 8 <= end:
        start = pos
        if implicit:
            group, elem, length = short.unpack_from(raw, pos)
            vr = None
            pos += 8
        else:
            group, elem, vr_bytes, length = short.unpack_from(raw, pos)
            vr = _VR_BYTES.get(vr_bytes)
            if vr is None:
                raise _Unusual
            pos += 8
            if vr in _LONG_VRS:
                if pos + 4 > end:
                    break
                (length,) = u32.unpack_from(raw, pos)
                pos += 4
        tag = group << 16 | elem
        if tag == 0xFFFEE00D:
            break
        if tag in _PIXEL_TAGS:
            pos = start
            break
        if problem is None and (tag <= previous or group in (0x0000, 0xFFFE, 0xFFFF)):
            problem = "malformed dataset (element tags out of order: a wrong value length upstream)"
        previous = tag
        if length == 0xFFFFFFFF:
            # a sequence (or other undefined-length value): pydicom's reader finds its end
            fp.seek(start)
            element = next(data_element_generator(fp, implicit, little, None, None, encoding))
            elements[element.tag] = element
            pos = fp.tell()
            continue
        value = bytes(raw[pos : pos + length]) if length else _EMPTY_RAW.get(vr) if vr else None
        element = RawDataElement(BaseTag(tag), vr, length, value, pos, implicit, little)
        if tag == 0x00080005:  # the character set decodes the sequences read after it
            encoding = convert_encodings(convert_raw_data_element(element).value)
        elements[element.tag] = element
        pos += length
        if pos > end:
            if problem is None:
                problem = (f"truncated or malformed dataset (element ({group:04X},{elem:04X}) declares {length} "
                           f"bytes, {length - (pos - end)} present)")
            break
    fp.seek(min(pos, end))
    ds = Dataset(elements)
    ds.set_original_encoding(implicit, little, encoding)
    return ds, problem


def _validate(ds: Dataset, implicit: bool) -> None:
    """Reject what pydicom's tolerant reader lets through: a wrong value length desynchronises the parse, and what
    follows reads as short values, unknown VRs, or out-of-order or impossible tags."""
    previous = -1
    for tag, elem in ds._dict.items():
        if tag <= previous or (tag >> 16) in (0x0000, 0xFFFE, 0xFFFF):
            raise ExtractError("malformed dataset (element tags out of order: a wrong value length upstream)")
        previous = tag
        if not isinstance(elem, RawDataElement):
            continue
        if elem.VR is not None and elem.VR not in _VALID_VRS:
            raise ExtractError(f"malformed dataset (invalid VR at ({tag >> 16:04X},{tag & 0xFFFF:04X}))")
        if elem.length != 0xFFFFFFFF and elem.value is not None and len(elem.value) != elem.length:
            raise ExtractError(
                f"truncated or malformed dataset (element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares "
                f"{elem.length} bytes, {len(elem.value)} present)"
            )


def first(values: Iterable[Any]) -> Any:
    for v in values:
        if v not in (None, ""):
            return v
    return None
