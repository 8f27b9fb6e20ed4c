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
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
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


def _inflate(data: bytes) -> bytes:
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
    if isinstance(data, bytes | io.BytesIO):
        raw = data.getvalue() if isinstance(data, io.BytesIO) else data
        if deflated and raw:
            raw = _inflate(raw)
        fp: BinaryIO = io.BytesIO(raw)
        total = len(raw)
    elif deflated:
        fp = io.BytesIO(_inflate_file(data))
        total = len(fp.getbuffer())
    else:  # a large object spilled to disk: parse from the file, the pixel data is never read
        fp = data
        total = fp.seek(0, io.SEEK_END)
        fp.seek(0)
    if not total:
        raise ExtractError("empty dataset")
    try:
        ds = read_dataset(fp, implicit, little, stop_when=_stop_at_pixels)
    except (EOFError, OSError, struct.error):
        raise ExtractError("truncated or malformed dataset (an element runs past the end of the data)") from None
    except (ValueError, KeyError, TypeError, NotImplementedError, AttributeError) as exc:
        raise ExtractError(f"malformed dataset ({type(exc).__name__})") from None
    # pydicom switches VR mode when the data contradicts the negotiated syntax; check pixels the way it read
    read_implicit, read_little = ds.original_encoding
    _check_pixel_element(fp, total, little if read_little is None else read_little,
                         implicit if read_implicit is None else read_implicit)
    if len(ds) == 0:
        raise ExtractError("no data elements could be read")
    _validate(ds, implicit)
    return Header(ds, transfer_syntax_uid)


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
