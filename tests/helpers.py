"""Test helpers: objects built at test time, files for storescu, and a Kafka reader that decodes events."""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from schemas import codec

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def make_image(
    sop_class: str = CT_IMAGE,
    *,
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    rows: int = 16,
    cols: int = 16,
    **attrs: object,
) -> Dataset:
    """A small but valid image object (16-bit pixels) with file meta, ready to save or send."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PID0001"
    ds.StudyDate = "20240301"
    ds.StudyTime = "101500"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = np.arange(rows * cols, dtype=np.uint16).tobytes()
    return ds


def save(ds: Dataset, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{ds.SOPInstanceUID}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> tuple[bytes, str]:
    """(dataset bytes as they travel in a C-STORE, transfer syntax) of a Part 10 file."""
    with open(path, "rb") as fp:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        return fp.read(), str(meta.TransferSyntaxUID)


def encode_dataset(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data, _ = dataset_bytes_from_buffer(buf.getvalue())
    return data


def dataset_bytes_from_buffer(raw: bytes) -> tuple[bytes, str]:
    fp = io.BytesIO(raw)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    return fp.read(), str(meta.TransferSyntaxUID)


def read_messages(bootstrap: str, topic: str, *, expect: int | None = None, timeout_s: float = 30.0) -> list:
    """Every message on `topic` (all partitions, from the beginning). Stops at `expect` or when idle for 3 s."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "radpulse-test-reader", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=10)
    parts = meta.topics[topic].partitions if topic in meta.topics else {}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out: list = []
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            if expect is None and out and time.monotonic() - idle_since > 3:
                break
            continue
        if msg.error():
            continue
        out.append(msg)
        idle_since = time.monotonic()
        if expect is not None and len(out) >= expect:
            break
    consumer.close()
    return out


def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, timeout_s: float = 30.0) -> list[bytes]:
    return [m.value() for m in read_messages(bootstrap, topic, expect=expect, timeout_s=timeout_s)]


def decode_all(values: Iterable[bytes], cls: type) -> list:
    return [codec.decode(cls, v) for v in values]


def canary_object(tag: str = "CANARY") -> tuple[Dataset, list[str]]:
    """A CT image whose every identifying attribute holds a unique canary string; returns (dataset, canaries)."""
    from pydicom.sequence import Sequence

    canaries: list[str] = []

    def c(label: str) -> str:
        value = f"{tag}{label}{len(canaries):02d}X"
        canaries.append(value)
        return value

    family, given = c("FAM"), c("GIV")
    ds = make_image(
        CT_IMAGE,
        modality="CT",
        PatientName=f"{family}^{given}",
        PatientID=c("PID"),
        IssuerOfPatientID=c("ISS"),
        PatientBirthDate="19610413",
        PatientAddress=c("ADDR"),
        PatientTelephoneNumbers=c("TEL"),
        OtherPatientIDs=c("OID"),
        OtherPatientNames=c("ONAME"),
        PatientMotherBirthName=c("MOTHER"),
        PatientComments=c("PCOMM"),
        AdditionalPatientHistory=c("HIST"),
        ReferringPhysicianName=c("REFPHYS"),
        PerformingPhysicianName=c("PERFPHYS"),
        OperatorsName=c("OPER"),
        NameOfPhysiciansReadingStudy=c("READER"),
        PhysiciansOfRecord=c("RECORD"),
        RequestingPhysician=c("REQPHYS"),
        InstitutionName=c("INST"),
        InstitutionAddress=c("INSTADDR"),
        InstitutionalDepartmentName=c("DEPT"),
        AccessionNumber=c("ACC"),
        StudyID=c("SID"),
        AdmissionID=c("ADM"),
        ImageComments=c("IMGCOMM"),
        RequestedProcedureID=c("RPID"),
        PerformedProcedureStepID=c("PPSID"),
        PerformedLocation=c("LOC"),
        StudyDescription=f"CT CHEST {family} {given}",
        SeriesDescription=f"AXIAL 5mm {given}",
        ProtocolName=f"Chest routine for {family}^{given}",
        StationName="CT01",
        Manufacturer="ACME",
        ManufacturerModelName="Scanner 1",
        AcquisitionDate="20240301",
        AcquisitionTime="101600",
        PatientSex="F",
        PatientWeight="72",
    )
    other = Dataset()
    other.PatientID = c("OTHERSEQ")
    ds.OtherPatientIDsSequence = Sequence([other])
    req = Dataset()
    req.RequestedProcedureID = c("REQSEQ")
    req.AccessionNumber = ds.AccessionNumber
    req.RequestedProcedureDescription = f"CT chest {family}"
    ds.RequestAttributesSequence = Sequence([req])
    ds.add_new(0x00091010, "LO", c("PRIVATE"))
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    return ds, [*canaries, "19610413", ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID]
