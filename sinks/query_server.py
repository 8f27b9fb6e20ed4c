"""The read-only SQL endpoint a sink serves on 127.0.0.1 while it owns chDB (one engine per process).

Every request carries ``Authorization: Bearer <token>`` (the token file ``sinks.sql.ensure_token`` creates 0600 at
the sink's first start; 401 otherwise); a request with an ``Origin`` header other than our own is refused (403), so
a web page cannot use the endpoint through a browser (CSRF).

``POST /query`` with the SQL as body → 200 and a JSON document streamed a line per engine block, as they come::

    {"columns": […], "types": […], "rows": [
    […], […], …
    ,[…], […], …
    ], "complete": true}

(an engine error after the first line ends it with ``], "error": "…"}``), or ``{"error"}`` with 403 for a refused
statement, 400 for an engine error, 503 when ``[clickhouse] query_concurrency`` queries run and a slot does not free
within ``QUEUE_WAIT_S``. Each query runs on a client of its own from a pool, with the time and row limits of
``sinks.sql.read_limits``. ``POST /review`` (``Content-Type: application/json`` only, else 415) records a verdict.
``GET /health`` → ``{"status": "ok", "database": …}``. Every answer carries ``X-Radpulse-Sql``.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import queue
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sinks.clickhouse import Database
from sinks.errors import ClickHouseError, RefusedQuery
from sinks.sql import ENDPOINT_HEADER, READ_LIMITS, guard, stream_readonly

log = logging.getLogger("radpulse.sinks.query")

MAX_BODY = 1_000_000  # bytes of SQL
QUEUE_WAIT_S = 5.0  # how long a query waits for a free slot before 503
WAITING_PER_SLOT = 4  # requests beyond concurrency × this get 503 at once instead of a thread each
SOCKET_TIMEOUT_S = 30.0  # a client that stops sending its request is dropped


class Busy(Exception):
    """Every query slot is taken."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of clients waits in the backlog instead of retrying SYNs for seconds


class QueryServer:
    """``ThreadingHTTPServer`` in a daemon thread, with a pool of ``concurrency`` clients: ``db`` and
    ``db.reopen()`` copies (calls on one chDB client are serialised, so one slow query would hold up the rest).
    ``writer`` records reviews (default ``db``; give the sink's writer URL when ``db`` is a read-only server user)."""

    def __init__(self, db: Database, port: int, host: str = "127.0.0.1", *, token: str | None = None,
                 concurrency: int = 8, limits: dict[str, Any] | None = None, writer: Database | None = None) -> None:
        self.db = db
        self._own_writer = writer is None
        self.writer = writer or db.reopen()  # a review never waits behind a long query on a pool client
        self.token = token or secrets.token_urlsafe(32)  # without a token file, nobody else can call us
        self.limits = dict(limits or READ_LIMITS)
        self.concurrency = concurrency
        self._extra = [db.reopen() for _ in range(concurrency - 1)]
        self._pool: queue.SimpleQueue[Database] = queue.SimpleQueue()
        for client in (db, *self._extra):
            self._pool.put(client)
        self._admitted = threading.BoundedSemaphore(concurrency * WAITING_PER_SLOT)
        self._server = _Server((host, port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="sql-endpoint", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}/query"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]"))

    def start(self) -> QueryServer:
        self._thread.start()
        log.info("read-only SQL endpoint listening on %s (%s; %d queries at once)", self.address,
                 self.db.describe(), self.concurrency)
        return self

    @contextmanager
    def slot(self) -> Iterator[Database]:
        """A client of the pool for one query; ``Busy`` when none frees within ``QUEUE_WAIT_S``."""
        if not self._admitted.acquire(blocking=False):
            raise Busy
        try:
            try:
                client = self._pool.get(timeout=QUEUE_WAIT_S)
            except queue.Empty:
                raise Busy from None
            try:
                yield client
            finally:
                self._pool.put(client)
        finally:
            self._admitted.release()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        for client in self._extra + ([self.writer] if self._own_writer else []):
            client.close()


