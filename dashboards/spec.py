"""Dashboard pieces built with Grafana's own typed builders (``grafana-foundation-sdk``): panels, variables,
ClickHouse targets and the dashboard envelope. Pure: every function returns an SDK builder or model.

The SDK ships no ClickHouse query type, so ``ClickHouseQuery`` is one: a ``Dataquery`` variant with the ClickHouse
plugin's query model (``editorType``/``format``/``queryType``/``rawSql``), registered with the SDK's runtime so
``Dashboard.from_json`` decodes our targets back into it. ``to_json`` encodes a dashboard with the SDK's encoder;
the JSON follows the schema version of the pinned SDK (Grafana 11.6; newer Grafana migrates it on load).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Self

from grafana_foundation_sdk.builders import barchart as sdk_barchart
from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale

from dashboards.panels import VARIABLE_QUERIES, Query

PLUGIN_ID = "grafana-clickhouse-datasource"
DATASOURCE_UID = "radpulse-clickhouse"
DATASOURCE_NAME = "radpulse ClickHouse"
DATASOURCE: dict[str, str] = {"type": PLUGIN_ID, "uid": DATASOURCE_UID}
FOLDER_UID = "radpulse"
FOLDER_TITLE = "radpulse"
TAGS = ["radpulse"]
GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"

Json = dict[str, Any]
Dashboard = builders.Dashboard


def datasource_ref() -> models.DataSourceRef:
    return models.DataSourceRef(type_val=PLUGIN_ID, uid=DATASOURCE_UID)


# ---------------------------------------------------------------------------------------------- ClickHouse query
class ClickHouseQuery(cogvariants.Dataquery):
    """The ClickHouse plugin's SQL query; format 1 = table, 0 = time series (long rows become one series per label)."""

    def __init__(self, ref_id: str = "A", raw_sql: str = "", fmt: int = 1, query_type: str = "table",
                 editor_type: str = "sql", datasource: models.DataSourceRef | None = None,
                 interval_ms: int | None = None, max_data_points: int | None = None) -> None:
        self.ref_id, self.raw_sql, self.fmt, self.query_type = ref_id, raw_sql, fmt, query_type
        self.editor_type, self.datasource = editor_type, datasource
        self.interval_ms, self.max_data_points = interval_ms, max_data_points

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id}
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        payload |= {"editorType": self.editor_type, "format": self.fmt, "queryType": self.query_type,
                    "rawSql": self.raw_sql}
        if self.interval_ms is not None:
            payload["intervalMs"] = self.interval_ms
        if self.max_data_points is not None:
            payload["maxDataPoints"] = self.max_data_points
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(ref_id=data.get("refId", "A"), raw_sql=data.get("rawSql", ""), fmt=data.get("format", 1),
                   query_type=data.get("queryType", "table"), editor_type=data.get("editorType", "sql"),
                   datasource=models.DataSourceRef.from_json(ds) if ds is not None else None,
                   interval_ms=data.get("intervalMs"), max_data_points=data.get("maxDataPoints"))


cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(identifier=PLUGIN_ID,
                                                                 from_json_hook=ClickHouseQuery.from_json))


class SqlTarget(cogbuilder.Builder[ClickHouseQuery]):
    """A ``panels.py`` query as a ClickHouse target of our data source."""

    def __init__(self, query: Query, ref_id: str = "A") -> None:
        timeseries_ = query.format == "timeseries"
        self._internal = ClickHouseQuery(ref_id=ref_id, raw_sql=query.sql, fmt=0 if timeseries_ else 1,
                                         query_type="timeseries" if timeseries_ else "table",
                                         datasource=datasource_ref())

    def build(self) -> ClickHouseQuery:
        return self._internal

    def interval_ms(self, interval_ms: int) -> Self:
        self._internal.interval_ms = interval_ms
        return self

    def max_data_points(self, max_data_points: int) -> Self:
        self._internal.max_data_points = max_data_points
        return self


def target(query: Query, ref_id: str = "A") -> SqlTarget:
    return SqlTarget(query, ref_id)


# ------------------------------------------------------------------------------------------------------ pieces
def thresholds(*steps: tuple[float | None, str]) -> builders.ThresholdsConfig:
    return builders.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(
        [models.Threshold(value=v, color=c) for v, c in steps])


def grid(x: int, y: int, w: int, h: int) -> models.GridPos:
    return models.GridPos(h=h, w=w, x=x, y=y)


def override(field: str, *properties: tuple[str, object]) -> Json:
    """A by-name field override in Grafana's JSON shape: ``(property id, value)`` pairs, e.g. ``("unit", "s")``."""
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": k, "value": v} for k, v in properties]}


def color_override(field: str, color: str) -> Json:
    return override(field, ("color", {"mode": "fixed", "fixedColor": color}))


def unit_override(field: str, unit: str) -> Json:
    return override(field, ("unit", unit))


