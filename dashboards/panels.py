"""Every SQL query the dashboards and alert rules send to ClickHouse, by name, so the tests can run each one.

Conventions (``tests/integration/test_dashboard_sql.py`` runs every query here through ``macros.expand`` on chDB):

- **Variables** ``site``, ``modality``, ``device``, ``exam_type`` are multi-value with *All* as default. Each
  filter is ``$__conditionalAll(column IN (${var:singlequote}), $var)``: on *All* the plugin replaces it by ``1=1``
  (rows with a NULL device or exam type stay in, and ClickHouse gets no long ``IN`` list); otherwise an ``IN``
  list of quoted values. A query that cannot honour a variable says why in ``unfiltered`` (the unit tests hold
  every query to "uses it or says why"; a reason starting "partly:" is for one that honours it in part). The
  Benchmark dashboard's site variable is single-value: "this site" must be one site.
- **Device** means station name, else device id: ``coalesce(station_name, device_id)`` on exam, dose and instance
  tables, the ``device`` column on ``device_kpis``/``exam_timing`` (streams computes it the same way).
- **Local days**: ``local_date`` columns (the site's day) are compared with ``LOCAL_DAYS``, the range's ends as
  dates on the browser's (the hospital's) clock, never with ``$__dateFilter``, whose dates are UTC: ``_q``
  rewrites a ``$__dateFilter(local_date)`` into ``LOCAL_DAYS``.
- **"Now"** is ``$__toTime``, the end of the dashboard range (Grafana's ``now`` on a live wall display), so a
  panel shows the same thing for the same range, and the tests need no wall clock.
- Versioned tables are read with ``FINAL`` (or through their ``*_latest`` views); QA/phantom exams
  (``not_patient``) are left out everywhere.
- Alert rule queries return string columns ``site``, ``device``, ``department`` (they become the alert's labels,
  one alert per row) and one numeric ``value``. They use no dashboard variables: Grafana evaluates rules without a
  dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.config import DoseSettings

VARIABLES: tuple[str, ...] = ("site", "modality", "device", "exam_type")
DEVICE = "coalesce(station_name, device_id)"  # the device key on exam, dose and instance tables


@dataclass(frozen=True)
class Query:
    """One query: its name, SQL (with macros and variables), the columns it returns and its Grafana format."""

    name: str
    sql: str
    columns: tuple[str, ...]
    format: Literal["table", "timeseries"] = "table"
    unfiltered: tuple[tuple[str, str], ...] = field(default=())  # (variable, why this query cannot honour it)

    @property
    def uses(self) -> set[str]:
        """Dashboard variables the SQL references."""
        return {v for v in VARIABLES if f"${v}" in self.sql or f"${{{v}" in self.sql}


def where(**columns: str) -> str:
    """The variable filters for ``variable=column_expression`` pairs, joined with AND."""
    parts = []
    for var, col in columns.items():
        if var not in VARIABLES:
            raise ValueError(f"unknown variable {var!r}; the dashboards define {', '.join(VARIABLES)}")
        parts.append(f"$__conditionalAll({col} IN (${{{var}:singlequote}}), ${var})")
    return "\n  AND ".join(parts)


def _q(name: str, sql: str, columns: tuple[str, ...], fmt: Literal["table", "timeseries"] = "table",
       **unfiltered: str) -> Query:
    # a local_date is the site's day: it is compared with the range's local days, never the plugin's UTC dates
    sql = sql.replace("$__dateFilter(local_date)", local_days("local_date"))
    return Query(name, sql.strip(), columns, fmt, tuple(sorted(unfiltered.items())))




def local_days(column: str) -> str:
    """``column`` (a local date) within the dashboard range's first and last local day."""
    return (f"{column} >= toDate('${{__from:date:YYYY-MM-DD}}') "
            f"AND {column} <= toDate('${{__to:date:YYYY-MM-DD}}')")


LOCAL_DAYS = local_days("local_date")
ALL_FILTERS = where(site="site_id", modality="modality", device=DEVICE, exam_type="exam_type")
TIMING_FILTERS = where(site="site_id", modality="modality", device="device", exam_type="exam_type")
KPI_FILTERS = where(site="site_id", modality="modality", device="device")
PER_DEVICE_DAY = "the day's waits and patient order are per device (one modality each): filter by device"
NO_EXAM_TYPE_KPI = "device KPIs are per device and time, not per exam type"
NO_EXAM_TYPE_INSTANCE = "instances carry no exam type (streams assigns it when it assembles the exam)"
EDGE_ONLY = "edge heartbeats are per edge (one per hospital network), not per device, modality or exam type"
LATEST_DOSE_VERSION = "(d.exam_key, d.version) NOT IN (SELECT exam_key, exam_version FROM dose_alerts FINAL)"
HAS_DRL = "d.exam_type IN (SELECT exam_type FROM drl_values FINAL)"

