"""`radpulse sql`, `radpulse sink` and `radpulse clickhouse migrate`. Heavy imports wait until a command runs."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import threading

from schemas.config import load_settings

log = logging.getLogger("radpulse.sinks")


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("sql", help="run one read-only query (through a running sink's endpoint, else directly)")
    q.add_argument("query", help='e.g. "SELECT modality, count() FROM exams_latest GROUP BY modality"')
    q.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output (default: table)")
    q.set_defaults(func=run_sql)

    s = sub.add_parser("sink", help="consume events from Kafka into ClickHouse and serve the read-only SQL endpoint")
    s.add_argument("--bootstrap", help="Kafka bootstrap servers (default: [kafka] bootstrap_servers)")
    s.set_defaults(func=run_sink)

    c = sub.add_parser("clickhouse", help="ClickHouse schema maintenance")
    actions = c.add_subparsers(dest="clickhouse_action", metavar="ACTION", required=True)
    m = actions.add_parser("migrate", help="apply pending migrations to [clickhouse] url (a rerun is a no-op)")
    m.set_defaults(func=run_migrate)


def _fail(exc: Exception, code: int = 1) -> int:
    print(f"radpulse: {exc}", file=sys.stderr)
    return code


def run_sql(args: argparse.Namespace) -> int:
    from sinks.errors import RefusedQuery, SinkError
    from sinks.sql import open_query

    settings = load_settings(args.config)
    try:
        with open_query(settings, args.query) as answer:
            if args.format == "json":  # one JSON document, written row by row as they arrive
                head = json.dumps({"columns": answer.columns, "types": answer.types}, ensure_ascii=False)
                sys.stdout.write(head[:-1] + ', "rows": [')
                for i, row in enumerate(answer.rows):
                    sys.stdout.write(("," if i else "") + json.dumps(row, ensure_ascii=False))
                sys.stdout.write("]}\n")
            elif args.format == "csv":
                out = csv.writer(sys.stdout)
                out.writerow(answer.columns)
                for row in answer.rows:
                    out.writerow(["" if v is None else json.dumps(v) if isinstance(v, list | dict) else v for v in row])
            else:
                _print_table(answer.columns, answer.types, list(answer.rows))
    except RefusedQuery as exc:
        return _fail(exc, 2)
    except SinkError as exc:
        return _fail(exc)
    return 0


def _print_table(columns: list[str], types: list[str], rows: list[list[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, caption=f"{len(rows)} row{'s' if len(rows) != 1 else ''}", caption_justify="left")
    numeric = [t.removeprefix("Nullable(").startswith(("Int", "UInt", "Float", "Decimal")) for t in types]
    for col, is_num in zip(table.columns, numeric, strict=True):
        col.justify = "right" if is_num else "left"
    for row in rows:
        table.add_row(*("[dim]NULL[/dim]" if v is None else _escape(v) for v in row))
    Console().print(table)


def _escape(value: object) -> str:
    from rich.markup import escape

    return escape(json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value))


def run_migrate(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.errors import SinkError
    from sinks.migrate import applied, migrate

    settings = load_settings(args.config)
    try:
        db = connect(settings.clickhouse.url)
        try:
            new = migrate(db)
            versions = applied(db)
        finally:
            db.close()
    except SinkError as exc:
        return _fail(exc)
    done = ", ".join(f"{v:04d}_{name}" for v, (name, _) in sorted(versions.items()))
    print(f"{'applied ' + ', '.join(m.filename for m in new) if new else 'nothing to apply'}; schema is at: {done}")
    return 0


def run_sink(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.errors import SinkError
    from sinks.migrate import migrate
    from sinks.query_server import QueryServer
    from sinks.sql import ensure_token, read_limits, token_path
    from sinks.writer import SinkWriter

    env = dict(os.environ)
    if args.bootstrap:
        env["RADPULSE_KAFKA__BOOTSTRAP_SERVERS"] = args.bootstrap
    settings = load_settings(args.config, env=env)
    for line in settings.masked_lines():
        log.info("settings %s", line)
    try:
        db = connect(settings.clickhouse.url)
        migrate(db)
    except SinkError as exc:
        return _fail(exc)
    try:
        token = ensure_token(token_path(settings))
        log.info("SQL endpoint token: %s (0600; `radpulse sql` and `radpulse review` read it)", token_path(settings))
        # the endpoint's own clients: a dashboard query never holds up an insert; a server URL reads as the reader
        reader = connect(settings.clickhouse.reader_url) if settings.clickhouse.reader_url else db.reopen()
    except SinkError as exc:
        db.close()
        return _fail(exc)
    try:
        server = QueryServer(reader, settings.clickhouse.query_port, token=token,
                             concurrency=settings.clickhouse.query_concurrency, limits=read_limits(settings),
                             writer=db.reopen()).start()
    except (OSError, SinkError) as exc:
        reader.close()
        db.close()
        if isinstance(exc, SinkError):
            return _fail(exc)
        return _fail(
            f"cannot listen on 127.0.0.1:{settings.clickhouse.query_port} ({exc.strerror}); set [clickhouse] "
            "query_port / RADPULSE_CLICKHOUSE__QUERY_PORT to a free port (0 = any)"
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    writer = SinkWriter(settings, db)
    log.info("sink: Kafka %s → %s", settings.kafka.bootstrap_servers, db.describe())
    try:
        writer.run(stop)
    finally:
        server.stop()
        server.db.close()
        server.writer.close()
        db.close()
    log.info("sink stopped: %s", writer.status())
    return 0
