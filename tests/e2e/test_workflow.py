"""Workflow end to end: simulator images (C-STORE) + HL7 orders/arrivals (MLLP) + MPPS (N-CREATE/N-SET) through the
real edge → Kafka → one Faust worker → sink → chDB; every patient exam's waits equal the simulator's truth."""

from __future__ import annotations

import dataclasses
import time
from datetime import date

import pytest

from synthetic_hospital.exams import Plan
from synthetic_hospital.hospital import default_hospital
from synthetic_hospital.plan import plan_days
from synthetic_hospital.workflow import send_workflow
from tests.e2e.conftest import SITE_TZ, Pipeline, compare_with_truth

pytestmark = pytest.mark.kafka

WAITS = ("arrival_to_start_s", "order_to_start_s", "scheduled_delay_s")


def workflow_plan(devices: tuple[str, ...] = ("CT1", "DX1", "MR2"), per_device: int = 3,
                  seed: int = 21) -> Plan:
    """A few exams per device (CT1, DX1 send MPPS, MR2 does not) plus the day's DISCONTINUED MPPS exam."""
    full = plan_days(default_hospital(), date(2024, 3, 4), 1, seed, SITE_TZ, scale=0.04)
    small = full.subset(device_keys=devices, per_device=per_device)
    stopped = [e for e in full.exams if e.discontinued]
    assert len(stopped) == 1, [e.exam_id for e in stopped]
    if stopped[0] not in small.exams:
        if stopped[0].device.key not in devices:
            # the day's pick is on another MPPS device: take an MPPS exam of ours and make it the discontinued one
            target = next(e for e in small.exams if e.has_mpps)
            stopped = [dataclasses.replace(target, mpps_status="DISCONTINUED")]
            exams = [stopped[0] if e is target else e for e in small.exams]
        else:
            exams = [*small.exams, stopped[0]]
        small = dataclasses.replace(small, exams=tuple(sorted(exams, key=lambda e: (e.start_utc, e.device.key))))
    return small


def test_workflow_plan_has_mpps_and_no_mpps_devices() -> None:
    plan = workflow_plan()
    assert sum(e.discontinued for e in plan.exams) == 1
    assert any(e.has_mpps for e in plan.exams) and any(not e.has_mpps and not e.is_qa for e in plan.exams)


def _timing_rows(pipeline: Pipeline) -> dict[str, dict[str, object]]:
    result = pipeline.db.query(
        "SELECT exam_key, device, discontinued, not_patient, timing_source, start_utc, "
        "arrival_to_start_s, arrival_kind, order_to_start_s, scheduled_delay_s FROM exam_timing FINAL")
    return {row[0]: dict(zip(result.columns, row, strict=True)) for row in result.rows}


def _mismatches(plan: Plan, pipeline: Pipeline, rows: dict[str, dict[str, object]]) -> list[str]:
    problems = []
    for t in plan.truth()["exams"]:
        if t["is_qa"]:
            continue
        row = rows.get(pipeline.exam_key(t["study_instance_uid"]))
        if row is None:
            problems.append(f"{t['exam_id']}: no exam_timing row")
            continue
        for name in WAITS:
            got, want = row[name], t[name]
            if got is None or abs(float(got) - want) > 1:  # type: ignore[arg-type]
                problems.append(f"{t['exam_id']}: {name} got {got} want {want}")
        if bool(row["discontinued"]) != t["discontinued"]:
            problems.append(f"{t['exam_id']}: discontinued got {row['discontinued']} want {t['discontinued']}")
        if row["arrival_kind"] != "arrival":
            problems.append(f"{t['exam_id']}: arrival_kind got {row['arrival_kind']} want arrival")
        if t["has_mpps"] and row["timing_source"] != "MPPS":
            problems.append(f"{t['exam_id']}: timing_source got {row['timing_source']} want MPPS")
    return problems


def test_waits_and_discontinued_mpps_match_truth(hl7_pipeline: Pipeline) -> None:
    pipeline = hl7_pipeline
    plan = workflow_plan()
    assert pipeline.node.mllp is not None
    pipeline.start_worker("a")
    wf = send_workflow(plan, "127.0.0.1", pipeline.node.port, pipeline.node.mllp.port)
    assert wf.ok, wf
    n_patient = sum(1 for e in plan.exams if not e.is_qa)
    assert wf.hl7_sent == 2 * n_patient and wf.mpps_sent == 2 * sum(e.has_mpps for e in plan.exams), wf
    pipeline.send_pynetdicom(plan)
    pipeline.wait_complete(len(plan.exams), instances=plan.n_instances)
    compare_with_truth(pipeline, plan)

    deadline = time.monotonic() + 90
    problems: list[str] = ["not polled yet"]
    while time.monotonic() < deadline:
        rows = _timing_rows(pipeline)
        problems = _mismatches(plan, pipeline, rows)
        if not problems:
            break
        time.sleep(2)
    assert not problems, "\n".join(problems)

    stopped = next(e for e in plan.exams if e.discontinued)
    day = stopped.local(0).date().isoformat()
    truth_day = next(d for dev in plan.truth()["devices"] if dev["device_key"] == stopped.device.key
                     for d in dev["days"] if d["local_date"] == day)
    assert truth_day["n_discontinued_exams"] == 1
    deadline = time.monotonic() + 30
    while True:
        kpi = pipeline.db.query(
            "SELECT exams, discontinued_exams FROM device_kpis FINAL WHERE grain = 'day' "
            f"AND device = '{stopped.device.station_name}' AND toString(local_date) = '{day}'").rows
        if (kpi and kpi[0][1] == 1) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert kpi, f"no device_kpis day row for {stopped.device.station_name} {day}"
    # a discontinued exam is counted apart from the exams (ExamInterval.counts_as_exam)
    assert kpi[0][1] == 1, kpi
    assert kpi[0][0] == truth_day["n_patient_exams"] - 1, (kpi, truth_day)
