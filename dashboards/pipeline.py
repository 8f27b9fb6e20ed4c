"""Pipeline health: what each edge received, produced, spooled and rejected (differences of its cumulative
counters), spool depth, edge status, how far behind each table is, instances vs exams, and exam completion
latency."""

from __future__ import annotations

from dashboards import spec
from dashboards.panels import QUERIES
from dashboards.spec import GREEN, ORANGE, RED, grid, thresholds

UID = "radpulse-pipeline"


def dashboard() -> spec.Dashboard:
    q = QUERIES
    panels = [
        spec.timeseries("Edge events per interval", [q["pipeline.edge_events"]], grid(0, 0, 16, 9), unit="none",
                        bars=True, description="Increments of each edge's counters (a restarted edge counts from 0)."),
        spec.table("Edges", q["pipeline.edge_status"], grid(16, 0, 8, 9),
                   overrides=[spec.unit_override("seconds_since", "s"), spec.unit_override("spool_bytes", "bytes")],
                   description="Last heartbeat, Kafka reachability and spool per edge."),
        spec.timeseries("Spool depth", [q["pipeline.spool_depth"]], grid(0, 9, 12, 8), unit="none",
                        steps=thresholds((None, GREEN), (1, ORANGE), (1000, RED)),
                        description="Events waiting in each edge's spool for Kafka."),
        spec.bargauge("Consumer lag (seconds behind, per table)", q["pipeline.freshness"], grid(12, 9, 12, 8),
                      unit="s", steps=thresholds((None, GREEN), (120, ORANGE), (600, RED)),
                      description="End of range − newest row per table: how far each topic's consumer is behind "
                                  "(an idle table also looks behind)."),
        spec.timeseries("Instances vs exam versions", [q["pipeline.instances_rate"], q["pipeline.exams_rate"]],
                        grid(0, 17, 12, 9), unit="none",
                        description="Instances stored and exam versions published per interval."),
        spec.timeseries("Exam completion latency", [q["pipeline.completion_latency"]], grid(12, 17, 12, 9),
                        unit="s", description="Complete exams: last instance received → exam version published "
                                              "(P50, P90)."),
    ]  # fmt: skip
    return spec.dashboard(UID, "radpulse · Pipeline health", panels, time_from="now-6h", refresh="30s",
                          description="Edges, Kafka consumers and ClickHouse freshness.")