# ---------------------------------------------------------------------------------------------------- overview
OVERVIEW = [
    _q("overview.exams_today_per_device", f"""
SELECT coalesce(station_name, device_id, 'unknown') AS device, count() AS exams
FROM exams_latest
WHERE $__timeFilter(start_utc) AND NOT not_patient
  AND {ALL_FILTERS}
GROUP BY device
ORDER BY device
""", ("device", "exams")),
    _q("overview.mean_wait_now", f"""
SELECT round(avg(arrival_to_start_s) / 60, 1) AS wait_min
FROM exam_timing FINAL
WHERE start_utc > $__toTime - INTERVAL 1 HOUR AND start_utc <= $__toTime
  AND arrival_to_start_s IS NOT NULL AND NOT not_patient
  AND {TIMING_FILTERS}
""", ("wait_min",)),
    _q("overview.waits_today", f"""
SELECT round(quantileExactInclusive(0.5)(arrival_to_start_s) / 60, 1) AS p50_min,
  round(quantileExactInclusive(0.9)(arrival_to_start_s) / 60, 1) AS p90_min,
  count(arrival_to_start_s) AS waits
FROM exam_timing FINAL
WHERE {LOCAL_DAYS} AND NOT not_patient AND NOT discontinued
  AND {TIMING_FILTERS}
""", ("p50_min", "p90_min", "waits")),
    _q("overview.ct_within_drl_today", f"""
SELECT round(100 * countIf({LATEST_DOSE_VERSION}) / count(), 1) AS pct_within_drl
FROM exam_dose AS d FINAL
WHERE d.modality = 'CT' AND NOT d.not_patient AND $__timeFilter(d.start_utc) AND {HAS_DRL}
  AND {where(site="d.site_id", modality="d.modality", device="coalesce(d.station_name, d.device_id)",
             exam_type="d.exam_type")}
""", ("pct_within_drl",)),
    _q("overview.open_exceedances", f"""
SELECT count() AS open_exceedances
FROM dose_alerts_open
WHERE {ALL_FILTERS}
""", ("open_exceedances",)),
    _q("overview.exams_in_progress", f"""
SELECT count() AS in_progress
FROM exams_latest
WHERE status = 'in_progress' AND NOT not_patient
  AND last_received_at > $__toTime - INTERVAL 2 HOUR AND last_received_at <= $__toTime
  AND {ALL_FILTERS}
""", ("in_progress",)),
    _q("overview.ingest_rate", f"""
SELECT round(uniqExact(event_id) / 5, 1) AS instances_per_min
FROM instances
WHERE received_at > $__toTime - INTERVAL 5 MINUTE AND received_at <= $__toTime
  AND {where(site="site_id", modality="modality", device=DEVICE)}
""", ("instances_per_min",), exam_type=NO_EXAM_TYPE_INSTANCE),
]

# ------------------------------------------------------------------------------------------------- utilization
WEEKDAY_COLUMNS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # ClickHouse toDayOfWeek 1..7
_WEEKDAYS = ",\n  ".join(f"round(avgIfOrNull(utilization_pct, toDayOfWeek(local_date) = {d}), 0) AS {name}"
                         for d, name in enumerate(WEEKDAY_COLUMNS, start=1))
