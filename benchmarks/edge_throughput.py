"""Edge throughput: the same DCMTK storescu sends the same instance sets to (a) a bare pynetdicom SCP that only
answers success and (b) `radpulse edge` producing to the embedded broker. Runs alternate a/b so machine noise
hits both alike; prints instances/s (median of the runs) and the ratio b/a. Target: b/a ≥ 0.8 on both sets.

    python -m benchmarks.edge_throughput [--runs 3] [--ct 300] [--small 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

STORESCU = "/usr/bin/storescu"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_series(folder: Path, count: int, rows: int, cols: int) -> None:
    """`count` CT instances of rows×cols 16-bit pixels, realistic header, one study/series."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    pixels = (np.random.default_rng(1).integers(0, 4095, rows * cols, dtype=np.uint16)).tobytes()
    for i in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = CT_IMAGE
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "SIEMENS", "SOMATOM Force"
        ds.StationName, ds.DeviceSerialNumber = "CT01", "12345"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "BENCH^PATIENT", "B0001", "19700101", "F"
        ds.AccessionNumber, ds.StudyID = "ACC0001", "1"
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240301"
        ds.StudyTime, ds.SeriesTime = "090000", "090100"
        ds.AcquisitionTime = ds.ContentTime = f"0901{i % 60:02d}"
        ds.StudyDescription, ds.SeriesDescription, ds.ProtocolName = "CT ABDOMEN", "Abd 5mm", "Abdomen routine"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesNumber, ds.InstanceNumber = 2, i + 1
        ds.KVP, ds.XRayTubeCurrent, ds.ExposureTime, ds.CTDIvol = "120", "250", "500", 10.5
        ds.SliceThickness, ds.PixelSpacing, ds.ImagePositionPatient = "5", ["0.7", "0.7"], ["0", "0", str(i * 5)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.PixelData = pixels
        ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def send(folder: Path, port: int) -> float:
    """instances/s for one storescu run over one association."""
    files = sorted(folder.glob("*.dcm"))
    start = time.perf_counter()
    result = subprocess.run(
        [STORESCU, "-aec", "RADPULSE", "-aet", "BENCH", "+sd", "-xs", "127.0.0.1", str(port), str(folder)],
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"storescu failed: {result.stderr[-500:]}")
    return len(files) / elapsed


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ct", type=int, default=300)
    parser.add_argument("--small", type=int, default=2000)
    args = parser.parse_args(argv)
    if not Path(STORESCU).exists():
        sys.exit(f"{STORESCU} not found: apt-get install dcmtk")
    work = Path(tempfile.mkdtemp(prefix="radpulse-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        with console.status("writing instance sets"):
            make_series(work / "ct512", args.ct, 512, 512)
            make_series(work / "small32k", args.small, 128, 128)
        from infra.broker import EmbeddedBroker

        broker = EmbeddedBroker(port=free_port(), log_path=work / "tansu.log").start()
        bare_port, edge_port = free_port(), free_port()
        py = sys.executable
        procs.append(subprocess.Popen([py, "-m", "benchmarks.bare_scp", "--port", str(bare_port)],
                                      stdout=subprocess.DEVNULL))
        env = dict(os.environ, RADPULSE_EDGE__DATA_DIR=str(work / "edge"), RADPULSE_EDGE__HOST="127.0.0.1",
                   RADPULSE_KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap, RADPULSE_KAFKA__TOPIC_PREFIX="bench")
        edge_cmd = [py, "-m", "infra.cli", "--log-level", "WARNING", "edge", "--port", str(edge_port)]
        procs.append(subprocess.Popen(edge_cmd,
                                      env=env, stderr=open(work / "edge.log", "w")))
        wait_port(bare_port)
        wait_port(edge_port)
        results: dict[str, dict[str, list[float]]] = {}
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("storescu runs", total=args.runs * 4)
            for name in ("ct512", "small32k"):
                send(work / name, edge_port)  # warm-up: topic metadata, imports, page cache
                send(work / name, bare_port)
                for _ in range(args.runs):
                    for target, port in (("bare", bare_port), ("edge", edge_port)):
                        results.setdefault(name, {}).setdefault(target, []).append(send(work / name, port))
                        progress.advance(task)
        summary: dict[str, dict[str, float]] = {}
        table = Table(title=f"edge throughput (storescu → SCP), median of {args.runs} runs, {os.cpu_count()} cores")
        for col in ("set", "bare pynetdicom SCP inst/s", "radpulse edge inst/s", "ratio edge/bare", "target"):
            table.add_column(col)
        for name, r in results.items():
            bare, edge = statistics.median(r["bare"]), statistics.median(r["edge"])
            summary[name] = {"bare": bare, "edge": edge, "ratio": edge / bare}
            table.add_row(name, f"{bare:.0f}", f"{edge:.0f}", f"{edge / bare:.2f}", "≥ 0.80")
        console.print(table)
        broker.stop()
        return summary
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
