"""Every dashboard panel, template variable and alert rule query, expanded as Grafana would and run on chDB.

The database is the real schema (``sinks/migrations``) filled with one small, realistic day built from the event
dataclasses and inserted through ``sinks.rows`` (the sink's own path): five devices of ``hospital-a`` with exams,
dose, two DRL exceedances (one reviewed), timing, KPIs per day and hour, instances, workflow events and
heartbeats of two edges (one silent for an hour, one whose spool grows); plus five peer sites with 20 CT head
exams each so the k-anonymous benchmark view has rows. The cluster DDL (``sinks/cluster_ddl.py``) is parsed here
too, since that needs the engine. chDB runs one engine per process: one database per module in ``chdb_root``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboards import alerts, panels
from dashboards.macros import QueryContext, Selection, expand
from schemas.events import (
    AccumulatedDose,
    DeviceKpi,
    DoseAlert,
    DoseReport,
    EdgeHeartbeat,
    Exam,
    ExamDose,
    ExamTiming,
    Exposure,
    InstanceEvent,
    WorkflowEvent,
)
from sinks.clickhouse import Database, connect
from sinks.migrate import migrate
from sinks.rows import COLUMNS, rows_for

SITE = "hospital-a"
PEERS = [f"peer-{k}" for k in range(1, 6)]
# yesterday, so the heartbeats stay inside edge_health's 90-day TTL and the dates are fixed within a run
DAY = (datetime.now(UTC) - timedelta(days=1)).date()
NOW = datetime(DAY.year, DAY.month, DAY.day, 15, 0, tzinfo=UTC)
RANGE = (datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC), NOW)


@dataclass(frozen=True)
class Device:
    station: str
    modality: str
    exam_types: tuple[str, ...]
    exams: int


DEVICES = [
    Device("CT1", "CT", ("CT_HEAD", "CT_HEAD", "CT_CHEST"), 18),
    Device("CT2", "CT", ("CT_HEAD", "CT_HEAD", "CT_ABDOMEN_PELVIS"), 18),
    Device("MR1", "MR", ("MR_BRAIN", "MR_BRAIN", "MR_KNEE"), 8),  # same-coil and coil-change changeovers
    Device("DX1", "DX", ("DX_CHEST",), 12),
    Device("MG1", "MG", ("MG_SCREENING",), 6),
    Device("RF1", "RF", ("RF_UPPER_GI",), 4),
]
DRL = [  # table_id, exam_type, quantity, value, unit, phantom
    ("UK-NDRL-2022", "CT_HEAD", "CTDIVOL", 47.0, "mGy", "HEAD16"),
    ("UK-NDRL-2022", "CT_HEAD", "DLP", 790.0, "mGy·cm", "HEAD16"),
    ("UK-NDRL-2022", "CT_CHEST", "CTDIVOL", 8.5, "mGy", "BODY32"),
    ("UK-NDRL-2022", "CT_CHEST", "DLP", 290.0, "mGy·cm", "BODY32"),
    ("UK-NDRL-2022", "CT_ABDOMEN_PELVIS", "CTDIVOL", 10.0, "mGy", "BODY32"),
    ("UK-NDRL-2022", "CT_ABDOMEN_PELVIS", "DLP", 530.0, "mGy·cm", "BODY32"),
    ("TEST-DX", "DX_CHEST", "DAP", 0.1, "Gy·cm²", ""),
]


def _dose(exam_type: str, k: int) -> dict[str, Any]:
    """Dose quantities of the k-th exam of a type: spread around (mostly below) the DRL."""
    f = 0.5 + (k % 7) / 10  # 0.5 … 1.1
    match exam_type:
        case "CT_HEAD":
            return {"ctdivol_max_mgy": 40 * f, "dlp_total_mgy_cm": 700 * f, "ctdivol_phantom": "HEAD16"}
        case "CT_CHEST":
            return {"ctdivol_max_mgy": 7 * f, "dlp_total_mgy_cm": 250 * f, "ctdivol_phantom": "BODY32"}
        case "CT_ABDOMEN_PELVIS":
            return {"ctdivol_max_mgy": 9 * f, "dlp_total_mgy_cm": 480 * f, "ctdivol_phantom": "BODY32"}
        case "DX_CHEST":
            return {"dap_total_gy_cm2": 0.08 * f, "dose_rp_mgy": 0.3 * f}
        case "RF_UPPER_GI":  # fluoroscopy 1.2 + acquisition 0.8 Gy·cm² (× f), reference point likewise
            return {"dap_total_gy_cm2": 2.0 * f, "fluoro_dap_gy_cm2": 1.2 * f, "acquisition_dap_gy_cm2": 0.8 * f,
                    "dose_rp_mgy": 20.0 * f, "fluoro_dose_rp_mgy": 12.0 * f, "acquisition_dose_rp_mgy": 8.0 * f,
                    "fluoro_time_s": 180.0 * f}
        case "MG_SCREENING":
            return {"agd_max_breast_mgy": 1.5 * f, "agd_left_mgy": 1.4 * f, "agd_right_mgy": 1.5 * f}
    return {}


def build_events() -> list[object]:
    """One day of hospital-a (07:00–15:00 UTC, some exams still running at NOW) plus the peers' CT heads."""
    events: list[object] = []
    seq = 0
    for dev in DEVICES:
        coil = None
        prev_end: datetime | None = None
        step = timedelta(minutes=480 // dev.exams)
        for k in range(dev.exams):
            seq += 1
            key = f"{SITE}-{dev.station}-{k}"
            exam_type = dev.exam_types[k % len(dev.exam_types)]
            start = datetime(DAY.year, DAY.month, DAY.day, 7, 0, tzinfo=UTC) + k * step
            duration = step * 0.6
            end = start + duration
            last = k == dev.exams - 1
            status = "in_progress" if last else "complete"
            events.append(Exam(
                exam_key=key, site_id=SITE, version=2, status=status, updated_at=end + timedelta(minutes=3),
                edge_id="edge-1", device_id=f"dev-{dev.station}", modality=dev.modality, station_name=dev.station,
                study_description=exam_type.replace("_", " "), patient_pseudonym=f"pat-{seq}",
                start_utc=start, end_utc=end, duration_s=duration.total_seconds(), series_count=2,
                instance_count=20, first_received_at=start + timedelta(seconds=30),
                last_received_at=end + timedelta(seconds=30), has_dose_report=dev.modality == "CT",
                exam_type=exam_type, exam_type_rule="test",
            ))  # fmt: skip
            new_coil = ("HEAD" if exam_type == "MR_BRAIN" else "KNEE") if dev.modality == "MR" else None
            events.append(ExamTiming(
                exam_key=key, site_id=SITE, version=2, updated_at=end, device=dev.station, modality=dev.modality,
                exam_type=exam_type, local_date=DAY, hour_local=start.hour, start_utc=start, end_utc=end,
                duration_s=duration.total_seconds(), timing_source="IMAGES", coil=new_coil, previous_coil=coil,
                changeover_s=(start - prev_end).total_seconds() if prev_end else None,
                coil_changed=(coil != new_coil) if dev.modality == "MR" and prev_end else None,
                arrival_to_start_s=600.0 + 60 * (k % 5), arrival_kind="HL7", order_to_start_s=86400.0,
            ))  # fmt: skip
            coil, prev_end = new_coil, end
            if dev.modality in ("CT", "DX", "MG", "RF") and not last:
                events.append(ExamDose(
                    exam_key=key, site_id=SITE, version=2, updated_at=end + timedelta(minutes=3), source="REPORT",
                    device_id=f"dev-{dev.station}", station_name=dev.station, modality=dev.modality,
                    exam_type=exam_type, start_utc=start, report_count=1, event_count=2, **_dose(exam_type, k),
                ))  # fmt: skip
            events.append(WorkflowEvent(
                event_id=f"wf-{key}", site_id=SITE, edge_id="edge-1", source="HL7", kind="arrival",
                received_at=start - timedelta(minutes=10), occurred_at=start - timedelta(minutes=10),
                modality=dev.modality, station_name=dev.station, message_type="ADT^A10",
            ))  # fmt: skip
            for i in range(2):
                received = (NOW - timedelta(minutes=2 + i)) if last else start + timedelta(minutes=1 + i)
                events.append(InstanceEvent(
                    event_id=f"ev-{key}-{i}", site_id=SITE, edge_id="edge-1", received_at=received,
                    calling_ae=dev.station, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1", instance_pseudonym=f"ins-{key}-{i}",
                    study_pseudonym=key, device_id=f"dev-{dev.station}", modality=dev.modality,
                    station_name=dev.station, acquisition_datetime_utc=start + timedelta(minutes=i),
                    exposure=Exposure(ctdivol_mgy=10.0) if dev.modality == "CT" else None,
                    dose_report=DoseReport(kind="CT", totals=AccumulatedDose(ct_dlp_total_mgy_cm=300.0))
                    if dev.modality == "CT" and i == 1 else None,
                ))  # fmt: skip
        events.extend(_kpis(dev))
    events.extend(_alerts())
    events.extend(_heartbeats())
    for site in PEERS:  # ≥ 5 sites × ≥ 20 exams for the k-anonymous benchmark
        for k in range(20):
            start = datetime(DAY.year, DAY.month, DAY.day, 8, tzinfo=UTC) + timedelta(minutes=10 * k)
            events.append(ExamDose(
                exam_key=f"{site}-{k}", site_id=site, version=1, updated_at=start, source="REPORT",
                station_name="CT", modality="CT", exam_type="CT_HEAD", start_utc=start,
                ctdivol_max_mgy=30.0 + PEERS.index(site) * 3 + k % 4, dlp_total_mgy_cm=600.0 + 25 * PEERS.index(site),
            ))  # fmt: skip
    return events


def _kpis(dev: Device) -> list[DeviceKpi]:
    common = {"site_id": SITE, "device": dev.station, "version": 1, "updated_at": NOW, "modality": dev.modality}
    mr = dev.modality == "MR"
    out = [DeviceKpi(
        grain="day", local_date=DAY, hour_local=-1, exams=dev.exams, busy_minutes=290.0, operating_minutes=600.0,
        changeover_minutes=80.0, idle_minutes=230.0, utilization_pct=48.3,
        changeover_p50_s=480.0, changeover_p90_s=900.0, coil_changes=4 if mr else 0,
        coil_batching_minutes_saved=18.5 if mr else None, **common,
    )]  # fmt: skip
    for day, hour in ((DAY - timedelta(days=k), h) for k in range(7) for h in range(24)):
        open_ = 7 <= hour < 17  # a week of every hour, so the hour × weekday heatmap has no empty row or column
        out.append(DeviceKpi(
            grain="hour", local_date=day, hour_local=hour, exams=2 if open_ else 0,
            busy_minutes=30.0 if open_ else 0.0, operating_minutes=60.0 if open_ else 0.0,
            idle_minutes=22.0 if open_ else 0.0, changeover_minutes=8.0 if open_ else 0.0,
            utilization_pct=50.0 + hour if open_ else 0.0, **common,
        ))  # fmt: skip
    return out


def _alerts() -> list[object]:
    """Two CT head exceedances on the latest exam version: one reviewed, one new (five minutes before NOW)."""
    out: list[object] = []
    for k, created in ((6, NOW - timedelta(hours=3)), (13, NOW - timedelta(minutes=5))):
        key = f"{SITE}-CT1-{k}"
        out.append(DoseAlert(
            alert_id=f"al-{k}", exam_key=key, site_id=SITE, exam_version=2, created_at=created, quantity="CTDIVOL",
            value=60.0, unit="mGy", drl_value=47.0, ratio=60 / 47, drl_table="UK-NDRL-2022", drl_source="UKHSA",
            exam_type="CT_HEAD", device_id="dev-CT1", station_name="CT1", modality="CT", phantom="HEAD16",
            accession_token=f"tok-{k}",
        ))  # fmt: skip
    return out  # the review of al-6 has no event class: fill() inserts its dose_reviews row


def _heartbeats() -> list[EdgeHeartbeat]:
    """edge-1 every 5 min all day (spool growing for the last 30 min); edge-2 silent since NOW − 1 h."""
    out = []
    started = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    for edge, stop in (("edge-1", NOW), ("edge-2", NOW - timedelta(hours=1))):
        t, n = started, 0
        while t <= stop:
            n += 1
            spool = max(0, int((t - (NOW - timedelta(minutes=30))).total_seconds() // 60)) if edge == "edge-1" else 0
            out.append(EdgeHeartbeat(
                site_id=SITE, edge_id=edge, at=t, started_at=started, received=10 * n, produced=10 * n - spool,
                spooled=spool, drained=0, ignored=n // 10, rejected=n // 50, out_of_resources=0,
                spool_pending=spool, spool_bytes=spool * 2048, kafka_ok=spool == 0,
            ))  # fmt: skip
            t += timedelta(minutes=5)
    return out


def fill(db: Database) -> None:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for obj in build_events():
        for table, rows in rows_for(obj):
            tables.setdefault(table, []).extend(rows)
    for table, rows in tables.items():
        db.insert(table, rows, COLUMNS[table])
    loaded = NOW - timedelta(days=30)
    db.insert(
        "drl_values",
        [(t, e, q, v, u, p, "EXAM", "adult", "P75", "test", 2022, loaded) for t, e, q, v, u, p in DRL],
        ("table_id", "exam_type", "quantity", "value", "unit", "phantom", "per", "population", "percentile",
         "source", "year", "loaded_at"),
    )  # fmt: skip
    db.insert(
        "dose_reviews",
        [("al-6", SITE, NOW - timedelta(hours=2), "physicist-1", "justified", "large patient")],
        ("alert_id", "site_id", "reviewed_at", "reviewer", "verdict", "comment"),
    )


@pytest.fixture(scope="module")
def filled(chdb_root: Path) -> Iterator[Database]:
    name = "dash_" + uuid.uuid4().hex[:10]
    db = connect(f"chdb://{chdb_root}?database={name}")
    migrate(db)
    fill(db)
    yield db
    db.command(f"DROP DATABASE IF EXISTS {name}")
    db.close()


WEEK_QUERIES = {"utilization.hour_weekday"}  # a column per weekday: they run over the week up to NOW


def run(db: Database, query: panels.Query, variables: dict[str, Selection], interval_s: float = 300.0):
    start = RANGE[0] - timedelta(days=6) if query.name in WEEK_QUERIES else RANGE[0]
    sql = expand(query.sql, QueryContext(start, RANGE[1], interval_s, variables))
    try:
        return db.query(sql, readonly=True)
    except Exception as exc:  # show the SQL ClickHouse got, not just the engine's message
        raise AssertionError(f"{query.name} failed:\n{sql}\n→ {exc}") from exc


def options(db: Database, var: str, variables: dict[str, Selection]) -> tuple[str, ...]:
    result = run(db, panels.VARIABLE_QUERIES[var], variables)
    return tuple(str(r[0]) for r in result.rows)


@pytest.fixture(scope="module")
def all_selected(filled: Database) -> dict[str, Selection]:
    """Every variable at its default, All, with the options its query returns (what Grafana would expand)."""
    chosen: dict[str, Selection] = {}
    for var in panels.VARIABLES:  # in dashboard order: each may depend on the ones before
        chosen[var] = Selection.everything(options(filled, var, chosen))
    return chosen


def _is_null(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def check(query: panels.Query, result: Any) -> None:
    assert result.columns == query.columns, f"{query.name}: columns {result.columns}, expected {query.columns}"
    assert result.rows, f"{query.name}: no rows"
    for i, col in enumerate(result.columns):
        assert any(not _is_null(r[i]) for r in result.rows), f"{query.name}: column {col} is NULL in every row"


# --------------------------------------------------------------------------------------------------------- tests
def test_variable_queries_list_the_data(filled: Database, all_selected: dict[str, Selection]) -> None:
    assert all_selected["site"].options == (SITE,)  # peers only contribute exam_dose rows to the benchmark
    assert set(all_selected["device"].options) >= {d.station for d in DEVICES}
    assert set(all_selected["modality"].options) == {"CT", "MR", "DX", "MG", "RF"}
    assert "CT_HEAD" in all_selected["exam_type"].options
    narrowed = options(filled, "device", {"site": Selection.of(SITE), "modality": Selection.of("MR")})
    assert narrowed == ("MR1",)


@pytest.mark.parametrize("name", [q.name for q in panels.DASHBOARD_QUERIES])
def test_panel_query_with_all_selected(filled: Database, all_selected: dict[str, Selection], name: str) -> None:
    query = panels.QUERIES[name]
    variables = dict(all_selected)
    if name.startswith("benchmark."):  # its site variable is single-value: "this site" needs one
        variables["site"] = Selection.of(SITE, multi=False)
    check(query, run(filled, query, variables))


@pytest.mark.parametrize("name", [q.name for q in panels.DASHBOARD_QUERIES])
def test_panel_query_with_values_selected(filled: Database, name: str) -> None:
    """Selected values become IN lists that ClickHouse accepts; the columns stay the same (rows may be none, so
    the columns come from DESCRIBE: an empty result carries no column names through the driver)."""
    variables = {
        "site": Selection.of(SITE),
        "modality": Selection.of("CT", "MR"),
        "device": Selection.of("CT1", "MR1"),
        "exam_type": Selection.of("CT_HEAD", "MR_BRAIN"),
    }
    query = panels.QUERIES[name]
    run(filled, query, variables)  # executes
    sql = expand(query.sql, QueryContext(RANGE[0], RANGE[1], 300.0, variables))
    described = tuple(str(r[0]) for r in filled.query(f"DESCRIBE ({sql})", readonly=True).rows)
    assert described == query.columns


def test_device_filter_filters(filled: Database, all_selected: dict[str, Selection]) -> None:
    query = panels.QUERIES["overview.exams_today_per_device"]
    everything = {r[0]: r[1] for r in run(filled, query, all_selected).rows}
    assert everything == {d.station: d.exams for d in DEVICES}
    one = run(filled, query, {**all_selected, "device": Selection.of("MR1")})
    assert one.rows == [("MR1", 8)]


def test_overview_numbers(filled: Database, all_selected: dict[str, Selection]) -> None:
    def value(name: str) -> Any:
        return run(filled, panels.QUERIES[name], all_selected).rows[0][0]

    assert value("overview.open_exceedances") == 1  # al-13; al-6 was reviewed
    assert value("overview.exams_in_progress") == len(DEVICES)  # each device's last exam
    assert value("overview.ingest_rate") == 2 * len(DEVICES) / 5  # 2 instances per device in the last 5 minutes
    assert 0 < value("overview.ct_within_drl_today") < 100
    assert 10 <= value("overview.mean_wait_now") <= 14


def test_hour_by_weekday_rows_are_hours_and_columns_weekdays(filled: Database,
                                                             all_selected: dict[str, Selection]) -> None:
    result = run(filled, panels.QUERIES["utilization.hour_weekday"], all_selected)
    rows = {r[0]: r[1:] for r in result.rows}
    assert sorted(rows) == list(range(24))
    assert rows[10] == (60.0,) * 7 and rows[3] == (0.0,) * 7  # every device: 50 + hour when open, 0 when closed


def test_exceedance_table_shows_review_status(filled: Database, all_selected: dict[str, Selection]) -> None:
    result = run(filled, panels.QUERIES["dose.exceedances"], all_selected)
    review = {r[result.columns.index("accession_token")]: r[result.columns.index("review")] for r in result.rows}
    assert review == {"tok-6": "justified", "tok-13": "open"}


def test_local_drl_is_p75_of_device_medians(filled: Database, all_selected: dict[str, Selection]) -> None:
    result = run(filled, panels.QUERIES["dose.local_vs_national"], all_selected)
    rows = {(r[0], r[1]): dict(zip(result.columns, r, strict=True)) for r in result.rows}
    head = rows[("CT_HEAD", "CTDIVOL")]
    assert head["devices"] == 2 + len(PEERS)  # CT1, CT2 (12 heads each) and each peer's one CT (20 each)
    assert head["national_drl"] == 47.0
    # per (site, device) medians, then the 75th percentile with linear interpolation (ICRP 135, streams/drl.py)
    from streams.drl import percentile_linear

    medians = []
    for _device in ("CT1", "CT2"):  # the same head doses on both
        values = sorted(40 * (0.5 + (k % 7) / 10) for k in range(18) if k % 3 != 2 and k != 17)
        medians.append(percentile_linear(values, 50))
    for site in range(len(PEERS)):
        medians.append(percentile_linear(sorted(30.0 + site * 3 + k % 4 for k in range(20)), 50))
    assert head["local_drl"] == round(percentile_linear(medians, 75), 2)


def test_benchmark_shows_only_peer_labels(filled: Database, all_selected: dict[str, Selection]) -> None:
    variables = {**all_selected, "site": Selection.of(SITE, multi=False)}
    for name in ("benchmark.this_site_vs_peers", "benchmark.peers"):
        result = run(filled, panels.QUERIES[name], variables)
        assert "site_id" not in result.columns
        flat = {str(v) for r in result.rows for v in r}
        assert not flat & {SITE, *PEERS}, f"{name} leaks a site id"
    peers = run(filled, panels.QUERIES["benchmark.peers"], variables)
    roles = [r[peers.columns.index("role")] for r in peers.rows if r[1] == "CTDIVOL"]
    assert roles.count("this site") == 1 and roles.count("peer") == 5


# (site, device) pairs each rule should fire for at NOW, given the data above
EXPECTED_FIRING = {
    "alert.drl_exceedance": {(SITE, "CT1")},  # al-13, five minutes ago
    "alert.edge_silent": {(SITE, "edge-2")},  # silent for an hour
    "alert.spool_growing": {(SITE, "edge-1")},  # +1 event a minute for 30 minutes
    "alert.consumer_lag": set(),  # newest instance 2 min behind the edge: under the 5 min threshold
    "alert.patient_cumulative_dose": set(),  # one exam per patient, all under the thresholds
}


@pytest.mark.parametrize("rule", alerts.RULES, ids=lambda r: r.uid)
def test_alert_rule_query(filled: Database, rule: alerts.Rule) -> None:
    """Evaluated as Grafana would at NOW: the rule's relative range, no dashboard variables."""
    query = panels.QUERIES[rule.query]
    ctx = QueryContext(NOW - timedelta(seconds=rule.window_s), NOW, 1.0, {})
    result = filled.query(expand(query.sql, ctx), readonly=True)
    check(query, result)
    firing = {(r[0], r[1]) for r in result.rows if rule.fires(r[3])}
    assert firing == EXPECTED_FIRING[rule.query], f"{rule.query}: {result.rows}"
    assert {r[2] for r in result.rows} <= set(alerts.departments())


def test_cluster_ddl_parses(filled: Database) -> None:
    from sinks.cluster_ddl import cluster_ddl, statements

    ddl = cluster_ddl("radpulse_cluster")
    parsed = 0
    for stmt in statements(ddl):
        literal = "'" + stmt.replace("\\", "\\\\").replace("'", "\\'") + "'"
        formatted = filled.query(f"SELECT formatQuerySingleLine({literal})").rows[0][0]
        assert formatted.startswith("INSERT") or "ON CLUSTER radpulse_cluster" in formatted, formatted
        parsed += 1
    assert parsed > 20


def test_fluoroscopy_share_of_dap(filled: Database, all_selected: dict[str, Selection]) -> None:
    result = run(filled, panels.QUERIES["dose.fluoro_acquisition"], all_selected)
    [row] = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    # three complete RF exams (k = 0, 1, 2: f = 0.5, 0.6, 0.7): fluoro DAP 1.2 f → median 0.72; share 1.2 / 2 = 60 %
    assert (row["type"], row["exams"], row["fluoro_dap_p50"], row["fluoro_share_pct"]) == ("RF_UPPER_GI", 3, 0.72, 60)
    assert row["acquisition_rp_p50"] == 4.8 and row["fluoro_min_p50"] == 1.8  # 8 × 0.6; 180 s × 0.6 = 108 s
