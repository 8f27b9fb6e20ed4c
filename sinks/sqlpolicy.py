"""What the read-only SQL endpoint may read, decided on ClickHouse's own parse of the query (``EXPLAIN AST``).

chDB is ClickHouse *local*: it ignores ``user_files_path`` (``SELECT file('/etc/passwd')`` reads the file even with
``readonly=1`` and ``?user_files_path=`` on the connection, measured with chdb 4.4) and has no users to grant to. So
before a statement runs, the engine parses it (``EXPLAIN AST`` only parses: no table, file or URL is touched) and
every node of that tree is checked against allow-lists:

- node kinds: SELECT / UNION / INTERSECT / EXCEPT, subqueries, CTEs, joins, DESCRIBE, SHOW TABLES, EXPLAIN; no
  SETTINGS clause of the caller's own (the one ``SETTINGS readonly = 1`` is ours);
- functions: those in ``system.functions`` whose category computes on values (arithmetic, strings, dates, arrays,
  aggregates, …) plus a few listed "Other" ones; never ``file``, ``dictGet*``, ``joinGet``, ``hasColumnInTable``,
  ``ai*``, introspection, or a table function outside ``numbers``/``zeros``/``values``/``generate_series``/``format``;
- tables: the connection's own database and the ``system`` tables in ``SYSTEM_TABLES``. Any name with a database
  part that is not ours (``system.users``, ``default.t``, ``x IN system.grants``) is refused.

Every check is per line of the tree, so text injected through an alias (which ClickHouse prints raw) can only add
lines that are themselves checked, never hide one. Against a ClickHouse server the reader user's grants and
``user_files_path`` enforce the same (``infra/clickhouse/``); this check runs there too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sinks.errors import RefusedQuery

# system tables a query may read: constants, the function list and radpulse's own schema
SYSTEM_TABLES = frozenset({"one", "numbers", "numbers_mt", "zeros", "zeros_mt", "functions", "tables", "columns"})
# table functions that only generate or parse values given in the query
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series",
                             "generateSeries", "format"})
# system.functions categories whose functions compute on their arguments only
SAFE_CATEGORIES = frozenset({
    "Aggregate Functions", "Type Conversion", "Dates and Times", "Arrays", "String", "Geo", "Hash", "String Search",
    "JSON", "Mathematical", "URL", "Arithmetic", "Geo Polygon", "Map", "IP Address", "Comparison", "Tuple",
    "Time Series", "Distance", "Random Number", "Bitmap", "NumericIndexedVector", "Bit", "Encoding", "UUID",
    "String Splitting", "String Replacement", "Null", "Rounding", "Time Window", "Encryption", "Conditional",
    "Logical", "Financial", "QBit",
})
# category "Other" mixes pure helpers with functions that read files, tables, the host or settings: these are pure
SAFE_OTHER = frozenset({
    "bar", "blockSize", "byteSize", "countDigits", "currentDatabase", "defaultValueOfArgumentType",
    "defaultValueOfTypeName", "digits", "dumpColumnStructure", "errorCodeToName", "finalizeAggregation",
    "formatReadableDecimalSize", "formatReadableQuantity", "formatReadableSize", "formatReadableTimeDelta",
    "getSizeOfEnumType", "getSubcolumn", "identity", "ignore", "indexHint", "initializeAggregation", "isConstant",
    "isDecimalOverflow", "lowCardinalityIndices", "lowCardinalityKeys", "materialize", "minSampleSizeContinuous",
    "minSampleSizeConversion", "neighbor", "parseISO8601Duration", "parseReadableSize", "parseReadableSizeOrNull",
    "parseReadableSizeOrZero", "parseTimeDelta", "rowNumberInAllBlocks", "rowNumberInBlock", "blockNumber",
    "runningAccumulate", "runningDifference", "runningDifferenceStartingWithFirstValue", "sleep", "sleepEachRow",
    "throwIf", "toColumnTypeName", "toTypeName", "transform", "variantElement", "variantType", "version",
    "visibleWidth", "MACNumToString", "MACStringToNum", "MACStringToOUI",
})
# operators the parser writes as functions that system.functions does not list
SYNTAX_FUNCTIONS = frozenset({"lambda", "tuple", "array", "in", "notIn", "globalIn", "globalNotIn", "nullIn",
                              "notNullIn", "globalNullIn", "globalNotNullIn", "tupleElement", "arrayElement",
                              "exists", "grouping", "caseWithExpression"})  # EXISTS (…), GROUPING(…), CASE x WHEN
AGGREGATE_SUFFIXES = ("If", "Array", "Map", "State", "Merge", "MergeState", "ForEach", "OrDefault", "OrNull",
                      "Resample", "Distinct", "SimpleState", "ArgMin", "ArgMax")
NODE_KINDS = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ExpressionList", "Function", "Identifier",
    "Literal", "Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher",
    "QualifiedColumnsRegexpMatcher", "QualifiedColumnsListMatcher", "ColumnsTransformerList",
    "ColumnsExceptTransformer", "ColumnsReplaceTransformer", "ColumnsApplyTransformer",
    "ColumnsReplaceTransformerReplacement", "TablesInSelectQuery", "TablesInSelectQueryElement", "TableExpression",
    "TableIdentifier", "TableJoin", "ArrayJoin", "Subquery", "WithElement", "OrderByElement", "WindowListElement",
    "WindowDefinition", "SampleRatio", "InterpolateElement", "DescribeQuery", "ShowTables", "Explain", "Set",
})
_LINE = re.compile(r"(?P<indent> *)(?P<kind>[A-Za-z]+)(?: (?P<rest>.*))?")
_NAME_END = re.compile(r" \((?:alias |children )")
_WHAT = "the SQL endpoint reads radpulse's tables and views with functions that compute on values (README: Security)"


@dataclass(frozen=True)
class Policy:
    """Names the engine knows, sorted into allowed and not; built once per engine with ``load_policy``."""

    database: str
    databases: frozenset[str]  # every database the engine has, to tell "db.table" from "alias.column"
    functions_exact: frozenset[str]  # allowed, case-sensitive names
    functions_ci: frozenset[str]  # allowed, case-insensitive names (lowercase)
    aggregates: frozenset[str]  # allowed aggregate functions, for -If/-State/... combinators
    table_functions_ci: frozenset[str]  # every table function the engine has (lowercase)
    local_tables: frozenset[str] = frozenset()  # tables and views of radpulse's database (parameterized views)


def build_policy(database: str, databases: Iterable[str], functions: Iterable[tuple[str, str, str, int, int]],
                 table_functions: Iterable[str]) -> Policy:
    """``functions``: rows of system.functions (name, alias_to, categories, is_aggregate, case_insensitive)."""
    rows = list(functions)
    category = {name: cats for name, _, cats, _, _ in rows}

    def allowed(name: str, alias_to: str, cats: str) -> bool:
        target, target_cats = (alias_to, category.get(alias_to, "")) if alias_to else (name, cats)
        return target in SAFE_OTHER or any(c.strip() in SAFE_CATEGORIES for c in target_cats.split(",") if c.strip())

    ok = [(name, agg, ci) for name, alias_to, cats, agg, ci in rows if allowed(name, alias_to, cats)]
    tables = frozenset(t.lower() for t in table_functions)
    banned_tables = tables - {t.lower() for t in TABLE_FUNCTIONS}
    exact = frozenset({n for n, _, ci in ok if not ci} | SYNTAX_FUNCTIONS | TABLE_FUNCTIONS)
    return Policy(
        database=database,
        databases=frozenset(databases),
        functions_exact=frozenset(n for n in exact if n.lower() not in banned_tables),
        functions_ci=frozenset(n.lower() for n, _, ci in ok if ci and n.lower() not in banned_tables),
        aggregates=frozenset(n for n, agg, _ in ok if agg),
        table_functions_ci=tables,
    )


def _function_ok(policy: Policy, name: str) -> bool:
    if name.lower() in policy.table_functions_ci and name not in TABLE_FUNCTIONS:
        return False  # file, url, remote, s3, … however it is spelled or wherever it stands
    if name in policy.local_tables:
        return True  # a parameterized view of radpulse's own database, e.g. patient_cumulative_dose(window_days=14)
    if name in policy.functions_exact or name.lower() in policy.functions_ci:
        return True
    base = name
    while True:  # sumIf, uniqExactState, quantilesMergeIf, …: combinators on an allowed aggregate
        suffix = next((s for s in sorted(AGGREGATE_SUFFIXES, key=len, reverse=True)
                       if base.endswith(s) and len(base) > len(s)), None)
        if suffix is None:
            return False
        base = base[: -len(suffix)]
        if base in policy.aggregates or base.lower() in {a.lower() for a in policy.aggregates}:
            return True


def _name(rest: str) -> str:
    """The node's name: ``file (alias a) (children 1)`` → ``file``."""
    cut = _NAME_END.search(rest)
    return (rest[: cut.start()] if cut else rest).strip()


