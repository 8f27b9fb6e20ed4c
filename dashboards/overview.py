"""Overview: the wall display (1080p, kiosk mode, refresh 10 s): today's exams, waits, dose and ingest at a glance.

Open it as ``/d/radpulse-overview?kiosk&theme=dark`` on the display. Its range is today so far (``now/d`` → ``now``), so
"today" follows the browser's (the hospital's) clock.
"""

from __future__ import annotations

from dashboards import spec
from dashboards.panels import QUERIES
from dashboards.spec import BLUE, GREEN, ORANGE, RED, grid, thresholds

UID = "radpulse-overview"


def dashboard() -> spec.Dashboard:
    q = QUERIES
    panels = [
        spec.stat("Patient wait now (min)", q["overview.mean_wait_now"], grid(0, 0, 5, 9), unit="m", decimals=0,
                  steps=thresholds((None, GREEN), (20, ORANGE), (40, RED)),
                  description="Mean arrival → exam start of exams started in the last hour."),
        spec.stat("CT within DRL today", q["overview.ct_within_drl_today"], grid(5, 0, 5, 9), unit="percent",
                  decimals=0, steps=thresholds((None, RED), (80, ORANGE), (95, GREEN)),
                  description="Share of today's patient CT exams with a DRL for their type that exceed none."),
        spec.stat("Open dose exceedances", q["overview.open_exceedances"], grid(10, 0, 5, 9), unit="none",
                  steps=thresholds((None, GREEN), (1, ORANGE), (5, RED)),
                  description="DRL exceedances of the latest exam version that no physicist has reviewed yet."),
        spec.stat("Exams in progress", q["overview.exams_in_progress"], grid(15, 0, 5, 9), unit="none",
                  steps=thresholds((None, BLUE)),
                  description="Exams still receiving images (last image within 2 h)."),
        spec.stat("Ingest (images/min)", q["overview.ingest_rate"], grid(20, 0, 4, 9), unit="none", decimals=1,
                  steps=thresholds((None, ORANGE), (0.1, GREEN)),
                  description="Instances that reached ClickHouse in the last 5 minutes, per minute."),
        spec.stat("Exams today per device", q["overview.exams_today_per_device"], grid(0, 9, 24, 12), unit="none",
                  per_row=True, steps=thresholds((None, BLUE)),
                  description="Patient exams started today, per device (station name, else device id)."),
        spec.stat("Arrival → start today: P50, P90 (min) and count", q["overview.waits_today"], grid(0, 21, 24, 6),
                  unit="none", decimals=1, steps=thresholds((None, GREEN), (20, ORANGE), (40, RED)),
                  description="Today's (local day) patient waits from arrival to exam start, all devices."),
    ]  # fmt: skip
    return spec.dashboard(UID, "radpulse · Overview", panels, time_from="now/d", refresh="10s",
                          description="Wall display: open with ?kiosk. Today so far, refreshed every 10 s.",
                          extra_tags=("wall",))  # fmt: skip
