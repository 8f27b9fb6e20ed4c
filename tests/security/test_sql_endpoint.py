"""Issue 9, attacks 1 and 6, replayed against a real `radpulse sink` process and its SQL endpoint (real chDB).

Every way tried to read a file (the edge's HMAC key, /etc/passwd), reach the network (url, remote, s3, mysql, …),
run a program or read ``system.*`` must be refused — through HTTP with a valid token and through `radpulse sql` —
while radpulse's own tables, views and every dashboard query still answer. A canary TCP listener stands in for
"somewhere else": no attack may connect to it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboards import panels
from dashboards.macros import QueryContext, Selection, expand
from tests.security.sqlsink import Sink, start_sink

TIMEOUT_S = 5  # the sink's [clickhouse] query_timeout_s here
MAX_ROWS = 100_000  # and query_max_rows
CONCURRENCY = 4


class Canary:
    """A TCP listener that counts connections: an attack that reaches out would show up here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.sock.close()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Sink]:
    s = start_sink(tmp_path_factory.mktemp("sqlsink"), kafka_bootstrap, "sec" + str(time.time_ns())[-8:],
                   query_timeout_s=str(TIMEOUT_S), query_max_rows=str(MAX_ROWS), query_concurrency=str(CONCURRENCY))
    yield s
    assert s.stop() == 0, s.log.read_text()


def attacks(key: Path, port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}"
    return [
        # files: the edge's key, system files, through scalar and table functions
        f"SELECT file('{key}')",
        f"SELECT hex(file('{key}'))",
        "SELECT file('/etc/passwd')",
        "select FILE('/etc/passwd')",
        "SELECT `file`('/etc/passwd')",
        "SELECT /* a */ fiLe(/* b */ '/etc/passwd') -- c",
        "SELECT file('../../../../../../etc/passwd')",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        f"SELECT * FROM file('{key}', 'RawBLOB')",
        "DESCRIBE TABLE file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM sqlite('/etc/passwd', 't')",
        # hidden in subqueries, CTEs, unions, lambdas, EXPLAIN, aliases
        "WITH x AS (SELECT file('/etc/passwd') AS f) SELECT * FROM x",
        "WITH (SELECT file('/etc/passwd')) AS f SELECT f",
        "SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "SELECT (SELECT file('/etc/passwd'))",
        "SELECT 1 UNION ALL SELECT length(file('/etc/passwd'))",
        "SELECT arrayMap(x -> file(x), ['/etc/passwd'])",
        "SELECT count() FROM exams_latest WHERE exam_key IN (SELECT file('/etc/passwd'))",
        "SELECT 1 AS `a\nFunction numbers (children 1)`, file('/etc/passwd')",
        "EXPLAIN SELECT file('/etc/passwd')",
        "EXPLAIN PIPELINE SELECT * FROM file('/etc/passwd', 'LineAsString')",
        # the network and programs
        f"SELECT * FROM url('{url}/x', 'LineAsString')",
        f"DESCRIBE url('{url}/x', 'CSV')",
        f"SELECT * FROM remote('127.0.0.1:{port}', system.one)",
        f"SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
        "SELECT * FROM cluster('default', system.one)",
        f"SELECT * FROM s3('{url}/bucket/key', 'CSV')",
        f"SELECT * FROM mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
        f"SELECT * FROM postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
        f"SELECT * FROM hdfs('hdfs://127.0.0.1:{port}/x', 'CSV')",
        "SELECT * FROM jdbc('jdbc:mysql://127.0.0.1/db', 't')",
        "SELECT * FROM odbc('DSN=x', 't')",
        "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'x String')",
        "SELECT * FROM input('x String')",
        f"SELECT hasColumnInTable('127.0.0.1:{port}', 'system', 'one', 'dummy')",
        # system tables, other databases, dictionaries, server facts
        "SELECT * FROM system.users",
        "SELECT * FROM system.grants",
        "SELECT * FROM system.processes",
        "SELECT * FROM system.settings",
        "SELECT * FROM SYSTEM.USERS",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM INFORMATION_SCHEMA.TABLES",
        "SELECT 1 WHERE 'x' IN system.users",
        "SELECT * FROM merge('system', '^users$')",
        "SELECT * FROM view(SELECT file('/etc/passwd'))",
        "SELECT dictGet('d', 'a', toUInt64(1))",
        "SELECT joinGet('j', 'a', 1)",
        "SELECT getServerSetting('user_files_path')",
        "SELECT filesystemAvailable()",
        "SELECT catboostEvaluate('/etc/passwd', 1)",
        "SHOW PROCESSLIST",
        "SHOW SETTINGS LIKE '%path%'",
        "SHOW TABLES FROM system",
        "SHOW CREATE TABLE system.users",
        "SHOW COLUMNS FROM system.users",
        "SHOW GRANTS",
        "SHOW USERS",
        "SHOW DATABASES",
        # writes, outfiles, settings
        "SELECT 1 INTO OUTFILE '/tmp/radpulse-h9-outfile'",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_result_rows = 0",
        "INSERT INTO dose_reviews SELECT * FROM dose_reviews",
        "SELECT 1; SELECT file('/etc/passwd')",
    ]


