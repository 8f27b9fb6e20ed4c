"""Utilization: per device utilization over time, where the operating time goes, exam durations by type, the
hour × weekday pattern, MR coil-change changeovers and the coil-batching what-if (from ``device_kpis`` and
``exam_timing``, which ``streams/utilization.py`` computes)."""

from __future__ import annotations

from dashboards import spec
from dashboards.panels import QUERIES
from dashboards.spec import GREEN, ORANGE, RED, color_override, grid, thresholds

UID = "radpulse-utilization"


def dashboard() -> spec.Dashboard:
    q = QUERIES
    util_steps = thresholds((None, RED), (40, ORANGE), (60, GREEN), (90, ORANGE))
    panels = [
        spec.timeseries("Utilization per device", [q["utilization.utilization_over_time"]], grid(0, 0, 16, 9),
                        unit="percent", steps=util_steps,
                        description="Busy time within operating hours ÷ operating time, per local day."),
        spec.barchart("Operating time: busy, changeover, idle", q["utilization.time_breakdown"], grid(16, 0, 8, 9),
                      x="device", unit="h", stacked=True,
                      overrides=[color_override("busy_h", "green"), color_override("changeover_h", "orange"),
                                 color_override("idle_h", "gray")],
                      description="Operating hours split into busy + changeover + idle (they add up)."),
        spec.barchart("Exam duration by type (P50 / P90)", q["utilization.durations_by_type"], grid(0, 9, 12, 10),
                      x="type", unit="m", overrides=[spec.unit_override("exams", "none")],
                      description="Patient exams, not discontinued; minutes from start to end."),
        spec.heatmap("Utilization by hour × weekday (%)", q["utilization.hour_weekday"], grid(12, 9, 12, 10),
                     unit="percent", value="Utilization", low=0, high=100,
                     description="Mean hourly utilization per local hour (x) and weekday (rows), from device_kpis "
                                 "at hour grain; closed hours stay blank."),
        spec.table("MR changeover: coil change vs same coil", q["utilization.mr_changeover"], grid(0, 19, 14, 8),
                   unit="m", overrides=[spec.unit_override("coil_changes", "none")],
                   description="Changeover (end of one exam → start of the next patient's), split by whether the "
                               "receive coil changed."),
        spec.barchart("Coil batching what-if", q["utilization.coil_batching"], grid(14, 19, 10, 8), x="device",
                      unit="m", overrides=[spec.unit_override("coil_changes", "none"),
                                           color_override("batching_saves_min", "green")],
                      description="Minutes of changeover the day's MR exams would have saved had same-coil exams "
                                  "been scheduled back to back."),
        spec.table("The day's waits per device (min)", q["utilization.waits_daily"], grid(0, 27, 24, 8), unit="m",
                   overrides=[spec.unit_override(c, "none") for c in ("day", "device", "arrival_n", "order_n")],
                   description="Per device and local day: arrival → start and order → start, mean, P50 and P90 "
                               "(linear interpolation) and how many exams had each."),
        spec.table("Patient order of the day", q["utilization.patient_order"], grid(0, 35, 24, 12),
                   overrides=[spec.unit_override(c, "m") for c in ("arrival_wait_min", "order_wait_min")],
                   description="Who was taken in which order (taken) against the order of arrival (arrived); "
                               "'taken ahead' marks a patient taken before someone who arrived earlier. Patient "
                               "is the pseudonym's start; reveal an accession at the hospital."),
    ]  # fmt: skip
    return spec.dashboard(UID, "radpulse · Utilization", panels, time_from="now-30d", refresh="5m",
                          description="Device utilization, changeovers and exam durations.")
