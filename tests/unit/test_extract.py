"""Header parsing from received bytes: every transfer syntax family, and bad input that must fail cleanly."""

from __future__ import annotations

import io
import zlib

import pytest
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from edge_ingest.extract import DEFLATED_LE, ExtractError, parse_header
from tests.helpers import encode_dataset, make_image

ELE = "1.2.840.10008.1.2.1"


def _encode(ds, ts: str) -> bytes:
    from tests.helpers import dataset_bytes_from_buffer

    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data, written_ts = dataset_bytes_from_buffer(buf.getvalue())
    assert written_ts == ts
    return data


def test_explicit_le_stops_before_pixels() -> None:
    ds = make_image(rows=64, cols=64, StudyDescription="CT HEAD")
    header = parse_header(encode_dataset(ds), ELE)
    assert header.dataset.StudyDescription == "CT HEAD"
    assert 0x7FE00010 not in header.dataset  # pixel data never read


@pytest.mark.parametrize("ts", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_uncompressed_syntaxes(ts: str) -> None:
    ds = make_image(StudyDescription="MR KNEE")
    assert parse_header(_encode(ds, ts), ts).dataset.StudyDescription == "MR KNEE"


def test_deflated_syntax() -> None:
    raw = encode_dataset(make_image(StudyDescription="DX CHEST"))
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = deflater.compress(raw) + deflater.flush()
    assert parse_header(data, DEFLATED_LE).dataset.StudyDescription == "DX CHEST"


def test_corrupt_deflate_is_an_error() -> None:
    with pytest.raises(ExtractError, match="deflate"):
        parse_header(b"\x00\xff" * 50, DEFLATED_LE)


def test_truncated_header_is_an_error() -> None:
    data = encode_dataset(make_image(StudyDescription="X" * 40))
    with pytest.raises(ExtractError):
        parse_header(data[:90], ELE)


def test_truncated_pixel_data_is_an_error() -> None:
    data = encode_dataset(make_image(rows=64, cols=64))
    with pytest.raises(ExtractError, match="truncated pixel data"):
        parse_header(data[:-100], ELE)


def test_wrong_value_length_is_an_error() -> None:
    data = bytearray(encode_dataset(make_image(StudyDescription="CHEST")))
    # (0008,1030) LO, 2-byte length: claim 2000 bytes instead of the real length
    idx = data.find(b"\x08\x00\x30\x10LO")
    assert idx >= 0
    data[idx + 6 : idx + 8] = (2000).to_bytes(2, "little")
    with pytest.raises(ExtractError):
        parse_header(bytes(data), ELE)


@pytest.mark.parametrize("garbage", [b"\x00", b"garbage bytes that are not dicom at all" * 3, bytes(range(256)) * 4])
def test_garbage_is_an_error_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(ExtractError):
        parse_header(garbage, ELE)


def test_empty_is_an_error() -> None:
    with pytest.raises(ExtractError, match="empty"):
        parse_header(b"", ELE)


def test_header_repr_hides_identifiers() -> None:
    header = parse_header(encode_dataset(make_image(PatientName="SECRET^NAME")), ELE)
    assert "SECRET" not in repr(header)