UTILIZATION = [
    _q("utilization.utilization_over_time", f"""
SELECT toDateTime(local_date) AS time, device, utilization_pct
FROM device_kpis FINAL
WHERE grain = 'day' AND $__dateFilter(local_date) AND utilization_pct IS NOT NULL
  AND {KPI_FILTERS}
ORDER BY time, device
""", ("time", "device", "utilization_pct"), "timeseries", exam_type=NO_EXAM_TYPE_KPI),
    _q("utilization.time_breakdown", f"""
SELECT device,
  round(sum(busy_minutes) / 60, 1) AS busy_h,
  round(sum(changeover_minutes) / 60, 1) AS changeover_h,
  round(sum(idle_minutes) / 60, 1) AS idle_h
FROM device_kpis FINAL
WHERE grain = 'day' AND $__dateFilter(local_date)
  AND {KPI_FILTERS}
GROUP BY device
ORDER BY device
""", ("device", "busy_h", "changeover_h", "idle_h"), exam_type=NO_EXAM_TYPE_KPI),
    _q("utilization.durations_by_type", f"""
SELECT ifNull(exam_type, 'UNMAPPED') AS type, count() AS exams,
  round(quantileExact(0.5)(duration_s) / 60, 1) AS p50_min,
  round(quantileExact(0.9)(duration_s) / 60, 1) AS p90_min
FROM exam_timing FINAL
WHERE $__timeFilter(start_utc) AND duration_s IS NOT NULL AND NOT not_patient AND NOT discontinued
  AND {TIMING_FILTERS}
GROUP BY type
ORDER BY type
""", ("type", "exams", "p50_min", "p90_min")),
    # one row per local hour (the heatmap's x), one column per weekday (its rows, named by the column)
    _q("utilization.hour_weekday", f"""
SELECT hour_local AS hour,
  {_WEEKDAYS}
FROM device_kpis FINAL
WHERE grain = 'hour' AND $__dateFilter(local_date)
  AND {KPI_FILTERS}
GROUP BY hour
ORDER BY hour
""", ("hour", *WEEKDAY_COLUMNS), exam_type=NO_EXAM_TYPE_KPI),
    _q("utilization.mr_changeover", f"""
SELECT device,
  countIf(changed) AS coil_changes,
  round(quantileExactIf(0.5)(changeover_s, changed) / 60, 1) AS coil_change_p50_min,
  round(quantileExactIf(0.9)(changeover_s, changed) / 60, 1) AS coil_change_p90_min,
  round(quantileExactIf(0.5)(changeover_s, NOT changed) / 60, 1) AS same_coil_p50_min,
  round(quantileExactIf(0.9)(changeover_s, NOT changed) / 60, 1) AS same_coil_p90_min
FROM (
  SELECT device, assumeNotNull(changeover_s) AS changeover_s, assumeNotNull(coil_changed) AS changed
  FROM exam_timing FINAL
  WHERE modality = 'MR' AND changeover_s IS NOT NULL AND coil_changed IS NOT NULL AND NOT not_patient
    AND $__timeFilter(start_utc)
    AND {TIMING_FILTERS}
)
GROUP BY device
ORDER BY device
""", ("device", "coil_changes", "coil_change_p50_min", "coil_change_p90_min", "same_coil_p50_min",
      "same_coil_p90_min")),
    _q("utilization.coil_batching", f"""
SELECT device,
  sum(coil_changes) AS coil_changes,
  round(sum(changeover_minutes), 1) AS changeover_min,
  round(sum(ifNull(coil_batching_minutes_saved, 0)), 1) AS batching_saves_min
FROM device_kpis FINAL
WHERE grain = 'day' AND modality = 'MR' AND $__dateFilter(local_date)
  AND {KPI_FILTERS}
GROUP BY device
ORDER BY device
""", ("device", "coil_changes", "changeover_min", "batching_saves_min"), exam_type=NO_EXAM_TYPE_KPI),
    _q("utilization.waits_daily", f"""
SELECT toString(local_date) AS day, device,
  arrival_n, arrival_mean_min, arrival_p50_min, arrival_p90_min,
  order_n, order_mean_min, order_p50_min, order_p90_min
FROM waits_daily
WHERE {LOCAL_DAYS}
  AND {where(site="site_id", device="device")}
ORDER BY day DESC, device
""", ("day", "device", "arrival_n", "arrival_mean_min", "arrival_p50_min", "arrival_p90_min", "order_n",
      "order_mean_min", "order_p50_min", "order_p90_min"), modality=PER_DEVICE_DAY, exam_type=PER_DEVICE_DAY),
    _q("utilization.patient_order", f"""
SELECT toString(local_date) AS day, device, taken, arrived,
  if(arrived IS NOT NULL AND arrived > taken, 'taken ahead', '') AS note,
  exam_type AS type, start_utc AS start,
  arrival_wait_min, order_wait_min, substring(ifNull(patient_pseudonym, ''), 1, 10) AS patient
FROM patient_order_daily
WHERE {LOCAL_DAYS}
  AND {where(site="site_id", device="device", exam_type="exam_type")}
ORDER BY day DESC, device, taken
LIMIT 1000
""", ("day", "device", "taken", "arrived", "note", "type", "start", "arrival_wait_min", "order_wait_min",
      "patient"), modality=PER_DEVICE_DAY),
]

