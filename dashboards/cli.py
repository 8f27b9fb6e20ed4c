"""`radpulse dashboards build|push` and `radpulse clickhouse ddl`. Heavy imports wait until a command runs.

``clickhouse ddl`` belongs to sinks (``sinks/cluster_ddl.py``) but is registered here, under the ``clickhouse``
command that ``sinks/cli.py`` creates, so sinks' CLI needs no change; ``cli/main.py`` lists this module after
``sinks.cli``.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboards", help="Grafana dashboards and alert rules: build the JSON/YAML, push to Grafana")
    actions = d.add_subparsers(dest="dashboards_action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="write dashboards/json/*.json and infra/grafana/provisioning/alerting/*.yaml")
    b.add_argument("--root", help="checkout root to write under (default: the one this radpulse runs from)")
    b.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    b.set_defaults(func=run_build)

    p = actions.add_parser("push", help="create/update the data source, folder and dashboards on a live Grafana")
    p.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    p.add_argument("--token", required=True, help="service account token (or user:password)")
    p.add_argument("--clickhouse-host", default="clickhouse", help="as Grafana reaches it (default: clickhouse)")
    p.add_argument("--clickhouse-port", type=int, default=8123, help="HTTP(S) port (default: 8123)")
    p.add_argument("--clickhouse-secure", action="store_true", help="HTTPS to ClickHouse")
    p.add_argument("--clickhouse-database", default="radpulse", help="default: radpulse")
    p.add_argument("--clickhouse-user", default="grafana", help="a read-only user (default: grafana)")
    p.add_argument("--clickhouse-password", default="", help="sent on create/change only (see --rotate-password)")
    p.add_argument("--rotate-password", action="store_true", help="send the password even if nothing else changed")
    p.set_defaults(func=run_push)

    clickhouse = sub.choices.get("clickhouse")
    if clickhouse is None:
        raise RuntimeError("dashboards.cli must be registered after sinks.cli (cli/main.py _CONTRIBUTORS)")
    ch_actions = next(a for a in clickhouse._actions if isinstance(a, argparse._SubParsersAction))
    c = ch_actions.add_parser("ddl", help="print the schema as ReplicatedMergeTree + Distributed DDL for a cluster")
    c.add_argument("--cluster", required=True, help="cluster name from the servers' remote_servers config")
    c.add_argument("--database", default="radpulse", help="database (default: radpulse)")
    c.set_defaults(func=run_ddl)


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dashboards.build import ROOT, stale, write

    root = Path(args.root).resolve() if args.root else ROOT
    if args.check:
        old = stale(root)
        for path in old:
            print(f"stale: {path}")
        if old:
            print("run `radpulse dashboards build` and commit the result", file=sys.stderr)
        return 1 if old else 0
    for path, outcome in write(root):
        print(f"{path}: {outcome}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from dashboards.build import all_dashboards
    from dashboards.push import ClickHouseTarget, PushError, connect, push

    ch = ClickHouseTarget(
        host=args.clickhouse_host,
        port=args.clickhouse_port,
        database=args.clickhouse_database,
        user=args.clickhouse_user,
        password=args.clickhouse_password,
        secure=args.clickhouse_secure,
    )
    try:
        changes = push(connect(args.url, args.token), all_dashboards(), ch, args.rotate_password)
    except PushError as exc:
        print(f"radpulse: {exc}", file=sys.stderr)
        return 1
    for change in changes:
        print(change)
    return 0


def run_ddl(args: argparse.Namespace) -> int:
    from sinks.cluster_ddl import ClusterDdlError, cluster_ddl

    try:
        sys.stdout.write(cluster_ddl(args.cluster, args.database))
    except ClusterDdlError as exc:
        print(f"radpulse: {exc}", file=sys.stderr)
        return 2
    return 0
