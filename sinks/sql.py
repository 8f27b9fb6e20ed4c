"""``radpulse sql``: one read-only query, through the sink's loopback endpoint or straight into the database.

What may run is decided in three steps. ``guard`` (lexical) lets through one SELECT / WITH / SHOW / DESCRIBE /
EXPLAIN statement, comments removed, no INTO OUTFILE. ``check`` has the engine parse it (``EXPLAIN AST``) and walks
that tree against the allow-lists of ``sqlpolicy.py``: radpulse's own tables and views, a few ``system`` tables, and
functions that compute on values (no ``file()``, ``url()``, ``remote()``, ``s3()``, dictionaries, …). Then the engine
runs it with ``readonly`` and time, row, byte and memory limits, streaming the rows. chDB allows one engine per
process, so while ``radpulse sink``/``up`` owns it the query goes to its endpoint (``query_server.py``) on
127.0.0.1:``[clickhouse] query_port`` with the token from ``[clickhouse] query_token_file``; when nothing listens
there, this process opens ``[clickhouse] reader_url`` (else ``url``) itself.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.config import Settings
from sinks.errors import ClickHouseError, EndpointAuthError, EngineLockedError, RefusedQuery
from sinks.sqlpolicy import Policy, build_policy, check_ast
from sinks.sqltext import LexError, render, split_statements, words

if TYPE_CHECKING:  # the engine is imported only when a query runs here, not for the guard
    from sinks.clickhouse import Database

BUSY_WAIT_S = 30.0  # how long `radpulse sql` keeps asking an endpoint whose query slots are all busy
ALLOWED_FIRST = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN")
# write or admin keywords refused anywhere outside strings and `quoted` names
FORBIDDEN = frozenset(
    "INSERT ALTER DROP CREATE TRUNCATE OPTIMIZE ATTACH DETACH RENAME EXCHANGE GRANT REVOKE DELETE UPDATE KILL "
    "UNDROP BACKUP RESTORE OUTFILE INFILE READONLY".split()
)
# ClickHouse settings for every query radpulse sql runs (time and row limits come from [clickhouse] settings)
READ_LIMITS: dict[str, Any] = {
    "max_execution_time": 60,
    "max_result_rows": 1_000_000,
    "max_result_bytes": 1_000_000_000,
    "result_overflow_mode": "throw",
    "max_memory_usage": 4_000_000_000,
}
ENDPOINT_HEADER = "X-Radpulse-Sql"  # tells our endpoint from whatever else might listen on the port
TOKEN_FILE = "sql-endpoint.token"
_WHAT = "radpulse sql runs one read-only statement (SELECT, WITH, SHOW, DESCRIBE or EXPLAIN)"


def read_limits(settings: Settings | None = None) -> dict[str, Any]:
    """``READ_LIMITS`` with ``[clickhouse] query_timeout_s`` and ``query_max_rows``."""
    if settings is None:
        return dict(READ_LIMITS)
    ch = settings.clickhouse
    return {**READ_LIMITS, "max_execution_time": max(1, math.ceil(ch.query_timeout_s)),
            "max_result_rows": ch.query_max_rows}


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


# -- the engine's parse: what the statement reads --------------------------------------------------------------
_policies: dict[tuple[str, str], Policy] = {}
_policies_lock = threading.Lock()


def policy_for(db: Database) -> Policy:
    """The allow-lists for this engine and database (function lists read once, databases on every call)."""
    key = (db.target.url, db.database)
    with _policies_lock:
        cached = _policies.get(key)
    if cached is None:
        functions = db.query("SELECT name, alias_to, categories, is_aggregate, case_insensitive FROM system.functions")
        tables = db.query("SELECT name FROM system.table_functions")
        cached = build_policy(db.database, (), functions.rows, (r[0] for r in tables.rows))
        with _policies_lock:
            _policies[key] = cached
    databases = frozenset(str(r[0]) for r in db.query("SELECT name FROM system.databases").rows)
    own = "SELECT name FROM system.tables WHERE database = currentDatabase()"
    local = frozenset(str(r[0]) for r in db.query(own).rows)
    return Policy(**{**cached.__dict__, "databases": databases, "local_tables": local})


def check(db: Database, statement: str) -> None:
    """``RefusedQuery`` unless the engine's parse of ``statement`` reads only what ``sqlpolicy`` allows."""
    policy = policy_for(db)
    # EXPLAIN AST parses without running: no table, file or URL is touched
    ast = [str(row[0]) for row in db.query(f"EXPLAIN AST {statement}", readonly=True).rows]
    check_ast(policy, ast)
    if any(line.lstrip().startswith("ShowTables") for line in ast) and not _show_tables(statement):
        # the engine prints SHOW DATABASES/SETTINGS/MERGES/CLUSTERS/… as ShowTables too: only the plain form reads ours
        raise RefusedQuery("refused: of the SHOW statements only SHOW TABLES [LIKE '…'] [LIMIT n] runs here; "
                           "query system.tables / system.columns for more")