def _handler_for(server: QueryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "radpulse-sql"
        timeout = SOCKET_TIMEOUT_S

        def _send(self, status: int, doc: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            body = json.dumps(doc, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header(ENDPOINT_HEADER, "1")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _allowed(self) -> bool:
            """Same-machine callers with the token only; a browser page (any other Origin) never."""
            origin = self.headers.get("Origin")
            if origin is not None and origin not in server.origins:
                self._send(403, {"error": f"cross-origin request from {origin[:80]} refused"})
                return False
            given = self.headers.get("Authorization", "")
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(),
                                                                         server.token.encode())):
                self._send(401, {"error": "missing or wrong token (Authorization: Bearer <[clickhouse] "
                                          "query_token_file>)"}, {"WWW-Authenticate": "Bearer"})
                return False
            return True

        def _body(self) -> bytes | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if not 0 < length <= MAX_BODY:
                self._send(400, {"error": f"send the request as the body (1–{MAX_BODY} bytes)"})
                return None
            return self.rfile.read(length)

        def do_GET(self) -> None:
            if not self._allowed():
                return
            if self.path == "/health":
                self._send(200, {"status": "ok", "database": server.db.describe()})
            else:
                self._send(404, {"error": "POST SQL to /query, or GET /health"})

        def do_POST(self) -> None:
            if not self._allowed():
                return
            if self.path == "/review":
                self._review()
            elif self.path == "/query":
                self._query()
            else:
                self._send(404, {"error": "POST SQL to /query"})

        def _query(self) -> None:
            body = self._body()
            if body is None:
                return
            try:
                statement = guard(body.decode("utf-8", "replace"))
            except RefusedQuery as exc:
                self._send(403, {"error": str(exc)})
                return
            try:
                with server.slot() as client:
                    self._stream(client, statement)
            except Busy:
                self._send(503, {"error": f"{server.concurrency} queries are running; retry in a few seconds "
                                          "([clickhouse] query_concurrency)"}, {"Retry-After": "5"})

        def _stream(self, client: Database, statement: str) -> None:
            started = False
            try:
                with stream_readonly(client, statement, server.limits) as rows:
                    first = next(rows.blocks, None)  # an engine error before any row is still a plain 400
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header(ENDPOINT_HEADER, "1")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    started = True
                    head = json.dumps({"columns": rows.columns, "types": rows.types}, ensure_ascii=False)
                    self.wfile.write(head[:-1].encode() + b', "rows": [\n')
                    lead = b""
                    for block in itertools.chain([first] if first else [], rows.blocks):
                        if block:  # one line per engine block: "[row], [row], …", encoded in one call
                            self.wfile.write(lead + json.dumps(block, ensure_ascii=False)[1:-1].encode() + b"\n")
                            lead = b","
                    self.wfile.write(b'], "complete": true}\n')
            except RefusedQuery as exc:
                self._send(403, {"error": str(exc)})
            except ClickHouseError as exc:
                if not started:
                    self._send(400, {"error": str(exc)})
                else:
                    self.wfile.write(b"], " + json.dumps({"error": str(exc)}, ensure_ascii=False)[1:].encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                log.debug("SQL endpoint client %s went away mid-answer", self.address_string())
            self.close_connection = True

        def _review(self) -> None:
            from sinks.reviews import Review, ReviewError, write_review

            media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if media != "application/json":
                self._send(415, {"error": "send the review as Content-Type: application/json"})
                return
            body = self._body()
            if body is None:
                return
            try:
                doc = json.loads(body)
                if not isinstance(doc, dict):
                    raise ValueError("expected a JSON object")
                review = Review(**{k: str(doc.get(k, "")) for k in
                                   ("alert_id", "site_id", "reviewer", "verdict", "comment")})
                write_review(server.writer, review)
            except (ReviewError, ValueError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
                return
            except ClickHouseError as exc:
                self._send(500, {"error": str(exc)})
                return
            self._send(200, {"status": "recorded"})

        def log_message(self, format: str, *args: Any) -> None:
            # http.server logs every request line to stderr; queries are not logged (they may hold pseudonyms)
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