# -------------------------------------------------------------------------------------------------------- dose
# The national DRL of an exam type and quantity: the P75 row of the newest table that has one.
NATIONAL_DRL = """
SELECT exam_type, quantity, argMax(value, (year, loaded_at)) AS drl
FROM drl_values FINAL
WHERE percentile = 'P75'
GROUP BY exam_type, quantity
""".strip()
DOSE_QUANTITIES: dict[str, str] = {  # DRL quantity → exam_dose column compared with it (streams/drl.py)
    "CTDIVOL": "ctdivol_max_mgy",
    "DLP": "dlp_total_mgy_cm",
    "DAP": "dap_total_gy_cm2",
}
DOSE_FILTERS = where(site="site_id", modality="modality", device=DEVICE, exam_type="exam_type")


def _distribution(quantity: str, column: str) -> Query:
    return _q(f"dose.distribution_{quantity.lower()}", f"""
SELECT v.exam_type AS type, count() AS exams,
  round(quantileExact(0.5)(v.value), 2) AS median,
  round(quantileExact(0.75)(v.value), 2) AS p75,
  round(quantileExact(0.95)(v.value), 2) AS p95,
  any(r.drl) AS drl
FROM (
  SELECT exam_type, {column} AS value
  FROM exam_dose FINAL
  WHERE NOT not_patient AND {column} IS NOT NULL AND $__timeFilter(start_utc)
    AND {DOSE_FILTERS}
) AS v
INNER JOIN ({NATIONAL_DRL}) AS r ON r.exam_type = v.exam_type AND r.quantity = '{quantity}'
GROUP BY type
ORDER BY type
""", ("type", "exams", "median", "p75", "p95", "drl"))


_PER_DEVICE_VALUES = "\n  UNION ALL\n  ".join(
    f"SELECT exam_type, site_id, {DEVICE} AS dev, '{q}' AS quantity, {c} AS value FROM exam_dose FINAL\n"
    f"  WHERE NOT not_patient AND {c} IS NOT NULL AND $__timeFilter(start_utc) AND {DOSE_FILTERS}"
    for q, c in DOSE_QUANTITIES.items()
)
LOCAL_DRL_MIN_EXAMS = 10  # per device, as streams/drl.py local_drls
# the rolling window and thresholds of patient cumulative dose: the [dose] defaults (static dashboards; the CLI
# `radpulse dose cumulative` reads the configured ones)
CUMULATIVE = DoseSettings()
OVER_CUMULATIVE_THRESHOLD = (
    f"(ifNull(ct_effective_dose_msv, 0) >= {CUMULATIVE.cumulative_effective_dose_msv}"
    f" OR ifNull(dose_rp_mgy, 0) >= {CUMULATIVE.cumulative_dose_rp_mgy}"
    f" OR ifNull(dap_gy_cm2, 0) >= {CUMULATIVE.cumulative_dap_gy_cm2})"
)
PATIENT_SPAN = "a patient's cumulative dose spans devices, modalities and exam types over a rolling window"

