"""Exam assembly: idempotent folding, timing from original acquisitions, closing and versions. No servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import InstanceEvent
from streams.exams import ExamState, fold, publish, should_close

T0 = datetime(2024, 3, 1, 1, 0, tzinfo=UTC)


def inst(n: int, *, minute: float = 0, series: str = "s1", modality: str = "CT", image_type=("ORIGINAL", "PRIMARY"),
         sop: str = "1.2.840.10008.5.1.4.1.1.2", coil: str | None = None, **kw) -> InstanceEvent:
    return InstanceEvent(
        event_id=f"e{n}", site_id="site", edge_id="edge", received_at=T0 + timedelta(minutes=minute, seconds=30),
        calling_ae="CT1", sop_class_uid=sop, transfer_syntax_uid="1.2.840.10008.1.2.1", instance_pseudonym=f"i{n}",
        study_pseudonym="study", series_pseudonym=series, modality=modality, device_id="dev", image_type=image_type,
        acquisition_datetime_utc=T0 + timedelta(minutes=minute), mr_receive_coil=coil, **kw,
    )


def fold_all(events, state=None, now=1000.0):
    for e in events:
        state, _ = fold(state, e, now)
    return state


def test_counts_and_interval() -> None:
    s = fold_all([inst(1, minute=0), inst(2, minute=3), inst(3, minute=7, series="s2")])
    assert (s.instance_count, len(s.series)) == (3, 2)
    _, exam = publish(s, "complete", T0)
    assert exam.start_utc == T0 and exam.end_utc == T0 + timedelta(minutes=7) and exam.duration_s == 420
    assert exam.version == 1 and exam.series_count == 2


def test_resent_instance_is_not_counted_twice() -> None:
    s = fold_all([inst(1), inst(2)])
    s2, changed = fold(ExamState.from_dict(s.to_dict()), inst(2), 2000.0)
    assert not changed and s2.instance_count == 2


def test_state_round_trips_through_json() -> None:
    import json

    s = fold_all([inst(1, coil="Knee_18", modality="MR"), inst(2, minute=1, coil="Body_18", modality="MR")])
    again = ExamState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.coils == ["Knee_18", "Body_18"]


def test_reformats_and_srs_do_not_stretch_the_exam() -> None:
    s = fold_all([
        inst(1, minute=0), inst(2, minute=10),
        inst(3, minute=45, image_type=("DERIVED", "SECONDARY", "REFORMATTED")),
        inst(4, minute=50, modality="SR", sop="1.2.840.10008.5.1.4.1.1.88.67", image_type=()),
    ])
    _, exam = publish(s, "complete", T0)
    assert exam.end_utc == T0 + timedelta(minutes=10) and exam.instance_count == 4


def test_projection_derived_images_still_time_the_exam() -> None:
    s = fold_all([inst(1, minute=0, modality="DX", image_type=("DERIVED", "PRIMARY")),
                  inst(2, minute=4, modality="DX", image_type=("DERIVED", "PRIMARY"))])
    _, exam = publish(s, "complete", T0)
    assert exam.duration_s == 240


def test_closing_by_device_clock_and_by_idle_time() -> None:
    s = fold_all([inst(1, minute=0), inst(2, minute=5)], now=1000.0)
    end_us = int((T0 + timedelta(minutes=5)).timestamp() * 1e6)
    assert not should_close(s, device_clock_us=end_us + 9 * 60_000_000, wall_now=1001, quiet_s=600, idle_s=600)
    assert should_close(s, device_clock_us=end_us + 10 * 60_000_000, wall_now=1001, quiet_s=600, idle_s=600)
    assert should_close(s, device_clock_us=None, wall_now=1000 + 600, quiet_s=600, idle_s=600)
    assert not should_close(s, device_clock_us=None, wall_now=1000 + 599, quiet_s=600, idle_s=600)


def test_late_instance_reopens_and_the_next_publication_bumps_the_version() -> None:
    s = fold_all([inst(1), inst(2, minute=2)])
    s, first = publish(s, "complete", T0)
    s, changed = fold(s, inst(3, minute=4), 3000.0)
    assert changed and s.status == "in_progress"
    s, second = publish(s, "complete", T0)
    assert second.version == first.version + 1 and second.instance_count == 3


def test_first_image_defines_the_device_not_the_dose_report() -> None:
    sr = inst(1, modality="SR", sop="1.2.840.10008.5.1.4.1.1.88.67", image_type=())
    s = fold_all([sr.replace(device_id="reporter", manufacturer="DoseWatch"), inst(2).replace(manufacturer="ACME")])
    assert s.device_id == "dev" and s.manufacturer == "ACME" and s.modality == "CT"
