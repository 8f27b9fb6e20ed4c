"""What Grafana and the ClickHouse plugin do to a panel's SQL before ClickHouse sees it, as one pure function.

Used by the tests to run every panel's SQL on chDB exactly as Grafana would send it. Three passes, in Grafana's
order (the plugin's ``applyTemplateVariables``, then its Go backend):

1. ``$__conditionalAll(condition, $var)`` → ``1=1`` when ``$var`` is *All* (or empty), else ``condition``
   (frontend, before variables; ``src/data/CHDatasource.ts`` ``applyConditionalAll``).
2. Template variables: ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``, ``[[var:format]]``; and the
   global time range variables ``${__from}``/``${__to}`` (epoch ms), ``:date``/``:date:iso`` (UTC ISO 8601),
   ``:date:seconds``, ``:date:<custom>`` (YYYY, MM, DD, HH, mm, ss in the *browser's* time zone: the hospital's,
   so ``${__from:date:YYYY-MM-DD}`` is the local day a person means by "today"). Formats
   ``singlequote`` (``'a','b'``, ``'`` → ``\\'``), ``sqlstring`` (``'a','b'``, ``'`` → ``''``), ``doublequote``,
   ``csv``, ``raw``; no format = the plugin's own: several values → ``'a','b'``, one value of a single-value
   variable → as is. *All* without a custom all value expands to every option. Unknown names stay as written.
3. Backend macros (``pkg/macros/macros.go``), arguments split at top-level commas and trimmed:

   ==============================  ===============================================================================
   ``$__timeFilter(c)``            ``c >= toDateTime(FROM) AND c <= toDateTime(TO)`` (unix seconds, no parentheses)
   ``$__timeFilter_ms(c)``         same with ``fromUnixTimestamp64Milli(ms)``
   ``$__dateFilter(c)``            ``c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')`` (UTC dates)
   ``$__dateTimeFilter(d, t)``     ``(date filter on d) AND (time filter on t)``; alias ``$__dt``
   ``$__fromTime`` / ``$__toTime`` ``toDateTime(unix seconds)``; ``_ms`` variants ``fromUnixTimestamp64Milli(ms)``
   ``$__timeInterval(c)``          ``toStartOfInterval(toDateTime(c), INTERVAL n second)``, n = max(interval, 1) s
   ``$__timeInterval_ms(c)``       ``toStartOfInterval(toDateTime64(c, 3), INTERVAL n millisecond)``
   ``$__interval_s``               n
   ==============================  ===============================================================================

Any other ``$__name`` left after the three passes is an error here: Grafana would send it to ClickHouse verbatim.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


class MacroError(ValueError):
    """A macro or variable that Grafana could not expand either (bad arguments, unknown name, bad format)."""


@dataclass(frozen=True)
class Selection:
    """A dashboard variable's current value: some values, or *All* (which expands to ``options``)."""

    values: tuple[str, ...] = ()
    all: bool = False
    options: tuple[str, ...] = ()  # what *All* stands for (the variable query's result)
    multi: bool = True  # a multi-value variable's value is a list even with one element

    @classmethod
    def everything(cls, options: Sequence[str] = ()) -> Selection:
        return cls(all=True, options=tuple(options))

    @classmethod
    def of(cls, *values: str, multi: bool = True) -> Selection:
        return cls(values=tuple(values), multi=multi)

    def current(self) -> tuple[str, ...]:
        return self.options if self.all else self.values


@dataclass(frozen=True)
class QueryContext:
    """The dashboard time range, the panel interval and the variables, as Grafana hands them to a query."""

    time_from: datetime
    time_to: datetime
    interval_s: float = 60.0
    variables: Mapping[str, Selection] | None = None
    browser_timezone: str = "UTC"  # where the dashboard is open: custom date formats of ${__from:date:…} use it

    def __post_init__(self) -> None:
        for t in (self.time_from, self.time_to):
            if t.tzinfo is None:
                raise MacroError(f"{t!r}: time range ends must be timezone-aware (UTC), e.g. datetime(..., tzinfo=UTC)")


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose ``(`` is at ``open_paren`` (split at depth-1 commas) and the index after ``)``."""
    depth, start, args = 0, open_paren + 1, []
    i = open_paren
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
        i += 1
    raise MacroError(f"unbalanced parentheses after {sql[max(0, open_paren - 20) : open_paren + 1]!r}")


_CONDITIONAL_ALL = "$__conditionalAll("
_VAR_IN_ARG = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")  # the plugin's own pattern for the 2nd argument


def apply_conditional_all(sql: str, variables: Mapping[str, Selection]) -> str:
    """Pass 1: replace each ``$__conditionalAll(cond, $var)``, last one first (as the plugin does)."""
    while (at := sql.rfind(_CONDITIONAL_ALL)) != -1:
        args, end = _macro_args(sql, at + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            raise MacroError(f"$__conditionalAll takes (condition, $variable), got {len(args)} argument(s)")
        phrase = args[0]
        m = _VAR_IN_ARG.search(args[1].strip())
        if m and m.group(0) in variables:
            sel = variables[m.group(0)]
            if sel.all or not sel.values:
                phrase = "1=1"
        sql = sql[:at] + phrase + sql[end:]
    return sql


# Grafana's variable syntax (public/app/features/templating/template_srv.ts): $name | [[name:fmt]] | ${name:fmt}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")


def _format(values: tuple[str, ...], fmt: str | None, sel: Selection, name: str) -> str:
    many = sel.multi or sel.all or len(values) != 1
    if fmt is None:  # the plugin's format(): arrays quoted and joined, a plain value as is
        return "'" + "','".join(values) + "'" if many else values[0]
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt in ("csv", "raw"):
        return ",".join(values)
    raise MacroError(f"${{{name}:{fmt}}}: unsupported format; use singlequote, sqlstring, doublequote, csv or raw")


_MOMENT = (("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def time_range_variable(t: datetime, fmt: str | None, browser_timezone: str = "UTC") -> str:
    """``${__from}`` / ``${__to}`` with Grafana's date formats (public/app/features/templating: formatters)."""
    if fmt is None:
        return str(math.floor(t.timestamp() * 1000))
    if fmt in ("date", "date:iso"):
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    if fmt == "date:seconds":
        return str(math.floor(t.timestamp()))
    if fmt.startswith("date:"):
        out = fmt.removeprefix("date:")
        local = t.astimezone(ZoneInfo(browser_timezone))
        for token, code in _MOMENT:
            out = out.replace(token, local.strftime(code))
        return out
    raise MacroError(f"${{__from:{fmt}}}: unsupported format; use date, date:iso, date:seconds or date:<pattern>")


