"""dashboards: the macro expander, the query catalogue, the generated dashboards and alerting, and push.

Pure, except ``push``: it is exercised against a tiny fake Grafana (``http.server`` on 127.0.0.1, in a thread)
that implements only the endpoints grafana-client calls, so the real client, its URLs and JSON are tested.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from dashboards import alerts, build, panels, spec
from dashboards.macros import (
    MacroError,
    QueryContext,
    Selection,
    apply_conditional_all,
    expand,
    interpolate_variables,
)

T0 = datetime(2024, 3, 1, 8, 0, 0, 250000, tzinfo=UTC)  # 1709280000.25
T1 = datetime(2024, 3, 2, 9, 30, 0, 999000, tzinfo=UTC)  # 1709371800.999
CTX = QueryContext(T0, T1, 300.0, {})
F, T = "toDateTime(1709280000)", "toDateTime(1709371800)"
FMS, TMS = "fromUnixTimestamp64Milli(1709280000250)", "fromUnixTimestamp64Milli(1709371800999)"
DATES = "d >= toDate('2024-03-01') AND d <= toDate('2024-03-02')"


# -------------------------------------------------------------------------------------------------------- macros
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("$__timeFilter(start_utc)", f"start_utc >= {F} AND start_utc <= {T}"),
        ("$__timeFilter_ms(t)", f"t >= {FMS} AND t <= {TMS}"),
        ("$__dateFilter(d)", DATES),
        ("$__dateTimeFilter(d, t)", f"({DATES}) AND (t >= {F} AND t <= {T})"),
        ("$__dt( d , t )", f"({DATES}) AND (t >= {F} AND t <= {T})"),
        ("$__fromTime - $__toTime", f"{F} - {T}"),
        ("$__fromTime_ms/$__toTime_ms", f"{FMS}/{TMS}"),
        ("$__timeInterval(at)", "toStartOfInterval(toDateTime(at), INTERVAL 300 second)"),
        ("$__timeInterval_ms(at)", "toStartOfInterval(toDateTime64(at, 3), INTERVAL 300000 millisecond)"),
        ("x / $__interval_s", "x / 300"),
        ("$__timeFilter(toDateTime(a.b))", f"toDateTime(a.b) >= {F} AND toDateTime(a.b) <= {T}"),
        ("no macros, $1 and '$' stay", "no macros, $1 and '$' stay"),
    ],
)  # fmt: skip
def test_backend_macros(sql: str, expected: str) -> None:
    assert expand(sql, CTX) == expected


def test_time_range_variables_and_local_days() -> None:
    # 16:00 UTC on 5 December → 00:00 on 6 December in Asia/Shanghai; the local day is what a person means
    ctx = QueryContext(datetime(2026, 12, 5, 16, 0, tzinfo=UTC), datetime(2026, 12, 6, 15, 0, tzinfo=UTC),
                       browser_timezone="Asia/Shanghai")
    assert expand(panels.LOCAL_DAYS, ctx) == (
        "local_date >= toDate('2026-12-06') AND local_date <= toDate('2026-12-06')")
    assert expand("$__dateFilter(local_date)", ctx) == (  # the plugin's macro: UTC dates, one day early
        "local_date >= toDate('2026-12-05') AND local_date <= toDate('2026-12-06')")
    assert expand("${__from} ${__from:date} ${__to:date:seconds} $__from", ctx) == (
        "1796486400000 2026-12-05T16:00:00.000Z 1796569200 1796486400000")


def test_local_dates_are_never_compared_with_utc_dates() -> None:
    on_local_date = [q for q in panels.QUERIES.values() if "local_date" in q.sql]
    assert len(on_local_date) >= 6
    for q in on_local_date:
        assert "$__dateFilter(local_date)" not in q.sql, q.name
    assert panels.LOCAL_DAYS in panels.QUERIES["utilization.hour_weekday"].sql


def test_interval_is_at_least_one_second() -> None:
    ctx = QueryContext(T0, T1, 0.2, {})
    assert expand("$__interval_s $__timeInterval(t)", ctx) == "1 toStartOfInterval(toDateTime(t), INTERVAL 1 second)"


@pytest.mark.parametrize("sql", ["$__timeFilter()", "$__timeFilter(a, b)", "$__dt(a)", "$__timeGroup(t, 1m)",
                                 "$__interval", "$__timeFilter(a"])  # fmt: skip
def test_bad_macros_are_errors(sql: str) -> None:
    with pytest.raises(MacroError):
        expand(sql, CTX)


def test_naive_times_are_refused() -> None:
    with pytest.raises(MacroError, match="timezone-aware"):
        QueryContext(datetime(2024, 1, 1), T1)


COND = "$__conditionalAll(station IN (${device:singlequote}), $device)"


def test_conditional_all_on_all_is_1_eq_1() -> None:
    assert apply_conditional_all(f"WHERE {COND} AND x", {"device": Selection.everything(["a"])}) == "WHERE 1=1 AND x"
    assert apply_conditional_all(COND, {"device": Selection.of()}) == "1=1"  # nothing selected counts as All


def test_conditional_all_with_values_keeps_the_condition() -> None:
    out = apply_conditional_all(f"{COND} AND {COND.replace('device', 'site')}", {"device": Selection.of("CT1"),
                                                                                 "site": Selection.everything()})
    assert out == "station IN (${device:singlequote}) AND 1=1"


def test_conditional_all_keeps_condition_for_unknown_variable_and_braced_form() -> None:
    assert apply_conditional_all("$__conditionalAll(a = 1, $nope)", {}) == "a = 1"
    assert apply_conditional_all("$__conditionalAll(f(a, b) > 0, ${v})", {"v": Selection.everything()}) == "1=1"


def test_conditional_all_runs_before_variables() -> None:
    """A value with a comma and a parenthesis must not confuse the macro's argument split."""
    ctx = QueryContext(T0, T1, 60, {"device": Selection.of("CT,1)", "MR'2")})
    assert expand(f"WHERE {COND}", ctx) == "WHERE station IN ('CT,1)','MR\\'2')"


