"""Benchmark: this site's median dose per exam type against anonymous peers (``dose_benchmark``, k-anonymous:
only groups of ≥ 5 sites with ≥ 20 exams each; other sites appear only as ``peer_label``, never by id).

The site variable is single-value here (no *All*): "this site" has to be one site.
"""

from __future__ import annotations

from dashboards import spec
from dashboards.panels import QUERIES
from dashboards.spec import grid

UID = "radpulse-benchmark"


def dashboard() -> spec.Dashboard:
    q = QUERIES
    role_colors = {"type": "value", "options": {"this site": {"color": "blue", "index": 0},
                                                "peer": {"color": "text", "index": 1}}}  # fmt: skip
    panels = [
        spec.table("This site against peers", q["benchmark.this_site_vs_peers"], grid(0, 0, 24, 10),
                   description="This site's median per exam type and quantity, the peers' P25/P50/P75 of site "
                               "medians and its rank (1 = lowest dose)."),
        spec.table("All contributing sites (pseudonymous)", q["benchmark.peers"], grid(0, 10, 24, 14),
                   overrides=[{"matcher": {"id": "byName", "options": "role"},
                               "properties": [{"id": "custom.cellOptions", "value": {"type": "color-text"}},
                                              {"id": "mappings", "value": [role_colors]}]}],
                   description="Every site in the benchmark under its stable pseudonymous label."),
    ]  # fmt: skip
    return spec.dashboard(UID, "radpulse · Benchmark", panels, time_from="now-90d", refresh="1h", single_site=True,
                          description="Anonymous peer benchmark of dose per exam type.")
