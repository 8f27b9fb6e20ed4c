"""`radpulse up`, `radpulse demo` and `radpulse simulate`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from schemas.config import Settings, load_settings

log = logging.getLogger("radpulse.demo")


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="run broker (embedded unless Kafka is configured) + edge + streams + sink")
    up.set_defaults(func=run_up)

    demo = sub.add_parser("demo", help="`up`, then a synthetic hospital sends a realistic day; prints an overview")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--scale", type=float, default=0.05,
                      help="share of each series' images to send (1.0 = realistic volume, ~29k instances/day)")
    demo.add_argument("--start", help="local day to simulate, YYYY-MM-DD (default: the last weekday)")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the pipeline up after the overview (default: only when run from a terminal)")
    demo.set_defaults(func=run_demo)

    sim = sub.add_parser("simulate", help="send seeded synthetic hospital days to a DICOM node, with ground truth")
    sim.add_argument("--days", type=int, default=1)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--to", default="127.0.0.1:11112", help="HOST:PORT of the DICOM node")
    sim.add_argument("--scale", type=float, default=1.0)
    sim.add_argument("--start", help="first local day, YYYY-MM-DD (default: today)")
    sim.add_argument("--tz", default=None, help="site time zone (default: [site] timezone)")
    sim.add_argument("--truth", default="radpulse-data/truth.json", help="where to write the ground truth JSON")
    sim.set_defaults(func=run_simulate)


def run_up(args: argparse.Namespace) -> int:
    from cli.supervisor import Supervisor

    settings = load_settings(args.config)
    if not settings.edge.allowed_calling_aes:
        log.warning("%s\nSECURITY: [edge] allowed_calling_aes is empty, so ANY device that knows the AE title %s "
                    "can send to this node.\nList your modalities' AE titles there.\n%s", "!" * 100,
                    settings.edge.ae_title, "!" * 100)
    sup = Supervisor(settings, config_path=args.config)
    try:
        sup.start()
        log.info("radpulse is up — Ctrl-C stops everything")
        sup.wait()
    finally:
        sup.stop()
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from synthetic_hospital.cli import main as simulate

    settings = load_settings(args.config)
    host, _, port = args.to.rpartition(":")
    argv = ["send", "--days", str(args.days), "--seed", str(args.seed), "--scale", str(args.scale),
            "--host", host or "127.0.0.1", "--port", port, "--tz", args.tz or settings.site.timezone,
            "--truth", args.truth, "--called-ae", settings.edge.ae_title]
    if args.start:
        argv += ["--start", args.start]
    Path(args.truth).parent.mkdir(parents=True, exist_ok=True)
    return simulate(argv)


def _wait_for_exams(settings: Settings, expected: int, timeout_s: float) -> int:
    """Poll ClickHouse until every planned exam is complete (or the time is up); returns the complete count."""
    from rich.progress import Progress

    from sinks.sql import query

    sql = "SELECT countIf(status = 'complete') FROM exams_latest"
    done = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("streams closing exams → ClickHouse", total=expected)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                done = int(query(settings, sql).rows[0][0])
            except Exception:
                done = 0
            progress.update(task, completed=done)
            if done >= expected:
                break
            time.sleep(2)
    return done


def busiest_hour_sql(timezone: str) -> str:
    """The local hour (in `timezone`, the site's) in which most patient exams started, with their count."""
    return f"""
        SELECT toHour(toTimeZone(start_utc, '{timezone}')) AS hour, count() AS exams
        FROM exams_latest WHERE status = 'complete' AND NOT not_patient AND start_utc IS NOT NULL
        GROUP BY hour ORDER BY exams DESC, hour LIMIT 1"""


def _overview(settings: Settings) -> None:
    from rich.console import Console
    from rich.table import Table

    from sinks.sql import query

    console = Console()
    per_device = query(settings, """
        SELECT station_name, any(modality) AS modality, count() AS exams,
               round(avg(duration_s) / 60, 1) AS mean_min, round(quantile(0.9)(duration_s) / 60, 1) AS p90_min,
               sum(instance_count) AS instances
        FROM exams_latest WHERE status = 'complete' AND NOT not_patient
        GROUP BY station_name ORDER BY modality, station_name""")
    table = Table(title="radpulse demo — exams per device (patient exams, complete)")
    for col in ("device", "modality", "exams", "mean duration (min)", "P90 duration (min)", "instances"):
        table.add_column(col)
    for row in per_device.rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)
    busiest = query(settings, busiest_hour_sql(settings.site.timezone))
    if busiest.rows:
        hour, n = busiest.rows[0]
        console.print(f"Busiest hour ({settings.site.timezone}): {int(hour):02d}:00–{int(hour) + 1:02d}:00 "
                      f"with {n} exams starting")
    console.print("\nTry next:", soft_wrap=True)
    console.print('  radpulse sql "SELECT station_name, count() AS exams, round(avg(duration_s)/60,1) AS mean_min '
                  'FROM exams_latest GROUP BY station_name ORDER BY exams DESC"', soft_wrap=True, markup=False,
                  style="bold")


def _last_weekday() -> date:
    """The most recent Monday–Friday before today: every simulated device is open on a weekday."""
    day = date.today() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def run_demo(args: argparse.Namespace) -> int:
    from cli.supervisor import Supervisor
    from synthetic_hospital.exams import write_truth
    from synthetic_hospital.hospital import default_hospital
    from synthetic_hospital.plan import plan_days
    from synthetic_hospital.sender import send

    # the last exam of each device closes after this much idle time, so the overview needs no long wait
    os.environ.setdefault("RADPULSE_STREAMS__IDLE_CLOSE_S", "20")
    settings = load_settings(args.config)
    idle = os.environ["RADPULSE_STREAMS__IDLE_CLOSE_S"]
    sup = Supervisor(settings, extra_env={"RADPULSE_STREAMS__IDLE_CLOSE_S": idle}, config_path=args.config)
    try:
        sup.start()
        start = date.fromisoformat(args.start) if args.start else _last_weekday()
        plan = plan_days(default_hospital(), start, 1, args.seed, settings.site.timezone, args.scale)
        truth_path = write_truth(plan, Path("radpulse-data") / f"demo-truth-{start}.json")
        log.info("synthetic hospital: %d devices, %d exams, %d instances on %s (seed %d); truth in %s",
                 len(plan.devices), len(plan.exams), plan.n_instances, start, args.seed, truth_path)
        host = "127.0.0.1" if settings.edge.host in ("0.0.0.0", "") else settings.edge.host
        hl7_port = settings.hl7.port if settings.hl7.enabled else None
        # orders, arrivals (HL7) and procedure steps (MPPS) too, so wait times and MPPS timing have data
        stats = send(plan, host, settings.edge.port, settings.edge.ae_title, progress=True,
                     workflow=hl7_port is not None, hl7_port=hl7_port)
        log.info("sent %d/%d instances (%.0f/s); %d failed", stats.succeeded, stats.attempted, stats.rate_per_s,
                 stats.failed)
        done = _wait_for_exams(settings, len(plan.exams), timeout_s=240)
        if done < len(plan.exams):
            log.warning("%d of %d exams complete so far; the overview shows those", done, len(plan.exams))
        _overview(settings)
        if args.keep_running or sys.stdin.isatty():
            log.info("the pipeline keeps running — Ctrl-C stops it")
            sup.wait()
    finally:
        sup.stop()
    return 0