@pytest.mark.parametrize(
    ("sql", "selection", "expected"),
    [
        ("${v:singlequote}", Selection.of("a", "b'c"), "'a','b\\'c'"),
        ("${v:sqlstring}", Selection.of("a", "b'c"), "'a','b''c'"),
        ('${v:doublequote}', Selection.of("a", 'b"c'), '"a","b\\"c"'),
        ("${v:csv}", Selection.of("a", "b"), "a,b"),
        ("${v:raw}", Selection.of("a"), "a"),
        ("[[v:csv]]", Selection.of("a", "b"), "a,b"),
        ("$v", Selection.of("a", "b"), "'a','b'"),  # the plugin's default format quotes lists
        ("${v}", Selection.of("a"), "'a'"),  # a multi-value variable's single value is still a list
        ("$v", Selection.of("a", multi=False), "a"),  # a single-value variable's value is not
        ("${v:singlequote}", Selection.everything(["x", "y"]), "'x','y'"),  # All without allValue: every option
        ("$vv $__interval_s $__timeFilter(v)", Selection.of("a"), "$vv $__interval_s $__timeFilter(v)"),
    ],
)  # fmt: skip
def test_variables(sql: str, selection: Selection, expected: str) -> None:
    assert interpolate_variables(sql, {"v": selection}) == expected


def test_unknown_format_and_empty_all_are_errors() -> None:
    with pytest.raises(MacroError, match="format"):
        interpolate_variables("${v:percentencode}", {"v": Selection.of("a")})
    with pytest.raises(MacroError, match="no value"):
        interpolate_variables("${v:csv}", {"v": Selection.everything([])})


# ------------------------------------------------------------------------------------------------------ queries
ALL = {v: Selection.everything(["x"]) for v in panels.VARIABLES}
SOME = {v: Selection.of("a", "b") for v in panels.VARIABLES}


@pytest.mark.parametrize("query", panels.DASHBOARD_QUERIES, ids=lambda q: q.name)
def test_every_panel_query_honours_every_variable_or_says_why(query: panels.Query) -> None:
    unfiltered = dict(query.unfiltered)
    assert query.uses | set(unfiltered) == set(panels.VARIABLES), f"{query.name}: uses {query.uses}"
    stale = {v for v in query.uses & set(unfiltered) if not unfiltered[v].startswith("partly:")}
    assert not stale, f"{query.name} uses {stale} yet says it cannot"
    assert all(len(why) > 20 for why in unfiltered.values())
    for variables in (ALL, SOME):  # both expand to plain SQL (no $ left but in string literals)
        sql = expand(query.sql, QueryContext(T0, T1, 60, variables))
        assert "$" not in re.sub(r"'[^']*'", "", sql), sql


@pytest.mark.parametrize("query", panels.ALERTS, ids=lambda q: q.name)
def test_alert_queries_need_no_dashboard(query: panels.Query) -> None:
    assert not query.uses
    assert query.columns == panels.ALERT_COLUMNS
    assert "$" not in re.sub(r"'[^']*'", "", expand(query.sql, CTX))


