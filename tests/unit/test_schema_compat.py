"""Every schema version is readable by the latest reader of its name, and the codec round-trips."""

import io
import random
from datetime import UTC, datetime

import pytest
from fastavro import schemaless_reader, schemaless_writer

from schemas import codec
from schemas.events import AccumulatedDose, DoseReport, Exposure, InstanceEvent, IrradiationEvent
from schemas.registry import all_versions, latest


def _example(schema: dict, rng: random.Random) -> object:
    """A random datum valid for a parsed schema (for writer-side records of old versions)."""
    t = schema
    if isinstance(t, list):
        return _example(t[-1], rng)
    if isinstance(t, str):
        return {
            "string": "x",
            "int": rng.randint(0, 100),
            "long": rng.randint(0, 10**6),
            "double": rng.random(),
            "boolean": True,
            "null": None,
        }[t]
    kind = t["type"]
    if t.get("logicalType") == "timestamp-micros":
        return datetime(2024, 1, 1, tzinfo=UTC)
    if kind == "record":
        return {f["name"]: _example(f["type"], rng) for f in t["fields"]}
    if kind == "array":
        return [_example(t["items"], rng)]
    return _example(kind, rng)


@pytest.mark.parametrize("version", all_versions(), ids=lambda v: f"{v.name}.v{v.version}")
def test_every_version_is_readable_by_the_latest_reader(version) -> None:
    rng = random.Random(7)
    print("seed 7")
    reader = latest(version.name)
    datum = _example(version.parsed, rng)
    buf = io.BytesIO()
    schemaless_writer(buf, version.parsed, datum)
    buf.seek(0)
    got = schemaless_reader(buf, version.parsed, reader.parsed)
    assert isinstance(got, dict) and set(got) >= {f["name"] for f in reader.parsed["fields"]} - set()


def test_fingerprints_are_unique() -> None:
    fps = [v.fingerprint for v in all_versions()]
    assert len(fps) == len(set(fps))


def test_round_trip_with_dose_report() -> None:
    event = InstanceEvent(
        event_id="e",
        site_id="s",
        edge_id="g",
        received_at=datetime(2024, 3, 1, 2, 15, 0, 123456, tzinfo=UTC),
        calling_ae="CT1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        instance_pseudonym="2.25.1",
        study_pseudonym="2.25.2",
        image_type=("ORIGINAL", "PRIMARY"),
        exposure=Exposure(ctdivol_mgy=12.5, ctdi_phantom="BODY32"),
        dose_report=DoseReport(
            kind="CT",
            totals=AccumulatedDose(total_events=1, ct_dlp_total_mgy_cm=400.0),
            events=(IrradiationEvent(event_pseudonym="2.25.3", ctdivol_mgy=12.5, dlp_mgy_cm=400.0),),
        ),
    )
    data = codec.encode(event)
    assert data[:2] == b"\xc3\x01" and data[2:10] == latest("InstanceEvent").fingerprint
    assert codec.decode(InstanceEvent, data) == event


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(InstanceEvent, b"not avro")


def _v1_message(name: str, record: dict) -> bytes:
    """A message as a v1 producer (an edge or worker not yet upgraded) writes it."""
    v1 = next(v for v in all_versions() if v.name == name and v.version == 1)
    buf = io.BytesIO()
    buf.write(codec.MAGIC + v1.fingerprint)
    schemaless_writer(buf, v1.parsed, record)
    return buf.getvalue()


def test_a_v1_instance_with_a_dose_report_reads_with_the_v2_fields_empty() -> None:
    from dataclasses import replace

    event = InstanceEvent(
        event_id="e", site_id="s", edge_id="g", received_at=datetime(2024, 3, 1, tzinfo=UTC), calling_ae="RF1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67", transfer_syntax_uid="1.2.840.10008.1.2.1",
        instance_pseudonym="2.25.1", study_pseudonym="2.25.2",
        dose_report=DoseReport(kind="PROJECTION", totals=AccumulatedDose(dose_rp_total_mgy=2.52),
                               events=(IrradiationEvent(event_pseudonym="2.25.3", dose_rp_mgy=1.25),)),
    )
    record = codec.to_record(event)
    for f in ("fluoro_dose_rp_total_mgy", "acquisition_dose_rp_total_mgy"):
        del record["dose_report"]["totals"][f]
    del record["dose_report"]["acquisition_device_type"]
    del record["dose_report"]["events"][0]["exposure_mas"]
    got = codec.decode(InstanceEvent, _v1_message("InstanceEvent", record))
    assert got == event and got.dose_report is not None and got.dose_report.acquisition_device_type is None
    v2 = replace(event, dose_report=replace(event.dose_report, acquisition_device_type="FLUORO_GUIDED"))
    assert codec.decode(InstanceEvent, codec.encode(v2)) == v2
    assert codec.encode(v2)[2:10] == latest("InstanceEvent").fingerprint


def test_a_v1_exam_dose_reads_without_the_fluoro_acquisition_split() -> None:
    from schemas.events import ExamDose

    dose = ExamDose(exam_key="x", site_id="s", version=1, updated_at=datetime(2024, 3, 1, tzinfo=UTC),
                    source="REPORT", dap_total_gy_cm2=0.16)
    record = codec.to_record(dose)
    for f in ("fluoro_dap_gy_cm2", "acquisition_dap_gy_cm2", "fluoro_dose_rp_mgy", "acquisition_dose_rp_mgy"):
        del record[f]
    assert codec.decode(ExamDose, _v1_message("ExamDose", record)) == dose
