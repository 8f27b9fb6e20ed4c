"""The simulator's workflow traffic: HL7 v2 orders and arrivals over MLLP, and MPPS N-CREATE/N-SET, for the exams
``plan.plan_days`` planned (``PlannedExam.order_utc`` / ``scheduled_start_utc`` / ``arrival_utc`` /
``mpps_status``).

What the edge reads (``edge_ingest.hl7``, ``edge_ingest.mpps``) and therefore what is written here:
- ORM^O01 NW: ORC-9 order time, TQ1-7 (and ORC-7.4) scheduled start, accession in OBR-18 (IHE SWF placer field 1)
  and OBR-3/ORC-3 (filler order number), PID-3 patient id.
- ADT^A10: EVN-6 arrival time, PID-3; ADT carries no order, so the accession rides in an OBR (OBR-3, OBR-18), the
  only way the edge can link an arrival to one exam rather than only to a patient.
- HL7 times are the site's local wall-clock without an offset (how most RIS send them); the edge reads them in its
  configured zone, so the plan's ``tz`` must equal the edge's site timezone.
- MPPS: N-CREATE (IN PROGRESS, start = first acquisition, ScheduledStepAttributesSequence[0] naming the study and
  accession), then N-SET with the end (last acquisition) and COMPLETED or DISCONTINUED. Calling AE = device AE title.
- Message control ids (MSH-10) are deterministic per seed and exam, so a resend is the same event at the edge.
"""

from __future__ import annotations

import socket
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pydicom.dataset import Dataset

if TYPE_CHECKING:
    from synthetic_hospital.exams import Plan, PlannedExam
    from synthetic_hospital.hospital import Device

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
SENDING_APP = "SIMRIS"
SENDING_FACILITY = "SIMHOSP"
HL7_VERSION = "2.5.1"
START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"


# ------------------------------------------------------------------------------------------------------ HL7 text


def hl7_ts(t: datetime, tz: str) -> str:
    """An aware datetime → HL7 DTM in the site's local wall-clock, to the second, without an offset."""
    return t.astimezone(ZoneInfo(tz)).strftime("%Y%m%d%H%M%S")


def _esc(text: str) -> str:
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        out = out.replace(char, f"\\{code}\\")
    return out


def _segment(name: str, fields: dict[int, str]) -> str:
    """``fields`` maps field number → already-encoded value (components joined with ``^``)."""
    n = max(fields) if fields else 0
    return "|".join([name, *(fields.get(i, "") for i in range(1, n + 1))])


def _msh(exam: PlannedExam, message_type: str, control_id: str, sent_at: datetime) -> str:
    return "|".join(["MSH", "^~\\&", SENDING_APP, SENDING_FACILITY, "RADPULSE", "RADPULSE",
                     hl7_ts(sent_at, exam.tz), "", message_type, control_id, "P", HL7_VERSION])


def _pid(exam: PlannedExam) -> str:
    p = exam.patient
    return _segment("PID", {
        1: "1", 3: f"{_esc(p.patient_id)}^^^SIMHOSP^MR", 5: _esc(p.name),
        7: p.birth_date.strftime("%Y%m%d") if p.birth_date else "", 8: p.sex,
    })


def _service(exam: PlannedExam) -> str:
    et = exam.exam_type
    return f"{_esc(et.procedure_code)}^{_esc(et.label)}^99SIMRIS"


def control_id(exam: PlannedExam, kind: str, seed: int) -> str:
    """Deterministic MSH-10 (<= 20 characters): the same message resent is the same event."""
    return f"S{seed % 10000}{exam.exam_id.replace('-', '')}{kind}"[:20]


