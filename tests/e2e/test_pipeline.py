"""End to end against the simulator's ground truth: exact exams, idempotent resends, worker restart and SIGKILL."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Pipeline, compare_with_truth, small_plan


def check_dose_against_truth(pipeline: Pipeline, plan) -> None:
    """Every complete exam has its dose row; CT exams' DLP totals equal the simulator's reports; types are mapped."""
    time.sleep(3)  # exam_dose is published right after the exam; give the sink a flush
    dose = pipeline.db.query("SELECT exam_key, exam_type, source, dlp_total_mgy_cm FROM exam_dose_latest")
    by_key = {row[0]: row for row in dose.rows}
    assert len(by_key) == len(plan.exams)
    checked = 0
    for t in plan.truth()["exams"]:
        row = by_key[pipeline.exam_key(t["study_instance_uid"])]
        if t["modality"] == "CT" and t["dose"] and t["dose"].get("has_rdsr"):
            assert row[2] == "REPORT" and abs(row[3] - t["dose"]["ct_dlp_total_mgy_cm"]) < 0.01, (row, t["dose"])
            checked += 1
    assert checked > 0
    types = pipeline.db.query("SELECT countIf(exam_type != 'UNMAPPED'), count() FROM exams_latest").rows[0]
    assert types[0] >= 0.8 * types[1], types


def check_utilization_against_truth(pipeline: Pipeline, plan) -> None:
    """Per device and local day: patient exam counts equal the truth, busy minutes within a minute of it."""
    deadline = time.monotonic() + 30
    truth_days = {(d["station_name"], day["local_date"]): day for d in plan.truth()["devices"] for day in d["days"]
                  if day["n_exams"]}
    while time.monotonic() < deadline:
        rows = pipeline.db.query(
            "SELECT device, toString(local_date), exams, busy_minutes + busy_outside_hours_minutes "
            "FROM device_kpis FINAL WHERE grain = 'day'").rows
        got = {(r[0], r[1]): r for r in rows}
        if all(k in got and got[k][2] == t["n_patient_exams"] for k, t in truth_days.items()):
            break
        time.sleep(1)
    for key, t in truth_days.items():
        assert key in got, (key, sorted(got))
        detail = pipeline.db.query(
            "SELECT exam_key, toString(start_utc), toString(end_utc), not_patient, discontinued "
            f"FROM exam_timing FINAL WHERE device = '{key[0]}' ORDER BY start_utc").rows
        assert got[key][2] == t["n_patient_exams"], (key, got[key], t, detail)
        assert abs(got[key][3] - t["busy_seconds"] / 60) <= 1.0, (key, got[key], t["busy_seconds"] / 60)
    timings = pipeline.db.scalar("SELECT count() FROM exam_timing FINAL")
    assert timings >= sum(t["n_exams"] for t in truth_days.values()) - 1

pytestmark = pytest.mark.kafka


def test_storescu_day_matches_truth_and_a_resend_changes_nothing(pipeline: Pipeline, storescu: str) -> None:
    plan = small_plan()
    pipeline.start_worker("a")
    pipeline.send_storescu(plan, storescu)
    pipeline.wait_complete(len(plan.exams), instances=plan.n_instances)
    compare_with_truth(pipeline, plan)
    check_dose_against_truth(pipeline, plan)
    check_utilization_against_truth(pipeline, plan)
    before = pipeline.db.query("SELECT count(), sum(instance_count) FROM exams_latest").rows
    instances_before = pipeline.db.scalar("SELECT count() FROM instances FINAL")

    pipeline.send_pynetdicom(plan)  # the same traffic again, through another sender
    time.sleep(15)  # resends reopen nothing, so there is no completion to wait for; give the pipeline time
    assert pipeline.db.query("SELECT count(), sum(instance_count) FROM exams_latest").rows == before
    assert pipeline.db.scalar("SELECT count() FROM instances FINAL") == instances_before
    compare_with_truth(pipeline, plan)


def test_worker_restart_mid_day_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    plan = small_plan(per_device=8, seed=12)
    first, second = plan.subset(per_device=4), plan
    worker = pipeline.start_worker("a")
    pipeline.send_pynetdicom(first)
    time.sleep(5)
    pipeline.kill(worker, sig=15)  # a clean stop mid-day
    pipeline.start_worker("b")
    pipeline.send_pynetdicom(second)  # the rest of the day (the first half again, too: resends must not count)
    pipeline.wait_complete(len(plan.exams), instances=plan.n_instances)
    compare_with_truth(pipeline, plan)


def test_two_workers_one_killed_mid_stream(pipeline: Pipeline) -> None:
    # held 131 of 132 in about half of CI runs (130 of 132 once of three on Apache Kafka) before the producer flush
    # waited for every changelog write (streams.app.ChangelogBarrier) and skipped messages stopped being acknowledged;
    # then 23-24 of 25 exams on Apache Kafka in most CI runs until records read past were read again (streams.holes)
    plan = small_plan(devices=("CT1", "CT2", "MR1", "DX1", "DX2"), per_device=5, seed=13)
    a = pipeline.start_worker("a")
    pipeline.start_worker("b")
    time.sleep(15)  # both join the group and share the partitions
    half = plan.subset(per_device=2)
    pipeline.send_pynetdicom(half)
    pipeline.kill(a)  # SIGKILL: no goodbye to the group, no final commit
    pipeline.send_pynetdicom(plan)
    try:
        pipeline.wait_complete(len(plan.exams), timeout_s=300, instances=plan.n_instances)
    finally:
        compare_with_truth(pipeline, plan)  # on a timeout too: it names the exams that are short, and by how much