DOSE = [
    *(_distribution(q, c) for q, c in DOSE_QUANTITIES.items()),
    _q("dose.within_drl_over_time", f"""
SELECT $__timeInterval(d.start_utc) AS time, ifNull(d.modality, '?') AS mod,
  round(100 * countIf({LATEST_DOSE_VERSION}) / count(), 1) AS pct_within_drl
FROM exam_dose AS d FINAL
WHERE $__timeFilter(d.start_utc) AND NOT d.not_patient AND {HAS_DRL}
  AND {where(site="d.site_id", modality="d.modality", device="coalesce(d.station_name, d.device_id)",
             exam_type="d.exam_type")}
GROUP BY time, mod
ORDER BY time
""", ("time", "mod", "pct_within_drl"), "timeseries"),
    _q("dose.exceedances", f"""
SELECT a.created_at AS created, coalesce(a.station_name, a.device_id, 'unknown') AS dev, a.exam_type AS type,
  a.quantity AS quantity, round(a.value, 2) AS value, a.unit AS unit, a.drl_value AS drl, round(a.ratio, 2) AS ratio,
  a.drl_table AS drl_table, a.accession_token AS accession_token,
  if(r.alert_id = '', 'open', r.verdict) AS review, r.reviewer AS reviewer, r.comment AS comment,
  c.likely_causes AS likely_causes
FROM dose_alerts AS a FINAL
LEFT JOIN dose_alert_causes AS c ON c.alert_id = a.alert_id
LEFT JOIN (
  SELECT alert_id, argMax(verdict, reviewed_at) AS verdict, argMax(reviewer, reviewed_at) AS reviewer,
    argMax(comment, reviewed_at) AS comment
  FROM dose_reviews FINAL
  GROUP BY alert_id
) AS r ON r.alert_id = a.alert_id
WHERE $__timeFilter(a.created_at) AND NOT a.not_patient
  AND (a.exam_key, a.exam_version) IN (SELECT exam_key, max(version) FROM exam_dose GROUP BY exam_key)
  AND {where(site="a.site_id", modality="a.modality", device="coalesce(a.station_name, a.device_id)",
             exam_type="a.exam_type")}
ORDER BY a.created_at DESC
LIMIT 500
""", ("created", "dev", "type", "quantity", "value", "unit", "drl", "ratio", "drl_table", "accession_token",
      "review", "reviewer", "comment", "likely_causes")),
    _q("dose.by_protocol", f"""
SELECT d.exam_type AS type, coalesce(d.protocol, nullIf(p.protocol, ''), '(none)') AS protocol, count() AS exams,
  round(quantileExactInclusive(0.5)(d.dlp_total_mgy_cm), 1) AS dlp_p50,
  round(quantileExactInclusive(0.75)(d.dlp_total_mgy_cm), 1) AS dlp_p75,
  round(quantileExactInclusive(0.5)(d.ctdivol_max_mgy), 2) AS ctdivol_p50,
  round(quantileExactInclusive(0.75)(d.ctdivol_max_mgy), 2) AS ctdivol_p75,
  round(quantileExactInclusive(0.5)(d.dap_total_gy_cm2), 3) AS dap_p50,
  round(quantileExactInclusive(0.75)(d.dap_total_gy_cm2), 3) AS dap_p75
FROM exam_dose AS d FINAL
LEFT JOIN exam_report_protocol AS p ON p.exam_key = d.exam_key
WHERE NOT d.not_patient AND $__timeFilter(d.start_utc)
  AND {where(site="d.site_id", modality="d.modality", device="coalesce(d.station_name, d.device_id)",
             exam_type="d.exam_type")}
GROUP BY type, protocol
ORDER BY type, dlp_p75 DESC, dap_p75 DESC
""", ("type", "protocol", "exams", "dlp_p50", "dlp_p75", "ctdivol_p50", "ctdivol_p75", "dap_p50", "dap_p75")),
    _q("dose.fluoro_acquisition", f"""
SELECT exam_type AS type, count() AS exams,
  round(quantileExactInclusive(0.5)(fluoro_time_s) / 60, 1) AS fluoro_min_p50,
  round(quantileExactInclusive(0.5)(fluoro_dap_gy_cm2), 2) AS fluoro_dap_p50,
  round(quantileExactInclusive(0.5)(acquisition_dap_gy_cm2), 2) AS acquisition_dap_p50,
  round(quantileExactInclusive(0.5)(fluoro_dose_rp_mgy), 1) AS fluoro_rp_p50,
  round(quantileExactInclusive(0.5)(acquisition_dose_rp_mgy), 1) AS acquisition_rp_p50,
  round(100 * sum(fluoro_dap_gy_cm2) / sum(dap_total_gy_cm2), 0) AS fluoro_share_pct
FROM exam_dose FINAL
WHERE NOT not_patient AND $__timeFilter(start_utc)
  AND (fluoro_dap_gy_cm2 IS NOT NULL OR acquisition_dap_gy_cm2 IS NOT NULL)
  AND {DOSE_FILTERS}
GROUP BY type
ORDER BY type
""", ("type", "exams", "fluoro_min_p50", "fluoro_dap_p50", "acquisition_dap_p50", "fluoro_rp_p50",
      "acquisition_rp_p50", "fluoro_share_pct")),
    _q("dose.patient_cumulative", f"""
SELECT substring(patient_pseudonym, 1, 10) AS patient, exams, arrayStringConcat(modalities, ', ') AS modalities,
  ct_dlp_mgy_cm, ct_effective_dose_msv, dap_gy_cm2, dose_rp_mgy, last_exam_utc AS last_exam,
  {OVER_CUMULATIVE_THRESHOLD} AS over_threshold
FROM patient_cumulative_dose(window_days={CUMULATIVE.cumulative_window_days})
WHERE {where(site="site_id")}
ORDER BY over_threshold DESC, ct_effective_dose_msv DESC, dose_rp_mgy DESC
LIMIT 50
""", ("patient", "exams", "modalities", "ct_dlp_mgy_cm", "ct_effective_dose_msv", "dap_gy_cm2", "dose_rp_mgy",
      "last_exam", "over_threshold"), modality=PATIENT_SPAN, device=PATIENT_SPAN, exam_type=PATIENT_SPAN),
    _q("dose.local_vs_national", f"""
SELECT m.exam_type AS type, m.quantity AS quantity, count() AS devices, sum(m.n) AS exams,
  round(quantileExactInclusive(0.75)(m.device_median), 2) AS local_drl,
  any(r.drl) AS national_drl,
  round(local_drl / national_drl, 2) AS local_to_national
FROM (
  SELECT exam_type, quantity, site_id, dev, count() AS n, quantileExactInclusive(0.5)(value) AS device_median
  FROM (
  {_PER_DEVICE_VALUES}
  )
  GROUP BY exam_type, quantity, site_id, dev
  HAVING n >= {LOCAL_DRL_MIN_EXAMS}
) AS m
INNER JOIN ({NATIONAL_DRL}) AS r ON r.exam_type = m.exam_type AND r.quantity = m.quantity
GROUP BY type, quantity
ORDER BY type, quantity
""", ("type", "quantity", "devices", "exams", "local_drl", "national_drl", "local_to_national")),
]

