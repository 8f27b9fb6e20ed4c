"""``radpulse sql``: one read-only query, through the sink's loopback endpoint or straight into the database.

Read-only twice over: ``guard`` lets through one SELECT / WITH / SHOW / DESCRIBE / EXPLAIN statement (comments
removed, no write keyword anywhere outside strings, no INTO OUTFILE), and the engine runs it with ClickHouse's
``readonly`` setting plus time, row and memory limits. chDB allows one engine per process, so while ``radpulse
sink``/``up`` owns it the query goes to its endpoint (``query_server.py``) on 127.0.0.1:``[clickhouse] query_port``;
when nothing listens there, this process opens the database itself.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from schemas.config import Settings
from sinks.errors import ClickHouseError, EngineLockedError, RefusedQuery
from sinks.sqltext import LexError, render, split_statements, words

if TYPE_CHECKING:  # the engine is imported only when a query runs here, not for the guard
    from sinks.clickhouse import Database

ALLOWED_FIRST = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN")
# write or admin keywords refused anywhere outside strings and `quoted` names
FORBIDDEN = frozenset(
    "INSERT ALTER DROP CREATE TRUNCATE OPTIMIZE ATTACH DETACH RENAME EXCHANGE GRANT REVOKE DELETE UPDATE KILL "
    "UNDROP BACKUP RESTORE OUTFILE INFILE READONLY".split()
)
# ClickHouse settings for every query radpulse sql runs: the sink shares its process with this engine
READ_LIMITS: dict[str, Any] = {
    "max_execution_time": 60,
    "max_result_rows": 1_000_000,
    "result_overflow_mode": "throw",
    "max_memory_usage": 4_000_000_000,
}
ENDPOINT_HEADER = "X-Radpulse-Sql"  # tells our endpoint from whatever else might listen on the port
_WHAT = "radpulse sql runs one read-only statement (SELECT, WITH, SHOW, DESCRIBE or EXPLAIN)"


def guard(sql: str) -> str:
    """The one read-only statement in ``sql``, comments removed, ready to run; ``RefusedQuery`` otherwise."""
    try:
        statements = split_statements(sql)
    except LexError as exc:
        raise RefusedQuery(f"cannot read the query: {exc}") from None
    if not statements:
        raise RefusedQuery(f"no statement given; {_WHAT}")
    if len(statements) > 1:
        raise RefusedQuery(f"{len(statements)} statements given; {_WHAT}: run them one at a time")
    tokens = statements[0]
    names = words(tokens)
    lead = [t for t in tokens if t.kind != "space" and t.text != "("]  # "(SELECT …) UNION ALL (…)" starts with (
    first = lead[0].upper if lead and lead[0].kind == "word" else (lead[0].text if lead else "")
    if first not in ALLOWED_FIRST:
        raise RefusedQuery(f"refused {first or 'this'} statement: {_WHAT}")
    for i, word in enumerate(names):
        upper = word.upper
        if upper == "CREATE" and first == "SHOW" and i == 1:
            continue  # SHOW CREATE TABLE only reads the definition
        if upper in ("OUTFILE", "INFILE"):
            raise RefusedQuery("refused INTO OUTFILE/FROM INFILE: it touches files; use --format csv and redirect")
        if upper == "READONLY":
            raise RefusedQuery("refused: a query may not change the readonly setting")
        if upper in FORBIDDEN:
            raise RefusedQuery(
                f"refused: the query contains {upper}; {_WHAT}. "
                f"If {word.text} is a column name, quote it: `{word.text}`"
            )
    return render(tokens)


def jsonable(value: Any) -> Any:
    """A query value as JSON: times in ISO 8601, NaN/inf as null, containers as lists, the rest as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # Decimal, UUID, IP addresses


@dataclass(frozen=True)
class Answer:
    """A query's result as JSON-ready values, and where it was answered ("endpoint" or "direct")."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    via: str = "direct"

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "types": self.types, "rows": self.rows}


def run_readonly(db: Database, statement: str) -> Answer:
    """Run a guarded statement with ClickHouse's readonly setting and the limits."""
    result = db.query(statement, readonly=True, settings=READ_LIMITS)
    return Answer(list(result.columns), list(result.types), [[jsonable(v) for v in row] for row in result.rows])


def ask_endpoint(port: int, statement: str, timeout_s: float = 90.0, host: str = "127.0.0.1") -> Answer | None:
    """POST the statement to a running sink's endpoint; ``None`` when nothing listens on the port."""
    request = urllib.request.Request(
        f"http://{host}:{port}/query",
        data=statement.encode(),
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body, is_ours = response.read(), response.headers.get(ENDPOINT_HEADER)
    except urllib.error.HTTPError as exc:
        if not exc.headers.get(ENDPOINT_HEADER):
            raise ClickHouseError(f"127.0.0.1:{port} answered HTTP {exc.code} but is not a radpulse endpoint") from None
        message = json.loads(exc.read() or b"{}").get("error", f"HTTP {exc.code}")
        raise (RefusedQuery if exc.code == 403 else ClickHouseError)(message) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise ClickHouseError(f"query endpoint 127.0.0.1:{port}: {exc.reason}") from None
    if not is_ours:
        raise ClickHouseError(
            f"127.0.0.1:{port} answered, but is not a radpulse endpoint; check [clickhouse] query_port"
        )
    doc = json.loads(body)
    return Answer(doc["columns"], doc["types"], doc["rows"], via="endpoint")


def query(settings: Settings, sql: str) -> Answer:
    """Guard ``sql``, then ask the running sink's endpoint, else open ``[clickhouse] url`` directly."""
    statement = guard(sql)
    port = settings.clickhouse.query_port
    answer = ask_endpoint(port, statement) if port else None
    if answer is not None:
        return answer
    from sinks.clickhouse import connect

    try:
        db = connect(settings.clickhouse.url)
    except EngineLockedError as exc:
        raise EngineLockedError(
            f"{exc} Nothing answers on 127.0.0.1:{port}: does that process use another [clickhouse] query_port "
            "(RADPULSE_CLICKHOUSE__QUERY_PORT)?"
        ) from None
    try:
        return run_readonly(db, statement)
    except ClickHouseError as exc:
        if "UNKNOWN_TABLE" in str(exc) and not db.scalar("EXISTS TABLE schema_migrations"):
            hint = f"{db.describe()} has no radpulse tables: `radpulse clickhouse migrate`"
            raise ClickHouseError(f"{exc} ({hint})") from None
        raise
    finally:
        db.close()