def _show_tables(statement: str) -> bool:
    """``SHOW TABLES`` of the current database, optionally [NOT] [I]LIKE '…' and LIMIT n."""
    upper = [w.upper for w in words(split_statements(statement)[0])]
    return upper[:2] == ["SHOW", "TABLES"] and set(upper[2:]) <= {"NOT", "LIKE", "ILIKE", "LIMIT"}


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


@dataclass
class Rows:
    """A query's result while it streams: columns and types now, rows as they come, in blocks of JSON-ready lists."""

    columns: list[str]
    types: list[str]
    blocks: Iterator[list[list[Any]]]
    via: str = "direct"

    @property
    def rows(self) -> Iterator[list[Any]]:
        for block in self.blocks:
            yield from block


@contextmanager
def stream_readonly(db: Database, statement: str, limits: dict[str, Any] | None = None) -> Iterator[Rows]:
    """Check a guarded statement, then run it read-only with the limits; rows stream block by block."""
    check(db, statement)
    if statement.lstrip("( \n").split(None, 1)[0].upper() in ("SHOW", "DESCRIBE", "DESC", "EXPLAIN"):
        # chDB streams only SELECTs ("Streaming query is not supported"); these answers are small
        result = db.query(statement, readonly=True, settings=limits or READ_LIMITS)
        yield Rows(list(result.columns), list(result.types), iter([[[jsonable(v) for v in r] for r in result.rows]]))
        return
    with db.stream(statement, readonly=True, settings=limits or READ_LIMITS) as (names, types, blocks):
        yield Rows(list(names), list(types), _json_blocks(types, blocks))


_PLAIN_TYPES = ("Int", "UInt", "String", "Bool", "FixedString")  # values JSON takes as they are


def _json_blocks(types: Sequence[str], blocks: Iterator[Sequence[Sequence[Any]]]) -> Iterator[list[list[Any]]]:
    """Blocks of JSON-ready rows; columns whose type JSON takes as is skip ``jsonable``."""
    bare = [t.removeprefix("Nullable(").removeprefix("LowCardinality(").removeprefix("Nullable(") for t in types]
    plain = [b.startswith(_PLAIN_TYPES) and not b.startswith(("Int128", "Int256", "UInt128", "UInt256"))
             for b in bare]
    for block in blocks:
        if all(plain):
            yield [list(row) for row in block]
        else:
            yield [[v if p else jsonable(v) for v, p in zip(row, plain, strict=True)] for row in block]


def run_readonly(db: Database, statement: str, limits: dict[str, Any] | None = None) -> Answer:
    """``stream_readonly``, collected."""
    with stream_readonly(db, statement, limits) as rows:
        return Answer(rows.columns, rows.types, list(rows.rows))


# -- the endpoint's token ----------------------------------------------------------------------------------------
def token_path(settings: Settings) -> Path:
    """``[clickhouse] query_token_file``, else ``sql-endpoint.token`` beside the chDB folder (./radpulse-data/)."""
    ch = settings.clickhouse
    if ch.query_token_file:
        return Path(ch.query_token_file).expanduser().resolve()
    if ch.url.startswith("chdb://"):
        folder = Path(ch.url[len("chdb://") :].partition("?")[0]).expanduser().resolve()
        return folder.parent / TOKEN_FILE
    return Path("radpulse-data", TOKEN_FILE).resolve()


def read_token(path: Path) -> str | None:
    """The token in ``path``; ``None`` if there is none yet. Refuses a file other users can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise EndpointAuthError(
            f"SQL endpoint token {path} can be read by other users (mode {mode & 0o777:o}): `chmod 600 {path}` "
            "([clickhouse] query_token_file)"
        )
    for _ in range(20):  # a sink that created the file this instant may not have written it yet
        token = path.read_text().strip()
        if token:
            return token
        time.sleep(0.05)
    raise EndpointAuthError(f"SQL endpoint token {path} is empty: delete it and restart radpulse sink")


def ensure_token(path: Path) -> str:
    """The token in ``path``, created (random, mode 0600) if missing: the sink calls this at start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = read_token(path)
        assert token is not None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


# -- the client side of the endpoint -----------------------------------------------------------------------------
def _endpoint_request(port: int, path: str, body: bytes, content_type: str, token: str | None,
                      host: str = "127.0.0.1") -> urllib.request.Request:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(f"http://{host}:{port}{path}", data=body, method="POST", headers=headers)


def _retry_after(exc: urllib.error.HTTPError) -> float:
    """Seconds the endpoint asks a busy caller to wait (its ``Retry-After``; 1 s when it names none)."""
    try:
        return min(max(float(exc.headers.get("Retry-After") or 1), 0.1), 30.0)
    except ValueError:
        return 1.0


