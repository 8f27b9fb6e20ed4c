"""Grafana dashboard JSON pieces (dashboard, variables, panels, ClickHouse targets) as plain dicts. Pure.

Plain JSON built by Python rather than ``grafana-foundation-sdk``: the SDK installs (PyPI
``grafana-foundation-sdk 10.1.0``) but has no ClickHouse query type, so every target would be a hand-written
``Dataquery`` subclass anyway, and its builders add a dependency for what is a dict per panel. The JSON follows
Grafana's dashboard schema (``schemaVersion`` below) and the ClickHouse plugin's query model
(``editorType``/``format``/``queryType``/``rawSql``).
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import VARIABLE_QUERIES, Query

PLUGIN_ID = "grafana-clickhouse-datasource"
DATASOURCE_UID = "radpulse-clickhouse"
DATASOURCE_NAME = "radpulse ClickHouse"
DATASOURCE: dict[str, str] = {"type": PLUGIN_ID, "uid": DATASOURCE_UID}
FOLDER_UID = "radpulse"
FOLDER_TITLE = "radpulse"
SCHEMA_VERSION = 39
TAGS = ["radpulse"]
GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"

Json = dict[str, Any]


def target(query: Query, ref_id: str = "A") -> Json:
    """A ClickHouse plugin SQL target; format 1 = table, 0 = time series (long rows become one series per label)."""
    timeseries = query.format == "timeseries"
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "editorType": "sql",
        "format": 0 if timeseries else 1,
        "queryType": "timeseries" if timeseries else "table",
        "rawSql": query.sql,
    }


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def grid(x: int, y: int, w: int, h: int) -> Json:
    return {"x": x, "y": y, "w": w, "h": h}


def _panel(kind: str, title: str, queries: list[Query], pos: Json, description: str, **extra: Any) -> Json:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "targets": [target(q, chr(ord("A") + i)) for i, q in enumerate(queries)],
        **extra,
    }


def stat(title: str, query: Query, pos: Json, *, unit: str, steps: Json, description: str = "",
         per_row: bool = False, decimals: int | None = None) -> Json:
    """Big numbers; ``per_row`` shows one number per row, named by the row's text column."""
    defaults: Json = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": steps, "noValue": "–"}
    if decimals is not None:
        defaults["decimals"] = decimals
    return _panel("stat", title, [query], pos, description,
                  fieldConfig={"defaults": defaults, "overrides": []},
                  options={
                      "reduceOptions": {"values": per_row, "calcs": ["lastNotNull"], "fields": ""},
                      "colorMode": "background", "graphMode": "none", "justifyMode": "center",
                      "textMode": "value_and_name" if per_row else "value", "orientation": "auto",
                      "wideLayout": True, "showPercentChange": False,
                  })  # fmt: skip


def timeseries(title: str, queries: list[Query], pos: Json, *, unit: str, description: str = "",
               interval: str | None = None, bars: bool = False, steps: Json | None = None) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line", "lineWidth": 2, "fillOpacity": 60 if bars else 10,
        "showPoints": "auto", "spanNulls": False, "axisSoftMin": 0,
    }  # fmt: skip
    defaults: Json = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if steps is not None:
        defaults["thresholds"] = steps
        custom["thresholdsStyle"] = {"mode": "line"}
    extra: Json = {"fieldConfig": {"defaults": defaults, "overrides": []},
                   "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                               "tooltip": {"mode": "multi", "sort": "desc"}}}  # fmt: skip
    if interval:
        extra["interval"] = interval  # the smallest $__interval this panel asks for
    return _panel("timeseries", title, queries, pos, description, **extra)


def table(title: str, query: Query, pos: Json, *, description: str = "", overrides: list[Json] | None = None,
          unit: str = "none", cell: str = "auto", steps: Json | None = None) -> Json:
    defaults: Json = {"unit": unit, "custom": {"align": "auto", "cellOptions": {"type": cell}}}
    if steps is not None:
        defaults["thresholds"] = steps
        defaults["color"] = {"mode": "thresholds"}
    return _panel("table", title, [query], pos, description,
                  fieldConfig={"defaults": defaults, "overrides": overrides or []},
                  options={"showHeader": True, "cellHeight": "sm",
                           "footer": {"show": False, "reducer": ["sum"], "fields": ""}})  # fmt: skip


def barchart(title: str, query: Query, pos: Json, *, x: str, unit: str, description: str = "",
             stacked: bool = False, horizontal: bool = True, overrides: list[Json] | None = None) -> Json:
    return _panel("barchart", title, [query], pos, description,
                  fieldConfig={"defaults": {"unit": unit, "color": {"mode": "palette-classic"},
                                            "custom": {"fillOpacity": 80, "lineWidth": 1}},
                               "overrides": overrides or []},
                  options={"xField": x, "orientation": "horizontal" if horizontal else "vertical",
                           "stacking": "normal" if stacked else "none", "showValue": "auto",
                           "groupWidth": 0.7, "barWidth": 0.9,
                           "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "none"}})  # fmt: skip


def bargauge(title: str, query: Query, pos: Json, *, unit: str, steps: Json, description: str = "") -> Json:
    return _panel("bargauge", title, [query], pos, description,
                  fieldConfig={"defaults": {"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"},
                                            "min": 0}, "overrides": []},
                  options={"reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": ""},
                           "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                           "valueMode": "color", "namePlacement": "auto", "sizing": "auto"})  # fmt: skip


def color_override(field: str, color: str) -> Json:
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}  # fmt: skip


def unit_override(field: str, unit: str) -> Json:
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "unit", "value": unit}]}


def variable(name: str, label: str, *, include_all: bool = True, multi: bool = True) -> Json:
    """A query variable on ``panels.VARIABLE_QUERIES[name]``, refreshed on load and on time change."""
    query = VARIABLE_QUERIES[name]
    current: Json = {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {}
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"refId": f"var-{name}", "queryType": "sql", "editorType": "sql", "rawSql": query.sql},
        "definition": query.sql,
        "refresh": 2,
        "includeAll": include_all,
        "multi": multi,
        "current": current,
        "options": [],
        "sort": 1,
        "hide": 0,
    }


VARIABLE_LABELS = {"site": "Site", "modality": "Modality", "device": "Device", "exam_type": "Exam type"}


def variables(single_site: bool = False) -> list[Json]:
    """The four filters in dependency order (modality, device and exam type follow the site)."""
    out = []
    for name, label in VARIABLE_LABELS.items():
        single = single_site and name == "site"
        out.append(variable(name, label, include_all=not single, multi=not single))
    return out


def dashboard(uid: str, title: str, panels: list[Json], *, description: str, time_from: str = "now-7d",
              refresh: str = "1m", single_site: bool = False, extra_tags: tuple[str, ...] = ()) -> Json:
    """The dashboard envelope: dark, UTC-agnostic (browser time), ids assigned in panel order."""
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [*TAGS, *extra_tags],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "liveNow": False,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "style": "dark",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m", "1h"]},
        "templating": {"list": variables(single_site)},
        "annotations": {"list": []},
        "links": [{"title": "radpulse", "type": "dashboards", "tags": TAGS, "asDropdown": True,
                   "includeVars": True, "keepTime": True}],
        "panels": panels,
    }