def orm_o01(exam: PlannedExam, seed: int = 0, *, sent_at: datetime | None = None) -> str:
    """ORM^O01 new order (NW, status SC): ORC-9 order time, TQ1-7 + ORC-7.4 booked start, OBR-18/OBR-3 accession."""
    if exam.order_utc is None or exam.scheduled_start_utc is None or not exam.accession:
        raise ValueError(f"exam {exam.exam_id} has no order (QA exams have none)")
    order, booked = hl7_ts(exam.order_utc, exam.tz), hl7_ts(exam.scheduled_start_utc, exam.tz)
    acc = _esc(exam.accession)
    placer = f"P{exam.exam_id.replace('-', '')}"
    segments = [
        _msh(exam, "ORM^O01^ORM_O01", control_id(exam, "O", seed), sent_at or exam.order_utc),
        _pid(exam),
        _segment("PV1", {1: "1", 2: "O"}),
        _segment("ORC", {1: "NW", 2: placer, 3: acc, 5: "SC", 7: f"^^^{booked}", 9: order}),
        _segment("TQ1", {1: "1", 7: booked}),
        _segment("OBR", {1: "1", 2: placer, 3: acc, 4: _service(exam), 6: order, 18: acc, 19: acc,
                         24: exam.device.modality}),
    ]
    return "\r".join(segments) + "\r"


def adt_a10(exam: PlannedExam, seed: int = 0, *, sent_at: datetime | None = None) -> str:
    """ADT^A10 patient arriving: EVN-6 = arrival (local time), PID-3, and the accession in OBR-3/OBR-18."""
    if exam.arrival_utc is None or not exam.accession:
        raise ValueError(f"exam {exam.exam_id} has no arrival (QA exams have none)")
    arrival = hl7_ts(exam.arrival_utc, exam.tz)
    acc = _esc(exam.accession)
    segments = [
        _msh(exam, "ADT^A10^ADT_A09", control_id(exam, "A", seed), sent_at or exam.arrival_utc),
        _segment("EVN", {1: "A10", 2: arrival, 6: arrival}),
        _pid(exam),
        _segment("PV1", {1: "1", 2: "O", 3: f"{_esc(exam.device.department)}^^^SIMHOSP"}),
        _segment("OBR", {1: "1", 3: acc, 4: _service(exam), 18: acc, 24: exam.device.modality}),
    ]
    return "\r".join(segments) + "\r"


def hl7_messages(exam: PlannedExam, seed: int = 0) -> list[str]:
    """The exam's HL7 traffic in send order: ORM (order), then ADT^A10 (arrival); [] for QA exams."""
    if exam.is_qa or exam.order_utc is None:
        return []
    return [orm_o01(exam, seed), adt_a10(exam, seed)]


# ---------------------------------------------------------------------------------------------------------- MPPS


def _da_tm(t: datetime, tz: str) -> tuple[str, str]:
    local = t.astimezone(ZoneInfo(tz))
    return local.strftime("%Y%m%d"), local.strftime("%H%M%S")


def _tz_offset(exam: PlannedExam, t: datetime) -> str:
    return t.astimezone(ZoneInfo(exam.tz)).strftime("%z")


