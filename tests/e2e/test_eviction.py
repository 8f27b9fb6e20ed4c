"""A late instance for an exam the streams already evicted: counted once into that exam (a resend is not), its
dose report lands, and the device-day's KPIs stay whole — the new state generation is merged by the sink and the
KPI agent instead of replacing what was stored (schemas/exam_version.py, sinks/generations.py)."""

from __future__ import annotations

import time

import pytest
from pydicom import Dataset

from schemas.exam_version import generation
from synthetic_hospital.sender import iter_datasets
from tests.e2e.conftest import Pipeline, compare_with_truth, small_plan, store_datasets
from tests.e2e.test_pipeline import check_dose_against_truth, check_utilization_against_truth

pytestmark = pytest.mark.kafka


def test_a_late_instance_after_eviction_is_counted_once(pipeline: Pipeline) -> None:
    plan = small_plan(devices=("CT1", "DX1"), per_device=2, seed=17)
    late_exam = next(e for e in plan.exams if e.device.modality == "CT" and e.rdsr_sop_uid)
    pairs = [(exam, ds) for exam, ds in iter_datasets(plan)]
    mine = [i for i, (exam, _) in enumerate(pairs) if exam is late_exam]
    held = set(mine[-2:])  # its last image and its dose report arrive after the eviction
    early: list[tuple[str, Dataset]] = [(e.device.ae_title, ds) for i, (e, ds) in enumerate(pairs) if i not in held]
    late = [(pairs[i][0].device.ae_title, pairs[i][1]) for i in sorted(held)]
    resent = [(pairs[i][0].device.ae_title, pairs[i][1]) for i in mine[:2]]

    pipeline.env["RADPULSE_STREAMS__RETAIN_DAYS"] = str(5 / 86400)  # complete exams leave the state after 5 s
    pipeline.env["RADPULSE_STREAMS__EVICT_SCAN_S"] = "2"
    pipeline.start_worker("a")
    store_datasets(pipeline.node.port, early)
    pipeline.wait_complete(len(plan.exams), instances=plan.n_instances - len(held))
    key = pipeline.exam_key(late_exam.study_uid)
    first = pipeline.exams()[key]["version"]
    time.sleep(12)  # past retention, and a few eviction scans

    store_datasets(pipeline.node.port, late + resent)
    pipeline.wait_complete(len(plan.exams), instances=plan.n_instances)
    assert generation(pipeline.exams()[key]["version"]) > generation(first), "the exam was not evicted: no test"
    compare_with_truth(pipeline, plan)
    check_dose_against_truth(pipeline, plan)
    check_utilization_against_truth(pipeline, plan)