# --------------------------------------------------------------------------------------------------- benchmark
BENCHMARK_NO_DEVICE = "the benchmark compares sites (site medians); it has no device or modality dimension"
BENCHMARK = [
    _q("benchmark.this_site_vs_peers", f"""
SELECT exam_type AS type, quantity, peer_label, exams,
  round(site_median, 2) AS site_median, round(p25, 2) AS peer_p25, round(p50, 2) AS peer_p50,
  round(p75, 2) AS peer_p75, sites, rank_low_to_high
FROM dose_benchmark
WHERE {where(site="site_id", exam_type="exam_type")}
ORDER BY type, quantity
""", ("type", "quantity", "peer_label", "exams", "site_median", "peer_p25", "peer_p50", "peer_p75", "sites",
      "rank_low_to_high"), device=BENCHMARK_NO_DEVICE, modality=BENCHMARK_NO_DEVICE),
    # every contributing site under its pseudonymous label; only `this_site` says which one is ours
    _q("benchmark.peers", f"""
SELECT exam_type AS type, quantity, peer_label, round(site_median, 2) AS site_median, exams, rank_low_to_high,
  if($__conditionalAll(site_id IN (${{site:singlequote}}), $site), 'this site', 'peer') AS role
FROM dose_benchmark
WHERE {where(exam_type="exam_type")}
ORDER BY type, quantity, rank_low_to_high
""", ("type", "quantity", "peer_label", "site_median", "exams", "rank_low_to_high", "role"),
       device=BENCHMARK_NO_DEVICE, modality=BENCHMARK_NO_DEVICE),
]

# --------------------------------------------------------------------------------------------- pipeline health
# Cumulative edge counters → per-heartbeat increments. A counter restarts with the edge (new started_at): the first
# heartbeat of a run counts from 0 if the run began inside the range, else it only anchors the next difference.
_COUNTERS = ("received", "produced", "spooled", "rejected")
_DELTAS = ",\n    ".join(
    f"if(prev_{c} < 0, if(started_at >= $__fromTime, {c}, 0), {c} - prev_{c}) AS d_{c}" for c in _COUNTERS
)
_PREVS = ",\n      ".join(f"lagInFrame({c}, 1, -1) OVER w AS prev_{c}" for c in _COUNTERS)
EDGE_INCREMENTS = f"""
  SELECT site_id, edge_id, at, started_at,
    {_DELTAS}
  FROM (
    SELECT site_id, edge_id, at, started_at, {", ".join(_COUNTERS)},
      {_PREVS}
    FROM edge_health FINAL
    WHERE $__timeFilter(at) AND {where(site="site_id")}
    WINDOW w AS (PARTITION BY site_id, edge_id, started_at ORDER BY at ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
  )
""".strip("\n")

_FRESHNESS = [  # table, its arrival/processing time column, the filters it can take
    ("instances", "received_at", where(site="site_id", modality="modality", device=DEVICE)),
    ("workflow_events", "received_at", where(site="site_id", modality="modality", device="station_name")),
    ("exams", "updated_at", ALL_FILTERS),
    ("exam_dose", "updated_at", ALL_FILTERS),
    ("exam_timing", "updated_at", TIMING_FILTERS),
    ("device_kpis", "updated_at", KPI_FILTERS),
    ("edge_health", "at", where(site="site_id")),
]
_FRESHNESS_SQL = "\nUNION ALL\n".join(
    f"SELECT '{t}' AS topic_table, count() AS rows_in_range,\n"
    f"  if(rows_in_range = 0, NULL, dateDiff('second', max({c}), $__toTime)) AS seconds_behind\n"
    f"FROM {t}\nWHERE $__timeFilter({c}) AND {f}"
    for t, c, f in _FRESHNESS
)

