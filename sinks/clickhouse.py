"""ClickHouse from one URL: the embedded chDB engine or a ClickHouse server. The only clickhouse-connect import.

URLs (``[clickhouse] url`` / ``RADPULSE_CLICKHOUSE__URL``):

- ``chdb:///abs/path`` or ``chdb://./rel/path``: chDB inside this process; the folder is created if missing.
  ``?database=name`` picks a database, created if missing (default: ``default``).
- ``http(s)://user:password@host:8123/database``: a ClickHouse server (the database must exist).

Where chDB bites (chdb 4.4 through clickhouse-connect 1.12, checked on this machine):

- One engine per process. A second *process* opening the same folder fails with "Error initializing
  EmbeddedServer … Cannot lock file …/status" (→ ``EngineLockedError``). This process opening a *different* folder
  while a client is open fails with "EmbeddedServer already initialized with path" (→ ``EngineConflictError``);
  once every client is closed another folder may be opened. So tests share one folder and use a database each.
- Many clients on the same folder in one process are fine: each has its own handle and ``USE``/``SET`` state, and
  calls on one client are serialised by a lock (so the query endpoint gets its own client, see ``reopen``).
- No async client and no external data.
- Use ``DateTime64(p, 'UTC')``: ``DateTime('tz')`` can lose its zone in Native output. We ask for aware datetimes.
- ``readonly=1`` refuses writes, DDL and table functions, but not ``SELECT … INTO OUTFILE``, which chDB executes
  in-process, nor the scalar ``file()`` (chDB is ClickHouse *local*: no ``user_files_path`` check, no grants):
  ``sinks/sql.py`` refuses the first and ``sinks/sqlpolicy.py`` the second, on the engine's parse of the query.
- The first open in a process costs ≈3.5 s (engine start).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as _DriverError

from sinks.errors import ClickHouseError, ClickHouseUrlError, EngineConflictError, EngineLockedError

log = logging.getLogger("radpulse.sinks.clickhouse")

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_ERROR_CHARS = 600  # engine messages can quote input; keep log lines short


@dataclass(frozen=True)
class Target:
    """Where a URL points: chDB (a folder) or a ClickHouse server (a DSN)."""

    kind: Literal["chdb", "http"]
    url: str
    path: Path | None = None
    database: str | None = None


@dataclass(frozen=True)
class QueryResult:
    """Column names, ClickHouse type names and rows (tuples) of one query."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def mask_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def parse_url(url: str, database: str | None = None) -> Target:
    """Parse ``[clickhouse] url``; ``database`` overrides the one in the URL."""
    where = "[clickhouse] url / RADPULSE_CLICKHOUSE__URL"
    if url.startswith(("http://", "https://")):
        return Target("http", url, None, database)
    if not url.startswith("chdb://"):
        raise ClickHouseUrlError(
            f"{where}={mask_url(url)!r}: expected chdb:///abs/path, chdb://./rel/path or http(s)://user:pw@host:8123/db"
        )
    # parsed by hand: urlparse would read chdb://./rel/path as host "." and database "rel"
    rest, _, query = url[len("chdb://") :].partition("?")
    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - {"database"}
    if unknown:
        raise ClickHouseUrlError(f"{where}={url!r}: unknown parameter(s) {', '.join(sorted(unknown))}; only ?database=")
    if not rest or rest in ("/", "memory", ":memory:"):
        raise ClickHouseUrlError(f"{where}={url!r}: name a folder, e.g. chdb://./radpulse-data/chdb")
    db = database or (params["database"][0] if "database" in params else None) or "default"
    if not _DB_NAME.fullmatch(db):
        raise ClickHouseUrlError(f"{where}: database {db!r}: expected letters, digits and _, e.g. radpulse")
    return Target("chdb", url, Path(rest).expanduser().resolve(), db)


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _engine_message(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:_MAX_ERROR_CHARS]