def _built(value: object) -> object:
    return value.build() if isinstance(value, cogbuilder.Builder) else value


def _color(mode: models.FieldColorModeId) -> builders.FieldColor:
    return builders.FieldColor().mode(mode)


def _legend() -> common_builders.VizLegendOptions:
    return (common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM).show_legend(True))


def _tooltip(sort: common.SortOrder) -> common_builders.VizTooltipOptions:
    return common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(sort)


def _reduce(per_row: bool) -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().values(per_row).calcs(["lastNotNull"]).fields("")


PanelBuilder = Any  # each SDK panel module has its own Panel builder class with the shared methods


def _panel(panel: PanelBuilder, title: str, queries: Sequence[Query], pos: models.GridPos, description: str,
           overrides: Sequence[Json] | None = None) -> PanelBuilder:
    panel.title(title).description(description).datasource(datasource_ref()).grid_pos(pos)
    panel.targets([SqlTarget(q, chr(ord("A") + i)) for i, q in enumerate(queries)])
    for o in overrides or ():
        panel.with_override(models.MatcherConfig(id_val=o["matcher"]["id"], options=o["matcher"]["options"]),
                            [models.DynamicConfigValue(id_val=p["id"], value=_built(p["value"]))
                             for p in o["properties"]])
    return panel


# ------------------------------------------------------------------------------------------------------ panels
def stat(title: str, query: Query, pos: models.GridPos, *, unit: str, steps: builders.ThresholdsConfig,
               description: str = "", per_row: bool = False, decimals: int | None = None) -> sdk_stat.Panel:
    """Big numbers; ``per_row`` shows one number per row, named by the row's text column."""
    p = _panel(sdk_stat.Panel(), title, [query], pos, description)
    p.unit(unit).color_scheme(_color(models.FieldColorModeId.THRESHOLDS)).thresholds(steps).no_value("–")
    if decimals is not None:
        p.decimals(decimals)
    return (p.reduce_options(_reduce(per_row)).color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE).justify_mode(common.BigValueJustifyMode.CENTER)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME if per_row else common.BigValueTextMode.VALUE)
            .orientation(common.VizOrientation.AUTO).wide_layout(True).show_percent_change(False))


def timeseries(title: str, queries: Sequence[Query], pos: models.GridPos, *, unit: str, description: str = "",
                     interval: str | None = None, bars: bool = False,
                     steps: builders.ThresholdsConfig | None = None) -> sdk_timeseries.Panel:
    p = _panel(sdk_timeseries.Panel(), title, queries, pos, description)
    p.unit(unit).color_scheme(_color(models.FieldColorModeId.PALETTE_CLASSIC))
    p.draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE).line_width(2)
    p.fill_opacity(60 if bars else 10).show_points(common.VisibilityMode.AUTO).span_nulls(False).axis_soft_min(0)
    if steps is not None:
        p.thresholds(steps).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE))
    if interval:
        p.interval(interval)  # the smallest $__interval this panel asks for
    return p.legend(_legend()).tooltip(_tooltip(common.SortOrder.DESCENDING))


CELL_TYPES: dict[str, Any] = {  # the table cell types panels ask for by name
    "auto": common.TableAutoCellOptions,
    "color-background": common.TableColoredBackgroundCellOptions,
    "color-text": common.TableColorTextCellOptions,
}


def table(title: str, query: Query, pos: models.GridPos, *, description: str = "",
          overrides: Sequence[Json] | None = None, unit: str = "none", cell: str = "auto",
          steps: builders.ThresholdsConfig | None = None) -> sdk_table.Panel:
    if cell not in CELL_TYPES:
        raise ValueError(f"table {title!r}: cell={cell!r}; expected one of {sorted(CELL_TYPES)}")
    p = _panel(sdk_table.Panel(), title, [query], pos, description, overrides)
    p.unit(unit).align(common.FieldTextAlignment.AUTO).cell_options(CELL_TYPES[cell]())
    if steps is not None:
        p.thresholds(steps).color_scheme(_color(models.FieldColorModeId.THRESHOLDS))
    footer = common_builders.TableFooterOptions().show(False).reducer(["sum"]).fields("")
    return p.show_header(True).cell_height(common.TableCellHeight.SM).footer(footer)