def mpps_n_create(exam: PlannedExam) -> Dataset:
    """N-CREATE attribute list: IN PROGRESS, start = first acquisition, study + accession in the scheduled step."""
    if not exam.has_mpps:
        raise ValueError(f"exam {exam.exam_id}: device {exam.device.key} sends no MPPS")
    device, p = exam.device, exam.patient
    start_da, start_tm = _da_tm(exam.mpps_start_utc, exam.tz)
    step = Dataset()
    step.StudyInstanceUID = exam.study_uid
    step.AccessionNumber = exam.accession
    step.RequestedProcedureID = exam.accession
    step.ScheduledProcedureStepID = exam.accession
    step.RequestedProcedureDescription = exam.exam_type.label
    step.ReferencedStudySequence = []
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    if device.sends_tz_offset:
        ds.TimezoneOffsetFromUTC = _tz_offset(exam, exam.mpps_start_utc)
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d") if p.birth_date else ""
    ds.PatientSex = p.sex
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = exam.pps_id
    ds.PerformedStationAETitle = device.ae_title
    ds.PerformedStationName = device.station_name
    ds.PerformedLocation = device.department
    ds.PerformedProcedureStepStartDate = start_da
    ds.PerformedProcedureStepStartTime = start_tm
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = exam.study_description
    ds.PerformedProcedureTypeDescription = exam.exam_type.label
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = device.modality
    ds.StudyID = str(int(exam.pps_id[3:]) + 1)
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def mpps_n_set(exam: PlannedExam) -> Dataset:
    """N-SET modification list: end = last acquisition, the final status, and the series performed."""
    if not exam.has_mpps:
        raise ValueError(f"exam {exam.exam_id}: device {exam.device.key} sends no MPPS")
    end_da, end_tm = _da_tm(exam.mpps_end_utc, exam.tz)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    if exam.device.sends_tz_offset:
        ds.TimezoneOffsetFromUTC = _tz_offset(exam, exam.mpps_end_utc)
    ds.PerformedProcedureStepEndDate = end_da
    ds.PerformedProcedureStepEndTime = end_tm
    ds.PerformedProcedureStepStatus = exam.mpps_status
    if exam.discontinued:
        reason = Dataset()
        reason.CodeValue, reason.CodingSchemeDesignator = "110514", "DCM"
        reason.CodeMeaning = "Incorrect worklist entry selected"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [reason]
    items = []
    for s in exam.series:
        item = Dataset()
        item.SeriesInstanceUID = s.uid
        item.SeriesDescription = s.description
        item.ProtocolName = exam.exam_type.label
        item.RetrieveAETitle = ""
        item.PerformingPhysicianName = ""
        item.OperatorsName = exam.operator
        item.ReferencedImageSequence = []
        item.ReferencedNonImageCompositeSOPInstanceSequence = []
        items.append(item)
    ds.PerformedSeriesSequence = items
    return ds


# ---------------------------------------------------------------------------------------------------------- send


