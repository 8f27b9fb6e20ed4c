"""Big objects cannot take the edge's memory (issue 9 item 7): C-STORE data above ``[edge] spill_mb`` goes to disk
as it arrives and the header is parsed from there; above ``[edge] max_object_mb`` the C-STORE is answered 0xC003
with a comment. The memory check runs the edge as its own process and reads its RSS from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage

from edge_ingest.extract import DEFLATED_LE, ExtractError, parse_header
from edge_ingest.scp import OBJECT_TOO_LARGE, SpillBuffer
from schemas import codec
from schemas.events import InstanceEvent
from tests.helpers import encode_dataset, make_image, read_topic, save

MIB = 1024 * 1024


def big_image(megabytes: int):
    side = int((megabytes * MIB / 2) ** 0.5)
    return make_image(rows=side, cols=side, StationName="BIGCT1")


def store(port: int, ds_or_path, max_pdu: int = 1048576) -> tuple[int, str]:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])  # a file streams only in its own syntax
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 300
    assoc = ae.associate("127.0.0.1", port, ae_title="RADPULSE")
    assert assoc.is_established
    try:
        rsp = assoc.send_c_store(ds_or_path)
        return int(rsp.Status), str(getattr(rsp, "ErrorComment", ""))
    finally:
        assoc.release()


def incoming_files(node) -> list[Path]:
    folder = Path(node.settings.edge.data_dir) / "incoming"
    return list(folder.iterdir()) if folder.exists() else []


def test_object_above_spill_threshold_is_ingested_from_disk(start_edge, kafka_bootstrap: str) -> None:
    node = start_edge(edge={"spill_mb": 1})
    ds = big_image(12)
    assert store(node.port, ds) == (0x0000, "")
    assert store(node.port, make_image()) == (0x0000, "")  # a small one on the in-memory path
    events = [codec.decode(InstanceEvent, v)
              for v in read_topic(kafka_bootstrap, node.settings.topic("instances"), expect=2)]
    assert len(events) == 2
    assert {e.sop_class_uid for e in events} == {CTImageStorage}
    assert incoming_files(node) == []  # the spilled copy is gone (unnamed temporary file, closed)


def test_object_above_max_object_mb_gets_a_clear_failure(start_edge) -> None:
    node = start_edge(edge={"spill_mb": 1, "max_object_mb": 5})
    status, comment = store(node.port, big_image(8))
    assert status == OBJECT_TOO_LARGE
    assert "5 MB" in comment
    assert node.counters.rejected_reasons["object_too_large"] == 1
    assert store(node.port, make_image()) == (0x0000, "")  # the association and the edge carry on
    assert incoming_files(node) == []


@pytest.mark.parametrize("deflated", [False, True], ids=["explicit_le", "deflated"])
def test_header_parsed_from_a_spilled_file_matches_the_bytes(deflated: bool, monkeypatch, tmp_path: Path) -> None:
    # limits are per process (the last edge started sets them): set them for this test
    monkeypatch.setattr(SpillBuffer, "spill_bytes", 4 * MIB)
    monkeypatch.setattr(SpillBuffer, "max_bytes", 64 * MIB)
    monkeypatch.setattr(SpillBuffer, "spill_dir", str(tmp_path))
    raw = encode_dataset(big_image(6))
    syntax = ExplicitVRLittleEndian
    if deflated:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw, syntax = deflater.compress(raw) + deflater.flush(), DEFLATED_LE
    buffer = SpillBuffer()
    for i in range(0, len(raw), 65536):  # as pynetdicom writes P-DATA fragments
        buffer.write(raw[i:i + 65536])
    assert buffer.file is not None and len(buffer.getbuffer()) == 0  # on disk, not in memory
    buffer.file.seek(0)
    from_file, from_bytes = parse_header(buffer.file, syntax), parse_header(raw, syntax)
    assert from_file.dataset.StationName == from_bytes.dataset.StationName == "BIGCT1"
    assert from_file.dataset.SOPInstanceUID == from_bytes.dataset.SOPInstanceUID
    truncated = SpillBuffer()
    truncated.write(encode_dataset(big_image(6))[:-1000])
    assert truncated.file is not None
    truncated.file.seek(0)
    with pytest.raises(ExtractError, match="truncated pixel data"):
        parse_header(truncated.file, ExplicitVRLittleEndian)
    buffer.release()
    truncated.release()


# ----------------------------------------------------------------------------------------- memory, measured


def _rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


@pytest.fixture
def edge_process(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> Iterator[tuple[subprocess.Popen, int]]:
    from cli.broker import free_port

    port = free_port()
    env = {**os.environ, "RADPULSE_EDGE__PORT": str(port), "RADPULSE_EDGE__HOST": "127.0.0.1",
           "RADPULSE_EDGE__DATA_DIR": str(tmp_path / "edge"), "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix, "RADPULSE_HL7__ENABLED": "false",
           "RADPULSE_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    with open(tmp_path / "edge.log", "wb") as log:
        code = "import sys; from cli.main import main; sys.exit(main(['edge']))"
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "edge.log").read_text()[-2000:]
                time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_four_concurrent_200_mb_objects_keep_edge_memory_bounded(edge_process, tmp_path: Path) -> None:
    proc, port = edge_process
    path = save(big_image(200), tmp_path / "big")
    assert store(port, make_image()) == (0x0000, "")  # warm: every import and the Kafka producer are loaded
    time.sleep(1)
    before = _rss_kb(proc.pid)
    peak = {"rss": before["VmRSS"]}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak["rss"] = max(peak["rss"], _rss_kb(proc.pid)["VmRSS"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results: list[tuple[int, str]] = []
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # the senders stream from the file too (their memory is not measured)
    try:
        start = time.monotonic()
        senders = [threading.Thread(target=lambda: results.append(store(port, path))) for _ in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(600)
        took = time.monotonic() - start
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        done.set()
    after = _rss_kb(proc.pid)
    grew_mb = (peak["rss"] - before["VmRSS"]) / 1024
    print(f"4 × 200 MB concurrently in {took:.1f} s: edge RSS {before['VmRSS'] / 1024:.0f} MB → peak "
          f"{peak['rss'] / 1024:.0f} MB (+{grew_mb:.0f} MB), high-water mark {before['VmHWM'] / 1024:.0f} → "
          f"{after['VmHWM'] / 1024:.0f} MB")
    assert results == [(0x0000, "")] * 4
    assert grew_mb < 150
    assert (after["VmHWM"] - before["VmHWM"]) / 1024 < 150

