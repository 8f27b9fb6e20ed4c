"""`python -m benchmarks.sql_endpoint [--quick]`: the sink's SQL endpoint under a big result and slow queries.

The endpoint runs in a child process exactly as `radpulse sink` builds it (``QueryServer`` on its own chDB clients,
token, limits), without Kafka. Figures: the child's RSS before/after (and peak) for one large result read through
HTTP; and, with N concurrent ``SELECT sleep(3)`` in flight, how long a ``SELECT 1`` sent after them waits and what
it gets (rows, or 503 busy). Issue 9 measured on main: a 1M-row result took the sink 586 MB → 1.57 GB, and a
``SELECT 1`` behind 50 sleeps waited 134 s. Reports, never gates.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "benchmark-token"
BIG = ("SELECT number, toString(number) AS s, toDateTime64('2024-03-01 10:00:00', 6, 'UTC') + number AS t, "
       "'CT_HEAD' AS e FROM numbers({n})")
CHILD = """
import sys, time
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.query_server import QueryServer
db = connect(sys.argv[1]); migrate(db)
server = QueryServer(db.reopen(), int(sys.argv[2]), token=sys.argv[3], concurrency=int(sys.argv[4])).start()
print("ready", flush=True)
time.sleep(1e6)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, sql: str, timeout: float = 900) -> tuple[int, int]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/query", data=sql.encode(), method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            size = 0
            while chunk := resp.read(1 << 20):
                size += len(chunk)
            return resp.status, size
    except urllib.error.HTTPError as exc:
        return exc.code, 0


def _rss_mb(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sql_endpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k rows and 20 sleeps instead of 1M and 50")
    parser.add_argument("--concurrency", type=int, default=8, help="[clickhouse] query_concurrency (default 8)")
    args = parser.parse_args(argv)
    rows, sleepers = (200_000, 20) if args.quick else (1_000_000, 50)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="radpulse-sqlbench-") as folder:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, f"chdb://{folder}/chdb", str(port), TOKEN, str(args.concurrency)],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", "endpoint did not start"
            _post(port, "SELECT 1")
            before = _rss_mb(child.pid)
            started = time.monotonic()
            status, size = _post(port, BIG.format(n=rows))
            took = time.monotonic() - started
            after = _rss_mb(child.pid)
            print(f"{rows:,} rows: HTTP {status}, {size / 1e6:.0f} MB in {took:.1f} s; endpoint process RSS "
                  f"{before[0]} MB → {after[0]} MB (peak {after[1]} MB, +{after[1] - before[0]} MB)")
            with ThreadPoolExecutor(sleepers) as pool:
                t0 = time.monotonic()
                futures = [pool.submit(_post, port, "SELECT sleep(3)") for _ in range(sleepers)]
                time.sleep(1.0)
                t = time.monotonic()
                quick, _ = _post(port, "SELECT 1")
                waited = time.monotonic() - t
                statuses = [f.result()[0] for f in futures]
                burst = time.monotonic() - t0
            print(f"{sleepers} × SELECT sleep(3), then SELECT 1: answered HTTP {quick} after {waited:.2f} s; sleeps "
                  f"{statuses.count(200)} ran, {statuses.count(503)} got 503 busy; burst over in {burst:.1f} s "
                  f"(query_concurrency {args.concurrency})")
        finally:
            child.kill()
            child.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