def test_variable_queries_chain_in_dashboard_order() -> None:
    order = list(panels.VARIABLES)
    for name, query in panels.VARIABLE_QUERIES.items():
        assert query.uses <= set(order[: order.index(name)]), f"{name} depends on a later variable"


def test_department_by_device_overrides_the_modality(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "transform(ifNull(m, '')" in panels.department_sql("d", "m")
    monkeypatch.setattr(panels, "DEPARTMENT_BY_DEVICE", {"CATH'2": "cardiology"})
    sql = panels.department_sql("d", "m")
    assert sql.startswith("transform(ifNull(d, ''), ['CATH\\'2'], ['cardiology'], transform(ifNull(m, '')")


# --------------------------------------------------------------------------------------------------- dashboards
DASHBOARDS = build.all_dashboards()
SQL_TO_QUERY = {q.sql: q for q in panels.QUERIES.values()}


def _rect(p: dict[str, Any]) -> tuple[int, int, int, int]:
    g = p["gridPos"]
    return g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]


@pytest.mark.parametrize("dash", DASHBOARDS, ids=lambda d: d["uid"])
def test_dashboard_structure(dash: dict[str, Any]) -> None:
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    rects = [_rect(p) for p in dash["panels"]]
    for i, (x0, y0, x1, y1) in enumerate(rects):
        assert 0 <= x0 < x1 <= 24 and y0 < y1, dash["panels"][i]["title"]
        for j, (a0, b0, a1, b1) in enumerate(rects[:i]):
            assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0, f"{dash['panels'][i]['title']} overlaps panel {j}"
    for p in dash["panels"]:
        assert p["datasource"] == spec.DATASOURCE and p["targets"], p["title"]
        for t in p["targets"]:
            query = SQL_TO_QUERY[t["rawSql"]]  # every target is a catalogue query, so the SQL tests cover it
            assert t["datasource"] == spec.DATASOURCE and t["editorType"] == "sql"
            assert t["format"] == (0 if query.format == "timeseries" else 1)
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == list(panels.VARIABLES)
    for v in dash["templating"]["list"]:
        assert v["query"]["rawSql"] == panels.VARIABLE_QUERIES[v["name"]].sql
        single = dash["uid"] == "radpulse-benchmark" and v["name"] == "site"
        assert v["includeAll"] is not single and v["multi"] is not single
        if not single:
            assert v["current"]["value"] == ["$__all"]


def test_every_catalogue_query_is_on_a_dashboard() -> None:
    shown = {t["rawSql"] for d in DASHBOARDS for p in d["panels"] for t in p["targets"]}
    assert {q.sql for q in panels.DASHBOARD_QUERIES} == shown


def test_overview_is_a_wall_display() -> None:
    ov = next(d for d in DASHBOARDS if d["uid"] == "radpulse-overview")
    assert ov["refresh"] == "10s" and ov["time"]["from"] == "now/d"
    assert {p["type"] for p in ov["panels"]} == {"stat"}
    assert max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in ov["panels"]) <= 28  # ≈ 1080 px in kiosk mode
    for p in ov["panels"]:
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None


@pytest.mark.parametrize("path", sorted((build.ROOT / build.DASHBOARD_DIR).glob("*.json")), ids=lambda p: p.stem)
def test_checked_in_dashboards_load_through_the_sdk_models(path: Any) -> None:
    """Every dashboard file decodes into grafana-foundation-sdk's typed models (panel options by panel type,
    targets as ClickHouse queries) and encodes back to the same JSON: nothing in it is unknown to the SDK."""
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

    register_default_plugins()
    data = json.loads(path.read_text(encoding="utf-8"))
    model = Dashboard.from_json(data)
    assert spec.to_json(model) == data
    assert model.panels and model.templating and model.templating.list_val
    for panel in model.panels:
        assert isinstance(panel, Panel) and panel.targets
        assert not isinstance(panel.options, dict), f"{panel.title}: {panel.type_val} options not typed by the SDK"
        for target in panel.targets:
            assert isinstance(target, spec.ClickHouseQuery), panel.title
            assert target.raw_sql in SQL_TO_QUERY


def test_hour_by_weekday_is_a_heatmap_of_the_weekday_columns() -> None:
    util = next(d for d in DASHBOARDS if d["uid"] == "radpulse-utilization")
    query = panels.QUERIES["utilization.hour_weekday"]
    panel = next(p for p in util["panels"] if p["targets"][0]["rawSql"] == query.sql)
    assert panel["type"] == "heatmap" and panel["options"]["calculate"] is False  # the SQL already buckets
    assert query.columns == ("hour", *panels.WEEKDAY_COLUMNS)