def _refusal(exc: urllib.error.HTTPError, port: int, token_file: Path | None) -> Exception:
    """The exception for an error answer from a radpulse endpoint."""
    try:
        message = json.loads(exc.read() or b"{}").get("error", f"HTTP {exc.code}")
    except ValueError:
        message = f"HTTP {exc.code}"
    if exc.code == 401:
        where = f" in {token_file}" if token_file else ""
        return EndpointAuthError(
            f"the SQL endpoint on 127.0.0.1:{port} refused the token{where}: {message}. Run as the user that runs "
            "radpulse sink, or point [clickhouse] query_token_file at its token"
        )
    return (RefusedQuery if exc.code == 403 else ClickHouseError)(message)


@contextmanager
def open_endpoint(port: int, statement: str, token: str | None = None, timeout_s: float = 90.0,
                  host: str = "127.0.0.1", token_file: Path | None = None,
                  busy_wait_s: float = BUSY_WAIT_S) -> Iterator[Rows | None]:
    """POST the statement to a running sink's endpoint and stream its answer; ``None`` when nothing listens. An
    endpoint whose query slots are all busy (503) is asked again after its ``Retry-After`` for up to `busy_wait_s`."""
    request = _endpoint_request(port, "/query", statement.encode(), "text/plain; charset=utf-8", token, host)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    deadline = time.monotonic() + busy_wait_s
    while True:
        try:
            response = opener.open(request, timeout=timeout_s)
            break
        except urllib.error.HTTPError as exc:
            if not exc.headers.get(ENDPOINT_HEADER):
                raise ClickHouseError(f"127.0.0.1:{port} answered HTTP {exc.code} but is not a radpulse endpoint"
                                      ) from None
            pause = _retry_after(exc)
            if exc.code == 503 and time.monotonic() + pause < deadline:
                exc.close()
                time.sleep(pause)  # every slot busy (dashboards refreshing): wait as the endpoint asks, then again
                continue
            raise _refusal(exc, port, token_file) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                yield None
                return
            raise ClickHouseError(f"query endpoint 127.0.0.1:{port}: {exc.reason}") from None
    with response:
        if not response.headers.get(ENDPOINT_HEADER):
            raise ClickHouseError(
                f"127.0.0.1:{port} answered, but is not a radpulse endpoint; check [clickhouse] query_port"
            )
        head = json.loads(response.readline().decode() + "]}")
        yield Rows(head["columns"], head["types"], _endpoint_blocks(response, port), via="endpoint")


def _endpoint_blocks(response: Any, port: int) -> Iterator[list[list[Any]]]:
    """Blocks of the streamed document: one line each (``[…], […]``, later ones led by a comma), then the tail
    ``], "complete": true}``."""
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("]"):
            tail = json.loads('{"rows": []' + line[1:])
            if "error" in tail:
                raise ClickHouseError(str(tail["error"]))
            return
        yield json.loads("[" + line.removeprefix(",") + "]")
    raise ClickHouseError(f"the SQL endpoint on 127.0.0.1:{port} ended its answer early (sink stopped?)")


def ask_endpoint(port: int, statement: str, timeout_s: float = 90.0, host: str = "127.0.0.1",
                 token: str | None = None) -> Answer | None:
    """``open_endpoint``, collected."""
    with open_endpoint(port, statement, token, timeout_s, host) as rows:
        return None if rows is None else Answer(rows.columns, rows.types, list(rows.rows), via="endpoint")


# -- radpulse sql ------------------------------------------------------------------------------------------------
@contextmanager
def open_query(settings: Settings, sql: str) -> Iterator[Rows]:
    """Guard ``sql``, then stream it from the running sink's endpoint, else from ``[clickhouse] reader_url``/``url``."""
    statement = guard(sql)
    port = settings.clickhouse.query_port
    if port:
        path = token_path(settings)
        with open_endpoint(port, statement, read_token(path), token_file=path) as rows:
            if rows is not None:
                yield rows
                return
    from sinks.clickhouse import connect

    url = settings.clickhouse.reader_url or settings.clickhouse.url
    try:
        db = connect(url)
    except EngineLockedError as exc:
        raise EngineLockedError(
            f"{exc} Nothing answers on 127.0.0.1:{port}: does that process use another [clickhouse] query_port "
            "(RADPULSE_CLICKHOUSE__QUERY_PORT)?"
        ) from None
    try:
        with stream_readonly(db, statement, read_limits(settings)) as rows:
            yield rows
    except ClickHouseError as exc:
        if "UNKNOWN_TABLE" in str(exc) and not db.scalar("EXISTS TABLE schema_migrations"):
            hint = f"{db.describe()} has no radpulse tables: `radpulse clickhouse migrate`"
            raise ClickHouseError(f"{exc} ({hint})") from None
        raise
    finally:
        db.close()


def query(settings: Settings, sql: str) -> Answer:
    """``open_query``, collected."""
    with open_query(settings, sql) as rows:
        return Answer(rows.columns, rows.types, list(rows.rows), rows.via)