PIPELINE = [
    _q("pipeline.edge_events", f"""
SELECT $__timeInterval(at) AS time, edge_id AS edge,
  sum(d_received) AS received, sum(d_produced) AS produced, sum(d_spooled) AS spooled, sum(d_rejected) AS rejected
FROM (
{EDGE_INCREMENTS}
)
GROUP BY time, edge
ORDER BY time
""", ("time", "edge", "received", "produced", "spooled", "rejected"), "timeseries",
       modality=EDGE_ONLY, device=EDGE_ONLY, exam_type=EDGE_ONLY),
    _q("pipeline.spool_depth", f"""
SELECT $__timeInterval(at) AS time, edge_id AS edge, max(spool_pending) AS spool_pending
FROM edge_health FINAL
WHERE $__timeFilter(at) AND {where(site="site_id")}
GROUP BY time, edge
ORDER BY time
""", ("time", "edge", "spool_pending"), "timeseries", modality=EDGE_ONLY, device=EDGE_ONLY, exam_type=EDGE_ONLY),
    _q("pipeline.edge_status", f"""
SELECT site_id AS site, edge_id AS edge, max(at) AS last_heartbeat,
  dateDiff('second', last_heartbeat, $__toTime) AS seconds_since,
  argMax(kafka_ok, at) AS kafka_ok, argMax(spool_pending, at) AS spool_pending,
  argMax(spool_bytes, at) AS spool_bytes, argMax(started_at, at) AS running_since
FROM edge_health FINAL
WHERE $__timeFilter(at) AND {where(site="site_id")}
GROUP BY site, edge
ORDER BY site, edge
""", ("site", "edge", "last_heartbeat", "seconds_since", "kafka_ok", "spool_pending", "spool_bytes", "running_since"),
       modality=EDGE_ONLY, device=EDGE_ONLY, exam_type=EDGE_ONLY),
    _q("pipeline.freshness", _FRESHNESS_SQL, ("topic_table", "rows_in_range", "seconds_behind"),
       exam_type="partly: instances, workflow events and edge heartbeats carry no exam type; the rest honour it"),
    _q("pipeline.instances_rate", f"""
SELECT $__timeInterval(received_at) AS time, uniqExact(event_id) AS instances
FROM instances
WHERE $__timeFilter(received_at) AND {where(site="site_id", modality="modality", device=DEVICE)}
GROUP BY time
ORDER BY time
""", ("time", "instances"), "timeseries", exam_type=NO_EXAM_TYPE_INSTANCE),
    _q("pipeline.exams_rate", f"""
SELECT $__timeInterval(updated_at) AS time, count() AS exam_versions
FROM exams
WHERE $__timeFilter(updated_at) AND {ALL_FILTERS}
GROUP BY time
ORDER BY time
""", ("time", "exam_versions"), "timeseries"),
    _q("pipeline.completion_latency", f"""
SELECT $__timeInterval(updated_at) AS time,
  round(quantile(0.5)(dateDiff('second', last_received_at, updated_at)), 1) AS p50_s,
  round(quantile(0.9)(dateDiff('second', last_received_at, updated_at)), 1) AS p90_s
FROM exams_latest
WHERE status = 'complete' AND last_received_at IS NOT NULL AND $__timeFilter(updated_at)
  AND {ALL_FILTERS}
GROUP BY time
ORDER BY time
""", ("time", "p50_s", "p90_s"), "timeseries"),
]

# ------------------------------------------------------------------------------------------ template variables
VARIABLE_QUERIES: dict[str, Query] = {
    "site": _q("variable.site", "SELECT DISTINCT site_id FROM exams ORDER BY site_id", ("site_id",)),
    "modality": _q("variable.modality", f"""
SELECT DISTINCT modality FROM exams
WHERE modality IS NOT NULL AND {where(site="site_id")}
ORDER BY modality
""", ("modality",)),
    "device": _q("variable.device", f"""
SELECT DISTINCT {DEVICE} AS device FROM exams
WHERE device IS NOT NULL AND {where(site="site_id", modality="modality")}
ORDER BY device
""", ("device",)),
    "exam_type": _q("variable.exam_type", f"""
SELECT DISTINCT exam_type FROM exams
WHERE exam_type IS NOT NULL AND {where(site="site_id", modality="modality")}
ORDER BY exam_type
""", ("exam_type",)),
}