@dataclass
class WorkflowStats:
    """Outcome of ``send_workflow``."""

    hl7_sent: int = 0
    hl7_accepted: int = 0  # MSA-1 = AA
    hl7_failed: int = 0  # AE/AR or no answer
    mpps_sent: int = 0  # N-CREATE + N-SET
    mpps_succeeded: int = 0  # status 0x0000
    mpps_failed: int = 0
    rejected_associations: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # first few, for the report

    @property
    def ok(self) -> bool:
        return (self.hl7_sent == self.hl7_accepted and self.mpps_sent == self.mpps_succeeded
                and not (self.hl7_failed or self.mpps_failed or self.rejected_associations))

    def fail(self, text: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(text)


class MllpClient:
    """One MLLP connection; ``send`` frames a message and returns the ACK's text."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def send(self, message: str) -> str:
        self.sock.sendall(START_BLOCK + message.encode("utf-8") + END_BLOCK)
        while END_BLOCK not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("MLLP peer closed the connection before answering")
            self._buf += chunk
        frame, self._buf = self._buf.split(END_BLOCK, 1)
        return frame[frame.find(START_BLOCK) + 1:].decode("utf-8", errors="replace")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ack_code(ack_text: str) -> str | None:
    """MSA-1 of an ACK ("AA", "AE", "AR"), or None if it has no MSA."""
    for line in ack_text.replace("\n", "\r").split("\r"):
        if line.startswith("MSA") and len(line) > 4:
            return line.split(line[3])[1] or None
    return None


def _patient_exams(plan: Plan, exams: Iterable[PlannedExam] | None) -> list[PlannedExam]:
    chosen = plan.exams if exams is None else tuple(exams)
    return sorted((e for e in chosen if not e.is_qa), key=lambda e: (e.start_utc, e.device.key))


def send_hl7(plan: Plan, host: str, hl7_port: int, *, stats: WorkflowStats | None = None,
             exams: Iterable[PlannedExam] | None = None, timeout_s: float = 30.0) -> WorkflowStats:
    """Every patient exam's ORM then A10, in exam time order, over one MLLP connection; each ACK must be AA."""
    stats = stats or WorkflowStats()
    with MllpClient(host, hl7_port, timeout_s) as client:
        for exam in _patient_exams(plan, exams):
            for message in hl7_messages(exam, plan.seed):
                stats.hl7_sent += 1
                try:
                    code = ack_code(client.send(message))
                except OSError as exc:
                    stats.hl7_failed += 1
                    stats.fail(f"{exam.exam_id}: MLLP {type(exc).__name__}: {exc}")
                    return stats
                if code == "AA":
                    stats.hl7_accepted += 1
                else:
                    stats.hl7_failed += 1
                    stats.fail(f"{exam.exam_id}: HL7 ACK {code}")
    return stats


def send_mpps(plan: Plan, host: str, port: int, called_ae: str = "RADPULSE", *, stats: WorkflowStats | None = None,
              exams: Iterable[PlannedExam] | None = None, timeout_s: float = 30.0) -> WorkflowStats:
    """N-CREATE then N-SET of every MPPS exam, one association per device (calling AE = the device's AE title)."""
    from pynetdicom import AE

    stats = stats or WorkflowStats()
    by_device: dict[str, list[PlannedExam]] = {}
    devices: dict[str, Device] = {}
    for exam in _patient_exams(plan, exams):
        if exam.has_mpps:
            by_device.setdefault(exam.device.key, []).append(exam)
            devices[exam.device.key] = exam.device
    for key, mine in by_device.items():
        device = devices[key]
        ae = AE(ae_title=device.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
        ae.add_requested_context(MPPS_SOP_CLASS)
        assoc = ae.associate(host, port, ae_title=called_ae)
        if not assoc.is_established:
            stats.rejected_associations += 1
            stats.fail(f"{key}: MPPS association rejected")
            continue
        try:
            for exam in mine:
                uid = exam.mpps_uid
                assert uid is not None
                for message in ("N-CREATE", "N-SET"):
                    stats.mpps_sent += 1
                    if message == "N-CREATE":
                        status, _ = assoc.send_n_create(mpps_n_create(exam), MPPS_SOP_CLASS, uid)
                    else:
                        status, _ = assoc.send_n_set(mpps_n_set(exam), MPPS_SOP_CLASS, uid)
                    code = int(status.Status) if status and "Status" in status else None
                    if code == 0x0000:
                        stats.mpps_succeeded += 1
                    else:
                        stats.mpps_failed += 1
                        stats.fail(f"{exam.exam_id}: MPPS {message} status "
                                   f"{'none' if code is None else f'0x{code:04X}'}")
        finally:
            if assoc.is_established:
                assoc.release()
    return stats


def send_workflow(
    plan: Plan,
    host: str,
    dicom_port: int,
    hl7_port: int,
    *,
    progress: bool = False,
    called_ae: str = "RADPULSE",
    exams: Iterable[PlannedExam] | None = None,
    timeout_s: float = 30.0,
) -> WorkflowStats:
    """All HL7 (orders, arrivals) over one MLLP connection, then all MPPS (one association per device).

    A separate pass from the images (``sender.send``): the pipeline links events to exams whenever both
    have arrived, so the order between passes does not matter; within HL7 each exam's ORM precedes its A10, and each
    MPPS N-CREATE precedes its N-SET."""
    started = _time.perf_counter()
    chosen = None if exams is None else list(exams)
    stats = send_hl7(plan, host, hl7_port, exams=chosen, timeout_s=timeout_s)
    if progress:
        print(f"HL7: {stats.hl7_accepted}/{stats.hl7_sent} accepted", flush=True)
    send_mpps(plan, host, dicom_port, called_ae, stats=stats, exams=chosen, timeout_s=timeout_s)
    if progress:
        print(f"MPPS: {stats.mpps_succeeded}/{stats.mpps_sent} succeeded", flush=True)
    stats.seconds = _time.perf_counter() - started
    return stats


__all__ = [
    "MPPS_SOP_CLASS", "MllpClient", "WorkflowStats", "ack_code", "adt_a10", "control_id", "hl7_messages", "hl7_ts",
    "mpps_n_create", "mpps_n_set", "orm_o01", "send_hl7", "send_mpps", "send_workflow",
]