def interpolate_variables(sql: str, variables: Mapping[str, Selection], ctx: QueryContext | None = None) -> str:
    """Pass 2: Grafana's template replacement of the dashboard variables; other ``$names`` stay."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5)
        if ctx is not None and name in ("__from", "__to"):
            return time_range_variable(ctx.time_from if name == "__from" else ctx.time_to, fmt, ctx.browser_timezone)
        if name not in variables:
            return m.group(0)
        sel = variables[name]
        values = sel.current()
        if not values:
            raise MacroError(f"variable {name!r} has no value (All with no options?); Grafana would send ''")
        return _format(values, fmt, sel, name)

    return _VARIABLE.sub(repl, sql)


def _dt(t: datetime) -> str:
    return f"toDateTime({math.floor(t.timestamp())})"


def _dt_ms(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({math.floor(t.timestamp() * 1000)})"


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC).strftime('%Y-%m-%d')}')"


def _one(name: str, args: list[str]) -> str:
    if len(args) != 1 or not args[0]:
        raise MacroError(f"$__{name} takes one column, e.g. $__{name}(start_utc); got {args}")
    return args[0]


def _expand_macro(name: str, args: list[str] | None, ctx: QueryContext) -> str:
    f, t = ctx.time_from, ctx.time_to
    seconds = int(max(ctx.interval_s, 1.0))
    millis = int(max(ctx.interval_s * 1000, 1.0))
    a = [x.strip() for x in args] if args is not None else []
    match name:
        case "fromTime":
            return _dt(f)
        case "toTime":
            return _dt(t)
        case "fromTime_ms":
            return _dt_ms(f)
        case "toTime_ms":
            return _dt_ms(t)
        case "interval_s":
            return str(seconds)
        case "timeFilter":
            c = _one(name, a)
            return f"{c} >= {_dt(f)} AND {c} <= {_dt(t)}"
        case "timeFilter_ms":
            c = _one(name, a)
            return f"{c} >= {_dt_ms(f)} AND {c} <= {_dt_ms(t)}"
        case "dateFilter":
            c = _one(name, a)
            return f"{c} >= {_date(f)} AND {c} <= {_date(t)}"
        case "dateTimeFilter" | "dt":
            if len(a) != 2:
                raise MacroError(f"$__{name} takes (date_column, time_column); got {a}")
            d, c = a
            return f"({d} >= {_date(f)} AND {d} <= {_date(t)}) AND ({c} >= {_dt(f)} AND {c} <= {_dt(t)})"
        case "timeInterval":
            return f"toStartOfInterval(toDateTime({_one(name, a)}), INTERVAL {seconds} second)"
        case "timeInterval_ms":
            return f"toStartOfInterval(toDateTime64({_one(name, a)}, 3), INTERVAL {millis} millisecond)"
    raise MacroError(
        f"$__{name}: not a ClickHouse plugin macro (known: fromTime, toTime, timeFilter, dateFilter, dateTimeFilter, "
        "timeInterval, interval_s and their _ms forms, conditionalAll)"
    )


_MACRO = re.compile(r"\$__(\w+)")


def expand_backend_macros(sql: str, ctx: QueryContext) -> str:
    """Pass 3: the plugin's Go macros; each ``$__name`` must be one of them."""
    out: list[str] = []
    pos = 0
    while (m := _MACRO.search(sql, pos)) is not None:
        out.append(sql[pos : m.start()])
        end = m.end()
        args: list[str] | None = None
        if end < len(sql) and sql[end] == "(":
            args, end = _macro_args(sql, end)
        out.append(_expand_macro(m.group(1), args, ctx))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL ClickHouse receives for ``sql`` under ``ctx``: conditionalAll, variables, then backend macros."""
    variables = ctx.variables or {}
    return expand_backend_macros(interpolate_variables(apply_conditional_all(sql, variables), variables, ctx), ctx)
