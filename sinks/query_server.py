"""The read-only SQL endpoint a sink serves on 127.0.0.1 while it owns chDB (one engine per process).

``POST /query`` with the SQL as body → ``{"columns", "types", "rows"}`` (200), ``{"error"}`` with 403 for a refused
statement or 400 for an engine error. ``GET /health`` → ``{"status": "ok", "database": …}``. Every answer carries
the ``X-Radpulse-Sql`` header so ``radpulse sql`` knows it reached us. Loopback only and without authentication, like
a local database socket; no CORS headers, so a web page cannot read the answers.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sinks.clickhouse import Database
from sinks.errors import ClickHouseError, RefusedQuery
from sinks.sql import ENDPOINT_HEADER, guard, run_readonly

log = logging.getLogger("radpulse.sinks.query")

MAX_BODY = 1_000_000  # bytes of SQL


class QueryServer:
    """``ThreadingHTTPServer`` in a daemon thread. Give it a client of its own (``db.reopen()``): calls on one chDB
    client are serialised, and the writer should not wait behind a dashboard query."""

    def __init__(self, db: Database, port: int, host: str = "127.0.0.1") -> None:
        self.db = db
        self._server = ThreadingHTTPServer((host, port), _handler_for(db))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sql-endpoint", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}/query"

    def start(self) -> QueryServer:
        self._thread.start()
        log.info("read-only SQL endpoint listening on %s (%s)", self.address, self.db.describe())
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(db: Database) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "radpulse-sql"

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header(ENDPOINT_HEADER, "1")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "database": db.describe()})
            else:
                self._send(404, {"error": "POST SQL to /query, or GET /health"})

        def do_POST(self) -> None:
            if self.path == "/review":
                self._review()
                return
            if self.path != "/query":
                self._send(404, {"error": "POST SQL to /query"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._send(400, {"error": f"send the SQL as the request body (1–{MAX_BODY} bytes)"})
                return
            sql = self.rfile.read(length).decode("utf-8", "replace")
            try:
                answer = run_readonly(db, guard(sql))
            except RefusedQuery as exc:
                self._send(403, {"error": str(exc)})
                return
            except ClickHouseError as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(200, answer.to_json())

        def _review(self) -> None:
            from sinks.reviews import Review, ReviewError, write_review

            length = int(self.headers.get("Content-Length") or 0)
            try:
                doc = json.loads(self.rfile.read(min(length, MAX_BODY)))
                write_review(db, Review(**{k: str(doc.get(k, "")) for k in
                                           ("alert_id", "site_id", "reviewer", "verdict", "comment")}))
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