def test_uids_are_unique_and_stable() -> None:
    uids = [d["uid"] for d in DASHBOARDS]
    assert uids == ["radpulse-overview", "radpulse-utilization", "radpulse-dose", "radpulse-benchmark",
                    "radpulse-pipeline"]  # fmt: skip


def test_checked_in_files_are_up_to_date() -> None:
    """dashboards/json and the alerting YAML are what `radpulse dashboards build` writes now."""
    assert build.stale() == [], "run `radpulse dashboards build` and commit the result"


def test_build_writes_and_reports(tmp_path: Any) -> None:
    first = dict(build.write(tmp_path))
    assert set(first.values()) == {"created"}
    assert set(dict(build.write(tmp_path)).values()) == {"unchanged"}
    (tmp_path / "dashboards/json/radpulse-dose.json").write_text("{}")
    assert dict(build.write(tmp_path))[build.DASHBOARD_DIR / "radpulse-dose.json"] == "updated"
    assert json.loads((tmp_path / "dashboards/json/radpulse-dose.json").read_text())["uid"] == "radpulse-dose"


# ------------------------------------------------------------------------------------------------------- alerts
def test_rules_document() -> None:
    doc = alerts.rules_document()
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["title"] for r in rules} == {"New DRL exceedance", "Edge stopped sending", "Edge spool keeps growing",
                                           "Consumer lag over 5 minutes",
                                           "Patient cumulative dose over threshold"}  # fmt: skip
    for g in doc["groups"]:
        assert g["folder"] == spec.FOLDER_TITLE
    for r in rules:
        a, b = r["data"]
        assert a["datasourceUid"] == spec.DATASOURCE_UID and a["model"]["rawSql"] in SQL_TO_QUERY
        assert SQL_TO_QUERY[a["model"]["rawSql"]].columns == panels.ALERT_COLUMNS  # site, device, department labels
        assert b["datasourceUid"] == "__expr__" and b["model"]["expression"] == "A" and r["condition"] == "B"
        assert "$__timeFilter" in a["model"]["rawSql"]  # provisioning keeps query models verbatim


def test_policies_route_every_department_to_a_contact_point() -> None:
    doc = alerts.notifications_document()
    receivers = {c["name"] for c in doc["contactPoints"]}
    types = {r["type"] for c in doc["contactPoints"] for r in c["receivers"]}
    assert types == {"webhook", "email"}
    policy = doc["policies"][0]
    assert policy["receiver"] in receivers
    routed: set[str] = set()
    mutes = {m["name"] for m in doc["muteTimes"]}

    def walk(routes: list[dict[str, Any]]) -> None:
        for route in routes:
            assert route["receiver"] in receivers
            assert set(route.get("mute_time_intervals", [])) <= mutes
            for key, op, value in route.get("object_matchers", []):
                if key == "department" and op == "=":
                    routed.add(value)
            walk(route.get("routes", []))

    walk(policy["routes"])
    assert routed == set(alerts.departments())
    assert policy["routes"][0] == {"receiver": alerts.WEBHOOK, "continue": True}  # the webhook sees everything