class Database:
    """One client of one database. Thread-safe for chDB (a lock per client); give each thread its own ``reopen()``."""

    def __init__(self, target: Target, client: Client) -> None:
        self.target = target
        self._client = client
        self._server_readonly: int | None = None

    @property
    def is_chdb(self) -> bool:
        return self.target.kind == "chdb"

    @property
    def database(self) -> str:
        return str(self._client.database or "default")

    def describe(self) -> str:
        """Where this client points, secrets masked (for logs)."""
        where = f"chDB folder {self.target.path}" if self.is_chdb else mask_url(self.target.url)
        return f"{where}, database {self.database}"

    def command(self, sql: str) -> Any:
        try:
            return self._client.command(sql)
        except _DriverError as exc:
            raise ClickHouseError(f"{_first_line(sql)}: {_engine_message(exc)}") from exc

    def _settings(self, readonly: bool, settings: dict[str, Any] | None) -> dict[str, Any] | None:
        if readonly and self._profile_readonly():
            return None  # a read-only server profile holds the limits and refuses setting changes (infra/clickhouse)
        all_settings = dict(settings or {})
        if readonly:
            # chDB applies readonly=1 as a SETTINGS clause; over HTTP the driver sends its own settings with each
            # request, which readonly=1 would reject, so use 2 (settings may change; writes and DDL still refused)
            all_settings["readonly"] = 1 if self.is_chdb else 2
        return all_settings or None

    def _profile_readonly(self) -> bool:
        """A server user whose profile is already read-only (infra/clickhouse reader) may not set readonly again."""
        if self.is_chdb:
            return False
        if self._server_readonly is None:
            try:
                self._server_readonly = int(self._client.query("SELECT getSetting('readonly')").result_rows[0][0])
            except (_DriverError, IndexError, ValueError):
                self._server_readonly = 0
        return self._server_readonly > 0

    def query(self, sql: str, *, readonly: bool = False, settings: dict[str, Any] | None = None) -> QueryResult:
        """Run a query; ``readonly`` adds ClickHouse's own read-only setting to it."""
        try:
            result = self._client.query(sql, settings=self._settings(readonly, settings))
        except _DriverError as exc:
            raise ClickHouseError(_engine_message(exc)) from exc
        types = tuple(t.name for t in result.column_types)
        return QueryResult(tuple(result.column_names), types, list(result.result_rows))

    @contextmanager
    def stream(
        self, sql: str, *, readonly: bool = False, settings: dict[str, Any] | None = None
    ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], Iterator[Sequence[Sequence[Any]]]]]:
        """Run a query whose rows arrive block by block (chDB ``send_query`` / HTTP streaming), never whole in memory.

        Yields (column names, type names, blocks); an engine error before or between blocks is ``ClickHouseError``.
        """
        try:
            with self._client.query_row_block_stream(sql, settings=self._settings(readonly, settings)) as st:
                names = tuple(st.source.column_names)
                types = tuple(t.name for t in st.source.column_types)
                yield names, types, _blocks(st)
        except _DriverError as exc:
            raise ClickHouseError(_engine_message(exc)) from exc

    def scalar(self, sql: str) -> Any:
        rows = self.query(sql).rows
        return rows[0][0] if rows else None

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        try:
            self._client.insert(table, rows, column_names=list(columns))
        except (_DriverError, TypeError, ValueError, OverflowError) as exc:
            # the driver serialises rows itself, so a bad value surfaces as TypeError/ValueError here
            raise ClickHouseError(f"insert into {table} ({len(rows)} rows): {_engine_message(exc)}") from exc

    def reopen(self) -> Database:
        """Another client on the same database (chDB: same folder, so allowed in this process)."""
        return connect(self.target.url, self.database)

    def close(self) -> None:
        self._client.close()


def _blocks(stream: Any) -> Iterator[Sequence[Sequence[Any]]]:
    try:
        yield from stream
    except _DriverError as exc:
        raise ClickHouseError(_engine_message(exc)) from exc


def _first_line(sql: str) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= 80 else line[:77] + "…"


def connect(url: str, database: str | None = None) -> Database:
    """Open the database ``url`` names (``database`` overrides the URL's); chDB folders and databases are created."""
    target = parse_url(url, database)
    if target.kind == "http":
        try:
            client = clickhouse_connect.get_client(
                dsn=url, database=database, tz_mode="aware", autogenerate_session_id=False
            )
        except _DriverError as exc:
            raise ClickHouseError(
                f"cannot reach ClickHouse at {mask_url(url)} ([clickhouse] url / RADPULSE_CLICKHOUSE__URL): "
                f"{_engine_message(exc)}; check host, port, user, password and that the database exists"
            ) from exc
        return Database(target, client)

    assert target.path is not None and target.database is not None
    target.path.mkdir(parents=True, exist_ok=True)
    try:
        client = clickhouse_connect.get_client(interface="chdb", path=str(target.path), tz_mode="aware")
    except _DriverError as exc:
        raise _open_error(target, exc) from exc
    try:
        if target.database != "default":
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(target.database)}")
            client.database = target.database  # applied to this handle with USE on the next call
    except _DriverError as exc:
        client.close()
        raise ClickHouseError(f"cannot create database {target.database}: {_engine_message(exc)}") from exc
    return Database(target, client)


def _open_error(target: Target, exc: BaseException) -> Exception:
    text = str(exc)
    where = "[clickhouse] url / RADPULSE_CLICKHOUSE__URL"
    if "Cannot lock file" in text or "Error initializing EmbeddedServer" in text:
        return EngineLockedError(
            f"chDB folder {target.path} ({where} = {target.url}) is open in another process; chDB allows one engine "
            "per folder. Stop `radpulse up` / `radpulse sink` first, or use `radpulse sql`, which goes through the "
            "read-only endpoint that process serves on 127.0.0.1:[clickhouse] query_port."
        )
    if "already initialized with path" in text:
        return EngineConflictError(
            f"this process already runs chDB on another folder and chDB allows one engine per process; open "
            f"{target.path} from a separate process or use the same {where}. Engine said: {_engine_message(exc)}"
        )
    return ClickHouseError(f"cannot open chDB folder {target.path} ({where}): {_engine_message(exc)}")
