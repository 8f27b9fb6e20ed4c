"""Dose & DRL: per exam type the dose distribution against the national DRL, % within DRL over time, the
exceedances with their review status, and local DRLs (P75 of device medians) next to the national ones."""

from __future__ import annotations

from dashboards import spec
from dashboards.panels import DOSE_QUANTITIES, QUERIES
from dashboards.spec import GREEN, ORANGE, RED, color_override, grid, thresholds

UID = "radpulse-dose"
UNITS = {"CTDIVOL": ("CTDIvol", "mGy"), "DLP": ("DLP", "mGy·cm"), "DAP": ("DAP", "Gy·cm²")}


def dashboard() -> spec.Dashboard:
    q = QUERIES
    panels = []
    width = 24 // len(DOSE_QUANTITIES)
    for i, quantity in enumerate(DOSE_QUANTITIES):
        label, unit = UNITS[quantity]
        panels.append(spec.barchart(
            f"{label} by exam type vs DRL ({unit})", q[f"dose.distribution_{quantity.lower()}"],
            grid(i * width, 0, width, 10), x="type", unit="none",
            overrides=[color_override("drl", RED), color_override("median", "blue"), color_override("p75", "purple"),
                       color_override("p95", ORANGE),
                       {"matcher": {"id": "byName", "options": "exams"},
                        "properties": [{"id": "custom.hideFrom", "value": {"viz": True, "legend": True,
                                                                            "tooltip": False}}]}],
            description=f"Median, P75 and P95 of {label} per exam type against the national DRL (red).",
        ))  # fmt: skip
    panels += [
        spec.timeseries("% of exams within DRL", [q["dose.within_drl_over_time"]], grid(0, 10, 12, 9),
                        unit="percent", interval="1d", steps=thresholds((None, RED), (80, ORANGE), (95, GREEN)),
                        description="Patient exams with a DRL for their type that exceed none, per modality "
                                    "and day (or coarser)."),
        spec.table("Local vs national DRL", q["dose.local_vs_national"], grid(12, 10, 12, 9),
                   overrides=[{"matcher": {"id": "byName", "options": "local_to_national"},
                               "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background"}},
                                              {"id": "thresholds",
                                               "value": thresholds((None, GREEN), (0.9, ORANGE), (1.0, RED))},
                                              {"id": "color", "value": {"mode": "thresholds"}}]}],
                   description="Local DRL = P75 of the per-device medians (devices with ≥ 10 exams), as ICRP 135; "
                               "national = P75 row of the newest DRL table."),
        spec.table("DRL exceedances and review status", q["dose.exceedances"], grid(0, 19, 24, 11),
                   overrides=[{"matcher": {"id": "byName", "options": "review"},
                               "properties": [{"id": "custom.cellOptions", "value": {"type": "color-text"}},
                                              {"id": "mappings", "value": [
                                                  {"type": "value", "options": {"open": {"color": RED}}}]}]}],
                   description="Latest exam version only, with likely causes (large patient, more events or "
                               "series than the type's median, unusual protocol, repeat within 24 h). Reveal an "
                               "accession at the hospital with `radpulse reveal TOKEN`."),
        spec.table("Dose by scan protocol within exam type", q["dose.by_protocol"], grid(0, 30, 12, 10),
                   description="Median and P75 per protocol name (header protocol, else the report's first "
                               "acquisition protocol): which protocol drives a type's P75."),
        spec.table("Patient cumulative dose (rolling window)", q["dose.patient_cumulative"], grid(12, 30, 12, 10),
                   description="Per patient pseudonym over the last 14 days ([dose] cumulative_window_days): CT "
                               "DLP and effective-dose proxy (DLP × k by exam type), DAP and reference-point "
                               "dose; over_threshold against the [dose] cumulative_* thresholds."),
        spec.table("Fluoroscopy vs acquisition (medians per exam type)", q["dose.fluoro_acquisition"],
                   grid(0, 40, 24, 7),
                   description="From the reports' accumulated fluoroscopy and acquisition totals (else their "
                               "events): DAP in Gy·cm², reference-point dose in mGy, fluoroscopy time in minutes, "
                               "and the share of DAP given during fluoroscopy."),
    ]  # fmt: skip
    return spec.dashboard(UID, "radpulse · Dose & DRL", panels, time_from="now-30d", refresh="5m",
                          description="Patient dose against diagnostic reference levels.")
