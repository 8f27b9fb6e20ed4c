"""The I/O edges: datasets in send order, a folder of DICOM files, and sending over real associations (C-STORE,
then HL7 over MLLP and MPPS with ``workflow.send_workflow``).

Each open pynetdicom association keeps polling threads busy: ``send`` opens one at a time unless asked to interleave.
"""

from __future__ import annotations

import socket
import time as _time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from synthetic_hospital import dicom
from synthetic_hospital.exams import PIXEL_MODES, Plan, PlannedExam
from synthetic_hospital.hospital import Device
from synthetic_hospital.rdsr import build_rdsr

# ------------------------------------------------------------------------------------------------------------
# Datasets, files and sending
# ------------------------------------------------------------------------------------------------------------


def exam_datasets(exam: PlannedExam, pixels: str = "small") -> Iterator[Dataset]:
    """Every instance of ``exam`` in send order: images series by series, then the dose SR (if any)."""
    yield from dicom.exam_images(exam, pixels)
    if exam.rdsr_sop_uid:
        yield build_rdsr(exam)


def iter_datasets(plan: Plan, *, pixels: str | None = None,
                  exams: Iterable[PlannedExam] | None = None) -> Iterator[tuple[PlannedExam, Dataset]]:
    """Yield (exam, dataset with file meta) in send order, building each dataset only when asked for."""
    mode = pixels or plan.pixels
    if mode not in PIXEL_MODES:
        raise ValueError(f"pixels={mode!r}: expected one of {PIXEL_MODES}")
    for exam in plan.exams if exams is None else exams:
        for ds in exam_datasets(exam, mode):
            yield exam, ds


def write_dicom_dir(plan: Plan, folder: str | Path, *, pixels: str | None = None) -> dict[str, Path]:
    """Write every instance as ``folder/<device>/<exam_id>/<series>_<instance>.dcm``; returns device → folder.

    Send one device with DCMTK, e.g. ``TCP_NODELAY=1 /usr/bin/storescu -aet CT1_FLASH -aec RADPULSE +sd +r HOST PORT
    folder/CT1`` (without ``TCP_NODELAY=1`` DCMTK 3.6.7 manages ~20 objects/s here instead of ~200).
    """
    from pydicom import dcmwrite

    root = Path(folder)
    out: dict[str, Path] = {}
    for exam, ds in iter_datasets(plan, pixels=pixels):
        device_dir = out.setdefault(exam.device.key, root / exam.device.key)
        exam_dir = device_dir / exam.exam_id
        exam_dir.mkdir(parents=True, exist_ok=True)
        name = f"{int(ds.SeriesNumber):04d}_{int(ds.InstanceNumber):05d}.dcm"
        dcmwrite(exam_dir / name, ds, enforce_file_format=True)
    return out


@dataclass(frozen=True)
class SendStats:
    """Outcome of ``send``: C-STORE responses counted by kind and by status."""

    attempted: int
    succeeded: int  # status 0x0000
    warnings: int  # 0xB000, 0xB006, 0xB007
    failed: int  # any other status
    no_response: int  # association dropped or DIMSE timeout
    not_sent: int  # the association could not be established
    associations: int
    rejected_associations: int
    seconds: float
    by_status: dict[str, int] = field(default_factory=dict)  # "0x0000" → count
    per_device: dict[str, dict[str, int]] = field(default_factory=dict)
    workflow: Any = None  # workflow.WorkflowStats when sent with workflow=True

    @property
    def ok(self) -> bool:
        return (self.attempted == self.succeeded and not (self.not_sent or self.no_response or self.failed)
                and (self.workflow is None or self.workflow.ok))

    @property
    def rate_per_s(self) -> float:
        return self.attempted / self.seconds if self.seconds > 0 else 0.0


def _storage_classes(device: Device) -> list[str]:
    classes = [dicom.IMAGE_SOP_CLASS[device.modality]]
    if device.sends_rdsr and device.modality != "MR":
        classes.append(dicom.RDSR_SOP_CLASS)
    return classes


