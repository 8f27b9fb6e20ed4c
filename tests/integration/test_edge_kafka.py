"""The edge over real sockets: DCMTK storescu and pynetdicom in, a real Kafka-protocol broker out."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage, Verification

from schemas import codec
from schemas.events import InstanceEvent
from tests.helpers import (
    CT_IMAGE,
    DX_IMAGE,
    MR_IMAGE,
    canary_object,
    encode_dataset,
    make_image,
    read_messages,
    save,
)

pytestmark = pytest.mark.kafka


def storescu_send(
    storescu: str, port: int, paths: list[Path], calling: str = "STORESCU"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [storescu, "-aet", calling, "-aec", "RADPULSE", "-xs", "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )


def generated_series(folder: Path) -> list[Path]:
    """A CT study (2 series × 4 images), an MR study with a coil, and a DX image."""
    paths = []
    ct_study = "1.2.826.0.1.3680043.8.498.1"
    for s in range(2):
        series = f"{ct_study}.{s + 1}"
        for i in range(4):
            ds = make_image(CT_IMAGE, study_uid=ct_study, series_uid=series, SeriesNumber=s + 1, InstanceNumber=i + 1,
                            AcquisitionDate="20240301", AcquisitionTime=f"0900{i:02d}", CTDIvol=10.5 + s,
                            StudyDescription="CT ABDOMEN PELVIS", AccessionNumber="ACC77", Manufacturer="SIEMENS",
                            StationName="CT01", ManufacturerModelName="SOMATOM Force", DeviceSerialNumber="12345")
            paths.append(save(ds, folder / "ct"))
    for i in range(3):
        ds = make_image(MR_IMAGE, modality="MR", study_uid="1.2.826.0.1.3680043.8.498.2", ReceiveCoilName="Knee_18",
                        MagneticFieldStrength="1.5", AcquisitionDate="20240301", AcquisitionTime=f"1000{i:02d}")
        paths.append(save(ds, folder / "mr"))
    paths.append(save(make_image(DX_IMAGE, modality="DX", ImageAndFluoroscopyAreaDoseProduct="1.25",
                                 ExposureIndex="400", DeviationIndex="0.5"), folder / "dx"))
    return paths


def test_storescu_samples_and_generated_series_arrive_decoded(
    start_edge, storescu: str, samples_dir: Path, tmp_path: Path, kafka_bootstrap: str
) -> None:
    node = start_edge()
    generated = generated_series(tmp_path)
    samples = sorted(samples_dir.glob("*.dcm"))
    result = storescu_send(storescu, node.port, samples + generated)
    assert result.returncode == 0, result.stderr
    messages = read_messages(kafka_bootstrap, node.settings.topic("instances"), expect=len(samples) + len(generated))
    events = [codec.decode(InstanceEvent, m.value()) for m in messages]
    assert len(events) == len(samples) + len(generated)
    assert len({e.event_id for e in events}) == len(events)
    for m, e in zip(messages, events, strict=True):
        assert m.key() == e.study_pseudonym.encode()  # one study stays in one partition
        assert e.site_id == "site-1" and e.edge_id == "edge-1" and e.calling_ae == "STORESCU"
    ct = [e for e in events if e.modality == "CT"]
    assert len(ct) == 8 and len({e.study_pseudonym for e in ct}) == 1 and len({e.series_pseudonym for e in ct}) == 2
    assert {e.exposure.ctdivol_mgy for e in ct if e.exposure} == {10.5, 11.5}
    assert all(e.accession_token and e.accession_token.startswith("rpa1.") for e in ct)
    first = min(e.acquisition_datetime_utc for e in ct)
    assert first.isoformat() == "2024-03-01T01:00:00+00:00"  # 09:00 Asia/Shanghai
    mr = [e for e in events if e.modality == "MR"]
    assert {(e.mr_receive_coil, e.mr_field_strength_t) for e in mr} == {("Knee_18", 1.5)}
    dx = next(e for e in events if e.modality == "DX" and e.exposure and e.exposure.deviation_index == 0.5)
    assert dx.exposure is not None and dx.exposure.dap_gy_cm2 == pytest.approx(0.125)
    flash = [e for e in events if e.dose_report and e.dose_report.totals.ct_dlp_total_mgy_cm == pytest.approx(724.52)]
    assert len(flash) == 1 and len(flash[0].dose_report.events) == 4
    assert node.counters.snapshot()["produced"] == len(events)


def test_echo_allow_list_and_filters(start_edge, kafka_bootstrap: str) -> None:
    node = start_edge(edge={"allowed_calling_aes": ["CT1", "MR1"]})
    ae = AE(ae_title="CT1")
    ae.add_requested_context(Verification)
    ae.add_requested_context(SecondaryCaptureImageStorage)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADPULSE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    sc = make_image("1.2.840.10008.5.1.4.1.1.7", modality="OT")
    assert assoc.send_c_store(sc).Status == 0x0000  # ignored, but success so the sender does not retry
    # a Hologic-style DBT projection: Secondary Capture, modality MG, glandular dose in the header → accepted
    dbt = make_image("1.2.840.10008.5.1.4.1.1.7", modality="MG", OrganDose="0.0123", OrganExposed="BREAST")
    assert assoc.send_c_store(dbt).Status == 0x0000
    assert assoc.send_c_store(make_image(CT_IMAGE)).Status == 0x0000
    assoc.release()
    assert node.counters.snapshot()["ignored"] == 1
    stranger = AE(ae_title="UNKNOWN")
    stranger.add_requested_context(Verification)
    rejected = stranger.associate("127.0.0.1", node.port, ae_title="RADPULSE")
    assert rejected.is_rejected
    events = read_messages(kafka_bootstrap, node.settings.topic("instances"), timeout_s=10)
    assert len(events) == 2
    [mg] = [e for m in events if (e := codec.decode(InstanceEvent, m.value())).modality == "MG"]
    assert mg.exposure is not None and mg.exposure.organ_dose_mgy == pytest.approx(1.23)  # 0.0123 dGy


def test_device_filter_ignores_workstation(start_edge, kafka_bootstrap: str) -> None:
    node = start_edge(filters={"ignore_station_names": ["^WS-"]})
    ae = AE(ae_title="PACS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADPULSE")
    assert assoc.send_c_store(make_image(CT_IMAGE, StationName="WS-3D-LAB")).Status == 0x0000
    assert assoc.send_c_store(make_image(CT_IMAGE, StationName="CT01")).Status == 0x0000
    assoc.release()
    assert node.counters.snapshot()["ignored"] == 1
    assert len(read_messages(kafka_bootstrap, node.settings.topic("instances"), timeout_s=10)) == 1


def _corrupt_payloads() -> dict[str, bytes]:
    """Dataset bytes as they would travel in a C-STORE: one good, three broken in different ways."""
    good = encode_dataset(
        make_image(CT_IMAGE, rows=64, cols=64, StudyDescription="CHEST", PatientName="BADFILE^CANARY")
    )
    wrong_length = bytearray(good)
    idx = wrong_length.find(b"\x08\x00\x30\x10LO")
    wrong_length[idx + 6 : idx + 8] = (5000).to_bytes(2, "little")
    return {
        "truncated": good[: len(good) - 3000],
        "truncated_header": good[:300],
        "wrong_length": bytes(wrong_length),
        "garbage": bytes(range(256)) * 8,
        "good": good,
    }


def send_raw(assoc, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> int:
    """A C-STORE whose data set is exactly `payload` (pynetdicom would otherwise re-encode a valid dataset)."""
    import pynetdicom.association

    carrier = Dataset()
    carrier.SOPClassUID = CT_IMAGE
    carrier.SOPInstanceUID = generate_uid()
    carrier.file_meta = FileMetaDataset()
    carrier.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    monkeypatch.setattr(pynetdicom.association, "encode", lambda *a, **k: payload)
    status = assoc.send_c_store(carrier).Status
    monkeypatch.undo()
    return int(status)


def test_bad_input_gets_failure_status_and_server_keeps_serving(
    start_edge, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    node = start_edge()
    payloads = _corrupt_payloads()
    ae = AE(ae_title="BADSENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADPULSE")
    statuses = {name: send_raw(assoc, payload, monkeypatch) for name, payload in payloads.items()}
    assert assoc.send_c_echo().Status == 0x0000  # the association survived
    assoc.release()
    broken = [n for n in payloads if n != "good"]
    for name in broken:
        assert 0xC000 <= statuses[name] <= 0xCFFF, (name, hex(statuses[name]))
    assert statuses["good"] == 0x0000
    assert node.counters.snapshot()["rejected"] == len(broken)
    assert "CANARY" not in caplog.text and "BADFILE" not in caplog.text
    assert "answered 0xC0" in caplog.text and CT_IMAGE in caplog.text  # the line names the SOP class
    # and a new association still works
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADPULSE")
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert len(read_messages(kafka_bootstrap, node.settings.topic("instances"), timeout_s=10)) == 1


def test_canaries_never_reach_kafka_or_logs(
    start_edge, storescu: str, tmp_path: Path, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = start_edge()
    ds, canaries = canary_object()
    path = save(ds, tmp_path / "canary")
    result = storescu_send(storescu, node.port, [path])
    assert result.returncode == 0, result.stderr
    # the same canaries inside an object that fails parsing must not reach the failure log line either
    broken = tmp_path / "canary" / "broken.dcm"
    raw = path.read_bytes()
    broken.write_bytes(raw[: len(raw) - 200])
    storescu_send(storescu, node.port, [broken])
    messages = read_messages(kafka_bootstrap, node.settings.topic("instances"), expect=1)
    assert len(messages) == 1
    blob = b"".join((m.key() or b"") + (m.value() or b"") + repr(m.headers()).encode() for m in messages)
    logs = caplog.text
    for canary in canaries:
        assert canary.encode() not in blob, canary
        assert canary not in logs, canary
    event = codec.decode(InstanceEvent, messages[0].value())
    assert event.study_description and "CT CHEST" in event.study_description