ATTACK_COUNT = len(attacks(Path("/k"), 1))


@pytest.mark.parametrize("n", range(ATTACK_COUNT))
def test_attack_is_refused(sink: Sink, canary: Canary, n: int) -> None:
    sql = attacks(sink.key_file, canary.port)[n]
    before = canary.hits
    reply = sink.sql(sql)
    assert reply.status in (400, 403), (sql, reply.status, reply.body[:300])
    assert "error" in reply.json() and not sink.leaks(reply.body), sql
    assert canary.hits == before, f"{sql} connected to the canary"


def test_key_theft_through_radpulse_sql_is_refused(sink: Sink) -> None:
    for sql in (f"SELECT hex(file('{sink.key_file}'))", "SELECT file('/etc/passwd')"):
        done = sink.cli("sql", "--format", "csv", sql)
        assert done.returncode == 2 and "refused" in done.stderr, (sql, done.stdout, done.stderr)
        assert not sink.leaks(done.stdout + done.stderr)
    assert not Path("/tmp/radpulse-h9-outfile").exists()


LEGIT = [
    ("SELECT count() FROM exams_latest", [[0]]),
    ("SELECT count() FROM default.exams", [[0]]),
    ("SELECT alert_id FROM dose_alerts_open", []),
    ("WITH 2 AS k SELECT number * k AS n FROM numbers(3) ORDER BY n", [[0], [2], [4]]),
    ("SELECT sum(number) OVER (ORDER BY number) FROM numbers(3)", [[0], [1], [3]]),
    ("SELECT countIf(number > 0), quantileExactIf(0.5)(number, number < 5) FROM numbers(10)", [[9, 2]]),
    ("SELECT arrayMap(x -> x * 2, [1, 2]) AS a, upper('ct') AS m, toDate('2024-03-01') AS d",
     [[[2, 4], "CT", "2024-03-01"]]),
    ("SELECT * FROM system.one", [[0]]),
    ("SELECT CASE 1 WHEN 1 THEN 'a' ELSE 'b' END AS c, EXISTS (SELECT 1) AS e, [1, 2][2] AS i, (1, 'x').2 AS t",
     [["a", 1, 2, "x"]]),
    ("SELECT grouping(number % 2) AS g, count() FROM numbers(4) GROUP BY ROLLUP(number % 2) ORDER BY g, 2",
     [[0, 2], [0, 2], [1, 4]]),
    ("SELECT count() > 0 FROM system.tables WHERE database = currentDatabase() AND name = 'exams'", [[True]]),
    ("SELECT version, name FROM schema_migrations WHERE version = 1", [[1, "base"]]),
]


@pytest.mark.parametrize(("sql", "rows"), LEGIT)
def test_radpulse_tables_and_views_still_answer(sink: Sink, sql: str, rows: list[list[object]]) -> None:
    reply = sink.sql(sql)
    assert reply.status == 200, (sql, reply.body[:300])
    doc = reply.json()
    assert doc["rows"] == rows and doc["complete"] is True, (sql, doc)