def send(
    plan: Plan,
    host: str,
    port: int,
    called_ae: str = "RADPULSE",
    *,
    progress: bool = True,
    per_device_associations: bool = True,
    interleave: bool = False,
    pixels: str | None = None,
    timeout_s: float = 30.0,
    workflow: bool = False,
    hl7_port: int | None = None,
) -> SendStats:
    """C-STORE the whole plan to ``host:port`` with pynetdicom, calling AE = each device's AE title.

    Association patterns:
    - ``per_device_associations=True`` (default): one association per device; devices are sent one after another,
      each device's exams in time order.
    - ``per_device_associations=True, interleave=True``: every device's association stays open and exams go out in
      global time order, like a live department. Each open pynetdicom association keeps polling threads busy, so
      this is ~2x slower here.
    - ``per_device_associations=False``: one association per exam, exams in global time order (what many
      modalities do; also time-ordered and fast).
    A refused association marks that exam's instances ``not_sent``; an association the peer drops is reopened and
    the object retried once.

    ``workflow=True`` first sends the plan's HL7 orders and arrivals to ``host:hl7_port`` (MLLP) and its MPPS to
    ``host:port`` with ``workflow.send_workflow``; its outcome is in ``SendStats.workflow``.
    """
    workflow_stats = None
    if workflow:
        if hl7_port is None:
            raise ValueError("workflow=True needs hl7_port: the MLLP port of the edge (e.g. 2575)")
        from synthetic_hospital.workflow import send_workflow

        workflow_stats = send_workflow(plan, host, port, hl7_port, called_ae=called_ae, timeout_s=timeout_s)
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.association import Association

    counts = {"attempted": 0, "succeeded": 0, "warnings": 0, "failed": 0, "no_response": 0, "not_sent": 0,
              "associations": 0, "rejected_associations": 0}
    by_status: dict[str, int] = {}
    per_device: dict[str, dict[str, int]] = {
        d.key: {"attempted": 0, "succeeded": 0, "failed": 0, "not_sent": 0} for d in plan.devices}
    aes: dict[str, AE] = {}
    assocs: dict[str, Association] = {}

    def ae_for(device: Device) -> AE:
        if device.key not in aes:
            ae = AE(ae_title=device.ae_title)
            ae.acse_timeout = ae.dimse_timeout = timeout_s
            ae.network_timeout = None  # interleaved devices sit idle; only the peer may close an idle association
            for sop_class in _storage_classes(device):
                ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            aes[device.key] = ae
        return aes[device.key]

    def open_assoc(device: Device) -> Association | None:
        assoc = ae_for(device).associate(host, port, ae_title=called_ae,
                                         evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
        if not assoc.is_established:
            counts["rejected_associations"] += 1
            return None
        counts["associations"] += 1
        assocs[device.key] = assoc
        return assoc

    def release(device_key: str) -> None:
        assoc = assocs.pop(device_key, None)
        if assoc is not None and assoc.is_established:
            assoc.release()

    if per_device_associations and not interleave:
        order = [e for d in plan.devices for e in plan.exams if e.device.key == d.key]
    else:
        order = list(plan.exams)
    bar, task = _progress_bar(progress, plan.n_instances)
    started = _time.perf_counter()
    current: PlannedExam | None = None
    assoc: Association | None = None
    try:
        for exam, ds in iter_datasets(plan, pixels=pixels, exams=order):
            device = exam.device
            stats = per_device[device.key]
            if exam is not current:
                if current is not None and (not per_device_associations or (
                        not interleave and current.device.key != device.key)):
                    release(current.device.key)
                current = exam
                assoc = assocs.get(device.key)
                if assoc is None or not assoc.is_established:
                    assoc = open_assoc(device)  # once per exam: a refusing peer is not hammered per object
                if bar is not None:
                    bar.update(task, description=f"{device.key} {exam.exam_id}")
            if assoc is None:
                counts["not_sent"] += 1
                stats["not_sent"] += 1
            else:
                counts["attempted"] += 1
                stats["attempted"] += 1
                status = assoc.send_c_store(ds)
                if not status and not assoc.is_established:
                    assoc = open_assoc(device)  # the peer dropped us: reopen and retry this object once
                    status = assoc.send_c_store(ds) if assoc is not None else None
                _count_status(status, counts, by_status, stats)
            if bar is not None:
                bar.advance(task)
    finally:
        for key in list(assocs):
            release(key)
        if bar is not None:
            bar.stop()
    return SendStats(seconds=_time.perf_counter() - started, by_status=by_status, per_device=per_device,
                     workflow=workflow_stats, **counts)


def _no_delay(event: Any) -> None:
    """Disable Nagle: pynetdicom writes a C-STORE in several small sends, and Nagle plus the peer's delayed ACK
    cost ~40 ms per object (measured here: 16/s → 56/s per association; DCMTK wants ``TCP_NODELAY=1`` too)."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _count_status(status: Dataset | None, counts: dict[str, int], by_status: dict[str, int],
                  stats: dict[str, int]) -> None:
    if not status or "Status" not in status:
        counts["no_response"] += 1
        stats["failed"] += 1
        return
    code = int(status.Status)
    by_status[f"0x{code:04X}"] = by_status.get(f"0x{code:04X}", 0) + 1
    if code == 0x0000:
        counts["succeeded"] += 1
        stats["succeeded"] += 1
    elif code in (0xB000, 0xB006, 0xB007):
        counts["warnings"] += 1
        stats["succeeded"] += 1
    else:
        counts["failed"] += 1
        stats["failed"] += 1


def _progress_bar(enabled: bool, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task("sending", total=total)
    bar.start()
    return bar, task