# ------------------------------------------------------------------------------------------------- alert rules
# Department of a device, for routing alerts (a cardiology team gets only its rooms). Rooms listed in
# DEPARTMENT_BY_DEVICE win; otherwise the modality decides; anything else goes to DEFAULT_DEPARTMENT.
DEPARTMENT_BY_MODALITY: dict[str, str] = {
    "CT": "radiology", "MR": "radiology", "DX": "radiology", "CR": "radiology", "RF": "radiology",
    "US": "radiology", "MG": "breast-imaging", "XA": "cardiology", "NM": "nuclear-medicine",
    "PT": "nuclear-medicine",
}  # fmt: skip
DEPARTMENT_BY_DEVICE: dict[str, str] = {}  # e.g. {"CATHLAB2": "cardiology"}
DEFAULT_DEPARTMENT = "radiology"
INFRA_DEPARTMENT = "imaging-it"  # edges and the pipeline belong to the team that runs them


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values) + "]"


def department_sql(device: str, modality: str) -> str:
    """SQL for the department of a row, from its device and modality expressions."""
    mods = sorted(DEPARTMENT_BY_MODALITY)
    expr = (
        f"transform(ifNull({modality}, ''), {_sql_list(mods)}, "
        f"{_sql_list([DEPARTMENT_BY_MODALITY[m] for m in mods])}, '{DEFAULT_DEPARTMENT}')"
    )
    if DEPARTMENT_BY_DEVICE:
        devs = sorted(DEPARTMENT_BY_DEVICE)
        expr = (
            f"transform(ifNull({device}, ''), {_sql_list(devs)}, "
            f"{_sql_list([DEPARTMENT_BY_DEVICE[d] for d in devs])}, {expr})"
        )
    return expr


ALERT_COLUMNS = ("site", "device", "department", "value")
ALERTS = [
    _q("alert.drl_exceedance", f"""
SELECT site_id AS site, coalesce(station_name, device_id, 'unknown') AS device,
  {department_sql("coalesce(station_name, device_id)", "modality")} AS department,
  toFloat64(count()) AS value
FROM dose_alerts FINAL
WHERE $__timeFilter(created_at) AND NOT not_patient
GROUP BY site, device, department
""", ALERT_COLUMNS),
    _q("alert.patient_cumulative_dose", f"""
SELECT site_id AS site, 'patients' AS device, '{DEFAULT_DEPARTMENT}' AS department,
  toFloat64(countIf($__timeFilter(last_exam_utc) AND {OVER_CUMULATIVE_THRESHOLD})) AS value
FROM patient_cumulative_dose(window_days={CUMULATIVE.cumulative_window_days})
GROUP BY site
""", ALERT_COLUMNS),
    _q("alert.edge_silent", f"""
SELECT site_id AS site, edge_id AS device, '{INFRA_DEPARTMENT}' AS department,
  toFloat64(dateDiff('second', max(at), $__toTime)) AS value
FROM edge_health FINAL
WHERE $__timeFilter(at)
GROUP BY site, device
""", ALERT_COLUMNS),
    _q("alert.spool_growing", f"""
SELECT site_id AS site, edge_id AS device, '{INFRA_DEPARTMENT}' AS department,
  toFloat64(argMax(spool_pending, at) - argMin(spool_pending, at)) AS value
FROM edge_health FINAL
WHERE $__timeFilter(at)
GROUP BY site, device
""", ALERT_COLUMNS),
    # lag ≈ the edge's last delivery to Kafka (its `produced` counter moved) minus the newest instance in ClickHouse
    _q("alert.consumer_lag", f"""
SELECT e.site AS site, 'pipeline' AS device, '{INFRA_DEPARTMENT}' AS department,
  toFloat64(greatest(dateDiff('second', ifNull(i.newest, toDateTime64(0, 6, 'UTC')), e.last_delivery), 0)) AS value
FROM (
  SELECT site_id AS site, max(at) AS last_delivery
  FROM (
    SELECT site_id, at,
      produced - lagInFrame(produced, 1, produced) OVER (
        PARTITION BY site_id, edge_id, started_at ORDER BY at ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS delivered
    FROM edge_health FINAL
    WHERE $__timeFilter(at)
  )
  WHERE delivered > 0
  GROUP BY site
) AS e
LEFT JOIN (
  SELECT site_id AS site, max(received_at) AS newest
  FROM instances
  WHERE $__timeFilter(received_at)
  GROUP BY site
) AS i ON i.site = e.site
""", ALERT_COLUMNS),
]

DASHBOARD_QUERIES: list[Query] = [*OVERVIEW, *UTILIZATION, *DOSE, *BENCHMARK, *PIPELINE]
QUERIES: dict[str, Query] = {q.name: q for q in [*DASHBOARD_QUERIES, *VARIABLE_QUERIES.values(), *ALERTS]}
if len(QUERIES) != len(DASHBOARD_QUERIES) + len(VARIABLE_QUERIES) + len(ALERTS):
    raise RuntimeError("dashboards/panels.py: two queries share a name")