def barchart(title: str, query: Query, pos: models.GridPos, *, x: str, unit: str, description: str = "",
                   stacked: bool = False, horizontal: bool = True,
                   overrides: Sequence[Json] | None = None) -> sdk_barchart.Panel:
    p = _panel(sdk_barchart.Panel(), title, [query], pos, description, overrides)
    p.unit(unit).color_scheme(_color(models.FieldColorModeId.PALETTE_CLASSIC)).fill_opacity(80).line_width(1)
    p.x_field(x).orientation(common.VizOrientation.HORIZONTAL if horizontal else common.VizOrientation.VERTICAL)
    p.stacking(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
    p.show_value(common.VisibilityMode.AUTO).group_width(0.7).bar_width(0.9)
    return p.legend(_legend()).tooltip(_tooltip(common.SortOrder.NONE))


def bargauge(title: str, query: Query, pos: models.GridPos, *, unit: str, steps: builders.ThresholdsConfig,
                   description: str = "") -> sdk_bargauge.Panel:
    p = _panel(sdk_bargauge.Panel(), title, [query], pos, description)
    p.unit(unit).thresholds(steps).color_scheme(_color(models.FieldColorModeId.THRESHOLDS)).min(0)
    p.reduce_options(_reduce(True)).orientation(common.VizOrientation.HORIZONTAL)
    p.display_mode(common.BarGaugeDisplayMode.GRADIENT).show_unfilled(True)
    return (p.value_mode(common.BarGaugeValueMode.COLOR).name_placement(common.BarGaugeNamePlacement.AUTO)
            .sizing(common.BarGaugeSizing.AUTO))


def heatmap(title: str, query: Query, pos: models.GridPos, *, unit: str, value: str, low: float, high: float,
                  description: str = "") -> sdk_heatmap.Panel:
    """A pre-bucketed heatmap: the first column is x (numeric or time), every other column one y row, named by
    the column (``rowsFrame``); colours run red (low) → green (high) from ``low`` to ``high``."""
    p = _panel(sdk_heatmap.Panel(), title, [query], pos, description)
    color = (sdk_heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("RdYlGn").fill("dark-orange")
             .scale(HeatmapColorScale.LINEAR).steps(64).reverse(False).min(low).max(high))
    p.calculate(False).rows_frame(sdk_heatmap.RowsHeatmapOptions().value(value).layout(common.HeatmapCellLayout.AUTO))
    p.color(color).cell_values(sdk_heatmap.CellValues().unit(unit).decimals(0)).show_value(common.VisibilityMode.AUTO)
    p.filter_values(sdk_heatmap.FilterValueRange().le(1e-9))  # hours with no utilization (closed rooms) stay blank
    p.y_axis(sdk_heatmap.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).reverse(True))  # first row on top
    p.cell_gap(2).show_legend().mode(common.TooltipDisplayMode.SINGLE).hide_y_histogram().show_color_scale(False)
    return p


# --------------------------------------------------------------------------------------------------- variables
def variable(name: str, label: str, *, include_all: bool = True, multi: bool = True) -> builders.QueryVariable:
    """A query variable on ``panels.VARIABLE_QUERIES[name]``, refreshed on load and on time change."""
    query = VARIABLE_QUERIES[name]
    v = (builders.QueryVariable(name).label(label).datasource(datasource_ref())
         .query({"refId": f"var-{name}", "queryType": "sql", "editorType": "sql", "rawSql": query.sql})
         .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(include_all).multi(multi)
         .sort(models.VariableSort.ALPHABETICAL_ASC).hide(models.VariableHide.DONT_HIDE).options([]))
    if include_all:
        v.current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
    return v


VARIABLE_LABELS = {"site": "Site", "modality": "Modality", "device": "Device", "exam_type": "Exam type"}


def variables(single_site: bool = False) -> list[builders.QueryVariable]:
    """The four filters in dependency order (modality, device and exam type follow the site)."""
    out = []
    for name, label in VARIABLE_LABELS.items():
        single = single_site and name == "site"
        out.append(variable(name, label, include_all=not single, multi=not single))
    return out


# --------------------------------------------------------------------------------------------------- dashboard
def dashboard(uid: str, title: str, panels: Sequence[PanelBuilder], *, description: str,
              time_from: str = "now-7d", refresh: str = "1m", single_site: bool = False,
              extra_tags: tuple[str, ...] = ()) -> builders.Dashboard:
    """The dashboard envelope: browser time, shared crosshair, ids assigned in panel order."""
    d = (builders.Dashboard(title).uid(uid).description(description).tags([*TAGS, *extra_tags])
         .timezone("browser").editable().tooltip(models.DashboardCursorSync.CROSSHAIR).live_now(False)
         .refresh(refresh).time(time_from, "now")
         .timepicker(builders.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "1h"]))
         .variables(variables(single_site))
         .link(builders.DashboardLink("radpulse").type(models.DashboardLinkType.DASHBOARDS).tags(TAGS)
               .as_dropdown(True).include_vars(True).keep_time(True)))
    for i, p in enumerate(panels, start=1):
        d.with_panel(p.id(i))
    return d


def to_json(obj: cogbuilder.Builder[Any] | Any) -> Json:
    """A builder's (or model's) JSON as Grafana reads it, encoded by the SDK."""
    model = obj.build() if isinstance(obj, cogbuilder.Builder) else obj
    return json.loads(JSONEncoder().encode(model))
