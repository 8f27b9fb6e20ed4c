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


def _pydicom_reference(raw: bytes, ts: str):
    """What pydicom's own reader makes of the same bytes (the fast reader must agree element for element)."""
    from pydicom.filereader import read_dataset

    from edge_ingest.extract import _stop_at_pixels, _syntax_flags

    implicit, little, _ = _syntax_flags(ts)
    return read_dataset(io.BytesIO(raw), implicit, little, stop_when=_stop_at_pixels)


def _same(fast, ref) -> None:
    assert list(fast.keys()) == list(ref.keys())
    assert fast.original_encoding == ref.original_encoding
    assert fast.original_character_set == ref.original_character_set
    for elem in ref:
        assert fast[elem.tag].VR == elem.VR, elem.tag
        assert fast[elem.tag].value == elem.value, elem.tag


@pytest.mark.parametrize("ts", [ELE, ImplicitVRLittleEndian])
def test_fast_reader_agrees_with_pydicom_on_vendor_samples(samples_dir, ts: str) -> None:
    """Every vendor sample (sequences of undefined length, private tags, character sets), re-encoded in both
    little-endian syntaxes, parses to exactly the elements, VRs and values pydicom's reader gives."""
    from pydicom import dcmread

    checked = 0
    for path in sorted(samples_dir.glob("*.dcm")):
        ds = dcmread(path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            continue
        raw = _encode(ds, ts)
        _same(parse_header(raw, ts).dataset, _pydicom_reference(raw, ts))
        checked += 1
    assert checked >= 5


def test_fast_reader_agrees_on_generated_sequences_and_charsets() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = make_image(StudyDescription="CT ABDOMEN", SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jörg")
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113691", "DCM", "Irradiation Event"
    ds.ProcedureCodeSequence = Sequence([item, item])
    ds.ReferencedImageSequence = Sequence([])
    for ts in (ELE, ImplicitVRLittleEndian, ExplicitVRBigEndian):
        raw = _encode(ds, ts)
        fast, ref = parse_header(raw, ts).dataset, _pydicom_reference(raw, ts)
        _same(fast, ref)
        assert str(fast.PatientName) == "Müller^Jörg"