def test_show_and_describe_answer(sink: Sink) -> None:
    tables = sink.sql("SHOW TABLES").json()["rows"]
    assert ["exams_latest"] in tables and ["dose_reviews"] in tables
    assert sink.sql("SHOW TABLES LIKE 'exams%' LIMIT 1").json()["rows"] == [["exams"]]
    assert ["exam_key", "String", "", "", "", "", ""] in sink.sql("DESCRIBE exams").json()["rows"]


def _all_selected() -> dict[str, Selection]:
    return {name: Selection.everything(("x",)) for name in panels.VARIABLE_QUERIES}


@pytest.mark.parametrize("name", sorted(panels.QUERIES))
def test_every_dashboard_query_passes_the_endpoint(sink: Sink, name: str) -> None:
    now = datetime.now(UTC)
    sql = expand(panels.QUERIES[name].sql, QueryContext(now - timedelta(days=1), now, 300.0, _all_selected()))
    reply = sink.sql(sql)
    assert reply.status == 200, (name, reply.body[:400])
    assert reply.json()["complete"] is True


def test_radpulse_sql_reads_through_the_endpoint_with_the_token(sink: Sink) -> None:
    done = sink.cli("sql", "--format", "json", "SELECT count() AS n FROM exams_latest")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"columns": ["n"], "types": ["UInt64"], "rows": [[0]]}


# -- limits: time, rows, concurrency, streaming -------------------------------------------------------------------
def test_a_query_stops_at_the_time_limit(sink: Sink) -> None:
    reply = sink.sql("SELECT sleep(3) + sleep(2.9) + sleep(2.8)")  # 8.7 s > TIMEOUT_S
    assert reply.status == 400 and "TIMEOUT_EXCEEDED" in reply.json()["error"], reply.body[:300]


def test_a_result_stops_at_the_row_limit_and_says_so(sink: Sink) -> None:
    reply = sink.sql(f"SELECT number FROM numbers({3 * MAX_ROWS})")
    assert reply.status in (200, 400)
    lines = reply.body.decode().splitlines()
    if reply.status == 200:  # streamed: rows came, then the error ends the document
        assert lines[-1].startswith("]") and "TOO_MANY_ROWS" in lines[-1], lines[-1]
        assert "complete" not in lines[-1]
    else:
        assert "TOO_MANY_ROWS" in reply.json()["error"]
    done = sink.cli("sql", "--format", "csv", f"SELECT number FROM numbers({3 * MAX_ROWS})")
    assert done.returncode == 1 and "TOO_MANY_ROWS" in done.stderr, done.stderr[-300:]


def test_rows_stream_a_line_per_block(sink: Sink) -> None:
    reply = sink.sql(f"SELECT number AS n, toString(number) AS s FROM numbers({MAX_ROWS})")
    lines = reply.body.decode().splitlines()
    assert lines[0] == '{"columns": ["n", "s"], "types": ["UInt64", "String"], "rows": ['
    assert lines[1].startswith('[0, "0"], [1, "1"]') and lines[-1] == '], "complete": true}'
    assert len(lines) > 3 and all(line.startswith(",[") for line in lines[2:-1])  # several blocks: it streamed
    rows = json.loads(reply.body)["rows"]
    assert len(rows) == MAX_ROWS and rows[-1] == [MAX_ROWS - 1, str(MAX_ROWS - 1)]


def test_slow_queries_do_not_hold_up_a_quick_one(sink: Sink) -> None:
    """50 concurrent `SELECT sleep(3)`: a `SELECT 1` sent after them is answered (rows or 503 busy) while most of
    them are still waiting, not after all of them (on main it waited for every one, 134 s)."""
    done_at: list[float] = []

    def slow() -> int:
        status = sink.sql("SELECT sleep(3)").status
        done_at.append(time.monotonic())
        return status

    with ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(slow) for _ in range(50)]
        time.sleep(1.0)
        reply = sink.sql("SELECT 1")
        answered = time.monotonic()
        statuses = [f.result() for f in futures]
    assert reply.status in (200, 503), reply.body[:200]
    if reply.status == 503:
        assert "query_concurrency" in reply.json()["error"] and reply.headers.get("Retry-After")
    assert statuses.count(200) >= CONCURRENCY and set(statuses) <= {200, 503}, statuses
    assert sum(t > answered for t in done_at) >= CONCURRENCY, "SELECT 1 waited for the slow queries"