# --------------------------------------------------------------------------------------------------------- push
class FakeGrafana:
    """Just the Grafana HTTP API grafana-client uses for push: data sources, folders, dashboards."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [unquote(p) for p in urlparse(path).path.strip("/").split("/")]
        if parts[:1] != ["api"]:
            return 404, {"message": "not found"}
        parts = parts[1:]
        if method != "GET":
            self.writes.append(f"{method} /{'/'.join(parts)}")
        match method, parts:
            case "GET", ["datasources", "uid", uid]:
                ds = self.datasources.get(uid)
                return (200, {**ds, "secureJsonFields": {"password": True}}) if ds else (404, {"message": "nf"})
            case "GET", ["datasources", "name", name]:
                ds = next((d for d in self.datasources.values() if d["name"] == name), None)
                return (200, ds) if ds else (404, {"message": "Data source not found"})
            case "POST", ["datasources"]:
                body.pop("secureJsonData", None)
                self.datasources[body["uid"]] = {**body, "id": len(self.datasources) + 1, "jsonData": body["jsonData"]}
                return 200, {"message": "Datasource added", "datasource": body}
            case "PUT", ["datasources", "uid", uid]:
                body.pop("secureJsonData", None)
                self.datasources[uid] = {**self.datasources[uid], **body}
                return 200, {"message": "Datasource updated"}
            case "GET", ["folders"]:
                return 200, list(self.folders.values())
            case "POST", ["folders"]:
                self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": len(self.folders) + 1}
                return 200, self.folders[body["uid"]]
            case "PUT", ["folders", uid]:
                self.folders[uid]["title"] = body["title"]
                return 200, self.folders[uid]
            case "GET", ["dashboards", "uid", uid]:
                d = self.dashboards.get(uid)
                return (200, d) if d else (404, {"message": "Dashboard not found"})
            case "POST", ["dashboards", "db"]:
                dash = body["dashboard"]
                old = self.dashboards.get(dash["uid"])
                version = old["dashboard"]["version"] + 1 if old else 1
                stored = {**dash, "id": 7, "version": version}  # Grafana adds id and version
                self.dashboards[dash["uid"]] = {"dashboard": stored, "meta": {"folderUid": body["folderUid"]}}
                return 200, {"status": "success", "uid": dash["uid"], "version": version}
        return 404, {"message": f"fake Grafana has no {method} /api/{'/'.join(parts)}"}


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    fake = FakeGrafana("t0ken")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                status, payload = 401, {"message": "Unauthorized"}
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake.lock:
                    status, payload = fake.handle(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def do_PUT(self) -> None:
            self._reply("PUT")

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


def _outcomes(changes: list[Any]) -> dict[str, str]:
    return {f"{c.kind}:{c.name}": c.outcome for c in changes}


def test_push_is_idempotent(grafana: tuple[str, FakeGrafana]) -> None:
    from dashboards.push import ClickHouseTarget, connect, push

    url, fake = grafana
    api = connect(url, "t0ken")
    ch = ClickHouseTarget(password="pw")
    first = _outcomes(push(api, DASHBOARDS, ch))
    assert set(first.values()) == {"created"} and len(first) == 2 + len(DASHBOARDS)
    assert fake.folders[spec.FOLDER_UID]["title"] == spec.FOLDER_TITLE
    assert {m["meta"]["folderUid"] for m in fake.dashboards.values()} == {spec.FOLDER_UID}
    writes = len(fake.writes)

    assert set(_outcomes(push(api, DASHBOARDS, ch)).values()) == {"unchanged"}
    assert len(fake.writes) == writes  # a rerun writes nothing

    changed = [dict(d) for d in DASHBOARDS]
    changed[2] = {**changed[2], "title": changed[2]["title"] + " (new)"}
    third = _outcomes(push(api, changed, ClickHouseTarget(password="pw", host="ch-2")))
    assert third.pop(f"dashboard:{changed[2]['title']}") == "updated"
    assert third.pop(f"datasource:{spec.DATASOURCE_NAME}") == "updated"
    assert set(third.values()) == {"unchanged"}
    assert fake.datasources[spec.DATASOURCE_UID]["jsonData"]["host"] == "ch-2"
    assert fake.dashboards[changed[2]["uid"]]["dashboard"]["version"] == 2


def test_push_refuses_a_data_source_name_held_by_another_uid(grafana: tuple[str, FakeGrafana]) -> None:
    from dashboards.push import ClickHouseTarget, PushError, connect, push_datasource

    url, fake = grafana
    fake.datasources["other"] = {"uid": "other", "name": spec.DATASOURCE_NAME, "type": "x", "jsonData": {}}
    with pytest.raises(PushError, match="already exists with uid 'other'"):
        push_datasource(connect(url, "t0ken"), ClickHouseTarget())


def test_push_reports_a_bad_token(grafana: tuple[str, FakeGrafana]) -> None:
    from dashboards.push import ClickHouseTarget, PushError, connect, push

    url, _ = grafana
    with pytest.raises(PushError, match="token"):
        push(connect(url, "wrong"), DASHBOARDS, ClickHouseTarget())


def test_differs_compares_only_what_we_send() -> None:
    from dashboards.push import differs

    assert not differs({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 2], "d": 3}, "id": 9})
    assert differs({"a": 1}, {"a": 2})
    assert differs({"b": {"c": 1}}, {"b": None})
    assert differs({"panels": [{"x": 1}]}, {"panels": [{"x": 1, "y": 2}]})  # lists must match exactly


# ---------------------------------------------------------------------------------------------------------- cli
def test_cli_registers_build_push_and_clickhouse_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import build_parser, main

    parser = build_parser()
    assert parser.parse_args(["clickhouse", "ddl", "--cluster", "c1"]).cluster == "c1"
    assert parser.parse_args(["clickhouse", "migrate"]).clickhouse_action == "migrate"  # sinks' own still there
    assert parser.parse_args(["dashboards", "push", "--url", "u", "--token", "t"]).url == "u"
    assert main(["dashboards", "build", "--check"]) == 0
    assert main(["clickhouse", "ddl", "--cluster", "c1"]) == 0
    assert "ON CLUSTER c1" in capsys.readouterr().out
    assert main(["clickhouse", "ddl", "--cluster", "bad name"]) == 2