def _table_ok(policy: Policy, parts: list[str], is_table: bool) -> str | None:
    """Why a (possibly qualified) name is refused, or None. ``parts`` is the name split at dots."""
    if len(parts) < 2:
        return None  # unqualified: a table of our database, a CTE or a column
    db = parts[0]
    if db == policy.database:
        return None
    if db == "system" and parts[1] in SYSTEM_TABLES:
        return None
    if is_table or db in policy.databases or db.lower() in ("system", "information_schema"):
        return f"refused: {'.'.join(parts[:2])} is outside radpulse's database {policy.database}"
    return None  # alias.column


def check_ast(policy: Policy, ast_lines: Iterable[str]) -> None:
    """Raise ``RefusedQuery`` unless every line of ``EXPLAIN AST`` output is allowed by ``policy``."""
    sets = 0
    for raw in ast_lines:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        m = _LINE.fullmatch(line)
        kind = m["kind"] if m else ""
        if kind not in NODE_KINDS:
            shown = kind or line.strip()[:40]
            raise RefusedQuery(f"refused: the query uses {shown}, which is not allowed; {_WHAT}")
        rest = (m["rest"] or "") if m else ""
        if kind == "Set":
            sets += 1
            if sets > 1:
                raise RefusedQuery("refused: a query may not carry a SETTINGS clause; the endpoint sets the limits")
        elif kind == "Function":
            name = _name(rest)
            if not _function_ok(policy, name):
                raise RefusedQuery(f"refused: function {name}() is not allowed; {_WHAT}")
        elif kind in ("TableIdentifier", "Identifier"):
            why = _table_ok(policy, _name(rest).replace("`", "").split("."), kind == "TableIdentifier")
            if why:
                raise RefusedQuery(f"{why}; {_WHAT}")
