"""Pipeline benchmark: sustained events/s from C-STORE to rows in ClickHouse, end-to-end latency (C-STORE response →
exam row visible) P50/P99, and the streams stage's own events/s measured separately.

Wiring (as ``tests/e2e/conftest.py``): the embedded broker on a free port, ``radpulse edge`` as a subprocess, one
Faust worker subprocess (``python -m cli.main streams --web-port 0``), and a ``SinkWriter`` thread in this process
writing to chDB in a temporary folder. Settings go to every part through ``RADPULSE_*`` variables.

1. **Throughput.** A seeded simulator day (``plan_days`` at ``--scale``) is written with ``write_dicom_dir`` and sent
   by DCMTK storescu (``TCP_NODELAY=1``), one process per device folder with that device's AE title, ``--senders``
   at a time. Measured: the edge's accepted rate (instances / time until the last C-STORE response), the time until
   every instance is a row in ``instances FINAL`` and the Faust group has committed every instance, hence the
   pipeline's events/s; and the time until every exam is ``complete`` in ``exams_latest`` (which includes the
   configured idle close, ``--idle-close-s``).
2. **Latency.** Single-instance exams C-STOREd by pynetdicom from a process of their own at a paced rate (default:
   half the edge's rate) over ``--latency-senders`` associations. Per exam: the time its C-STORE response came back,
   and the first time a row for it (any status; normally ``in_progress`` version 1) is visible in ``exams_latest``,
   polled every 100 ms.
3. **Streams alone.** The InstanceEvents the edge produced (already encoded) are produced with confluent-kafka to a
   fresh topic prefix as fast as possible, to a fresh Faust worker that has been warmed with the first event; measured:
   the time until the worker's consumer group has committed every event (→ streams events/s) and until it has
   published every exam as complete on ``<prefix>.exams``.

    python -m benchmarks.pipeline [--quick] [--scale 0.1] [--senders 4] [--latency-s 30] [--rate R]
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.edge_throughput import (
    CT_IMAGE,
    STORESCU,
    cpu_seconds,
    free_port,
    make_instance,
    stop_process,
    storescu,
    wait_port,
)

console = Console(width=shutil.get_terminal_size((170, 40)).columns)
SITE_TZ = "Asia/Shanghai"
LATENCY_TARGET_S = 2.0  # issue 10: P99 < 2 s at half the pipeline's peak rate
POLL_S = 0.1


@dataclass
class Stack:
    """The running pipeline: broker, edge and worker subprocesses, the sink thread, and clients."""

    work: Path
    env: dict[str, str]
    settings: Any
    bootstrap: str = ""
    broker: Any = None  # the embedded broker, unless --bootstrap names another Kafka
    edge: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    db: Any = None  # the sink's client
    qdb: Any = None  # the poller's client (chDB allows many clients on one folder in one process)
    sink: Any = None
    sink_thread: threading.Thread | None = None
    stop_sink: threading.Event = field(default_factory=threading.Event)
    keys: Any = None

    @property
    def edge_port(self) -> int:
        return int(self.env["RADPULSE_EDGE__PORT"])

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = (env or self.env) | {"RADPULSE_STREAMS__DATA_DIR": str(self.work / f"streams-{name}")}
        with open(self.work / f"worker-{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "streams", "--web-port", "0", "--loglevel", "warn"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.workers.append(proc)
        return proc

    def stop_worker(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc, 20)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:]
                         for p in sorted(self.work.glob("*.log")))


def start_stack(work: Path, *, idle_close_s: float, tick_s: float, flush_s: float,
                bootstrap: str | None = None) -> Stack:
    from cli.broker import EmbeddedBroker
    from edge_ingest.keys import load_keys
    from schemas.config import load_settings
    from sinks.clickhouse import connect
    from sinks.migrate import migrate
    from sinks.writer import SinkWriter

    broker = None if bootstrap else EmbeddedBroker(port=free_port(), log_path=work / "tansu.log").start()
    bootstrap = bootstrap or broker.bootstrap
    prefix = "bench" + uuid.uuid4().hex[:6]
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull,
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": prefix,
        "RADPULSE_SITE__TIMEZONE": SITE_TZ,
        "RADPULSE_EDGE__PORT": str(free_port()),
        "RADPULSE_EDGE__HOST": "127.0.0.1",
        "RADPULSE_EDGE__DATA_DIR": str(work / "edge"),
        "RADPULSE_HL7__ENABLED": "false",
        "RADPULSE_STREAMS__IDLE_CLOSE_S": str(idle_close_s),
        "RADPULSE_STREAMS__TICK_INTERVAL_S": str(tick_s),
        "RADPULSE_CLICKHOUSE__URL": f"chdb://{work / 'chdb'}?database=bench",
    }
    env.pop("TCP_NODELAY", None)
    stack = Stack(work, env, load_settings(None, env=env), bootstrap=bootstrap, broker=broker)
    with open(work / "edge.log", "ab") as log:
        stack.edge = subprocess.Popen([sys.executable, "-m", "cli.main", "--log-level", "WARNING", "edge"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stack.start_worker("main")
    stack.db = connect(stack.settings.clickhouse.url)
    migrate(stack.db)
    stack.qdb = stack.db.reopen()
    stack.sink = SinkWriter(stack.settings, stack.db, group_id=f"{prefix}-sink", flush_interval_s=flush_s,
                            consumer_config={"session.timeout.ms": 6000, "fetch.wait.max.ms": 100})
    stack.sink_thread = threading.Thread(target=stack.sink.run, args=(stack.stop_sink,), name="sink", daemon=True)
    stack.sink_thread.start()
    wait_port(stack.edge_port, 60)
    stack.keys = load_keys(work / "edge")  # the edge created them on start: exam keys are study pseudonyms
    return stack


def stop_stack(stack: Stack) -> None:
    for proc in stack.workers:
        stack.stop_worker(proc)
    if stack.edge is not None and stack.edge.poll() is None:
        stack.edge.send_signal(signal.SIGTERM)
        try:
            stack.edge.wait(20)
        except subprocess.TimeoutExpired:
            stack.edge.kill()
            stack.edge.wait(5)
    if stack.sink_thread is not None:
        stack.stop_sink.set()
        stack.sink_thread.join(30)
    for db in (stack.qdb, stack.db):
        if db is not None:
            db.close()
    if stack.broker is not None:
        stack.broker.stop()


# -- helpers -------------------------------------------------------------------------------------------------------
def wait_for(what: str, cond: Callable[[], bool], timeout_s: float, stack: Stack, every_s: float = 0.1,
             state: Callable[[], str] | None = None) -> float:
    """Poll ``cond`` until true; returns the seconds it took. Raises with the state and component logs on timeout."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if cond():
            return time.perf_counter() - start
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not reached within {timeout_s:.0f} s; {state() if state else ''}\n{stack.logs()}")


def committed(stack: Stack, prefix: str, group: str) -> int:
    """Sum of the offsets a consumer group has committed on ``<prefix>.instances``."""
    from confluent_kafka import KafkaException, TopicPartition

    topic = f"{prefix}.instances"
    tps = [TopicPartition(topic, p) for p in range(stack.settings.kafka.partitions)]
    try:
        return sum(max(tp.offset, 0) for tp in _group_reader(stack, group).committed(tps, timeout=5))
    except KafkaException:
        return 0  # the group does not exist yet


_readers: dict[str, Any] = {}


def _group_reader(stack: Stack, group: str) -> Any:
    from confluent_kafka import Consumer

    if group not in _readers:  # never subscribes: it only asks for the group's committed offsets
        _readers[group] = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group,
                                    "enable.auto.commit": False})
    return _readers[group]


def _close_readers() -> None:
    for consumer in _readers.values():
        consumer.close()
    _readers.clear()


def cpu_snapshot(stack: Stack, worker: subprocess.Popen[bytes] | None = None) -> dict[str, float]:
    """CPU seconds so far of each part: edge, streams worker, broker (if embedded), this process (the sink thread,
    the poller and any pynetdicom senders), and reaped children (storescu)."""
    import resource

    pids = {"edge": stack.edge.pid if stack.edge else None, "streams worker": worker.pid if worker else None,
            "broker": stack.broker.process.pid if stack.broker is not None and stack.broker.process else None}
    out = {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None}
    out["this process (sink, poller)"] = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["storescu"] = children.ru_utime + children.ru_stime
    return out


def sink_rows(stack: Stack) -> dict[str, int]:
    """Rows the sink has written so far, per table (read from the sink thread's counters)."""
    for _ in range(5):
        try:
            return dict(stack.sink.counters.rows_written)
        except RuntimeError:  # changed size while copying
            time.sleep(0.01)
    return {}


def cpu_per_event_ms(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    return {k: (after[k] - before[k]) * 1000 / events for k in before if k in after}


def no_delay(event: Any) -> None:
    """Disable Nagle on a pynetdicom requestor socket (as ``synthetic_hospital.sender`` does)."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def pctl(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


# -- paced single-instance exams ---------------------------------------------------------------------------------
def paced_send(port: int, paths: list[str], studies: list[str], rate: float, senders: int,
               max_s: float = float("inf")) -> dict[str, Any]:
    """C-STORE ``paths`` (one exam each, study ``studies[i]``) paced at ``rate``/s over ``senders`` associations.
    Stops scheduling after ``max_s`` when the pipeline cannot take the pace. Returns the wall time each response came
    back (``done_at[study]``) and the pace achieved. Picklable, so it can run in a process of its own, like a
    modality would (``send_single_exams``)."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, evt

    schedule = itertools.count()
    lock = threading.Lock()
    failures: list[str] = []
    done_at: dict[str, float] = {}
    attempted: list[int] = []
    start = time.perf_counter() + 0.2

    def worker() -> None:
        ae = AE(ae_title="LATENCY")
        ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="RADPULSE", evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
        if not assoc.is_established:
            failures.append("association refused")
            return
        try:
            while True:
                with lock:
                    i = next(schedule)
                if i >= len(paths) or time.perf_counter() - start > max_s:
                    return
                attempted.append(i)
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                status = assoc.send_c_store(Path(paths[i]))
                now = time.time()
                if not status or int(status.Status) != 0:
                    failures.append(f"{Path(paths[i]).name}: {status}")
                    continue
                done_at[studies[i]] = now
        finally:
            assoc.release()

    with ThreadPoolExecutor(senders) as pool:
        for f in [pool.submit(worker) for _ in range(senders)]:
            f.result()
    elapsed = time.perf_counter() - start
    return {"done_at": done_at, "sent": len(attempted), "ok": len(done_at), "failures": failures[:5],
            "seconds": elapsed, "achieved_rate": len(attempted) / elapsed if elapsed > 0 else float("nan")}


def send_single_exams(stack: Stack, paths: list[Path], rate: float, senders: int, study_of: dict[Path, str],
                      *, own_process: bool = True, max_s: float = float("inf")) -> dict[str, Any]:
    """``paced_send`` in a spawned process (default), so the senders share no GIL with the sink and the poller."""
    args = (stack.edge_port, [str(p) for p in paths], [study_of[p] for p in paths], rate, senders, max_s)
    if not own_process:
        return paced_send(*args)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(paced_send, *args).result()


def write_single_exams(folder: Path, count: int, rows: int = 64, cols: int = 64) -> tuple[list[Path], dict[Path, str]]:
    """``count`` single-instance CT exams; returns the files and file → StudyInstanceUID. Like real traffic, each
    exam has its own patient, ID and accession (so the edge builds each exam's scrub pattern once), and the exams
    spread over 8 stations and a new day every 200 exams (≈25 exams per device-day, as a busy CT has)."""
    from datetime import timedelta

    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    pixels = bytes(rows * cols * 2)
    paths, study_of = [], {}
    first_day = date(2024, 3, 4)
    for i in range(count):
        study = generate_uid()
        path = folder / f"{i:06d}.dcm"
        ds = make_instance(i, study, generate_uid(), rows, cols, pixels)
        ds.PatientName, ds.PatientID, ds.AccessionNumber = f"LATENCY^PATIENT{i:05d}", f"L{i:06d}", f"LA{i:07d}"
        ds.StationName, ds.DeviceSerialNumber = f"LAT{i % 8:02d}", f"S{i % 8:04d}"
        day = (first_day + timedelta(days=i // 200)).strftime("%Y%m%d")
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = day
        minute = (i % 200) * 3  # an exam every 3 minutes from 08:00
        hhmmss = f"{8 + minute // 60:02d}{minute % 60:02d}00"
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = hhmmss
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        study_of[path] = study
    return paths, study_of


# -- phases --------------------------------------------------------------------------------------------------------
def warm_up(stack: Stack) -> None:
    """One exam end to end: the worker has joined its group and the sink reads the exams topic."""
    from edge_ingest.pseudonyms import uid_pseudonym

    paths, study_of = write_single_exams(stack.work / "warmup", 1)
    send_single_exams(stack, paths, 10, 1, study_of, own_process=False)
    key = uid_pseudonym(stack.keys, study_of[paths[0]])
    wait_for("warm-up exam visible in exams_latest",
             lambda: bool(stack.qdb.scalar(f"SELECT count() FROM exams_latest WHERE exam_key = '{key}'")),
             180, stack, every_s=0.5)


def throughput(stack: Stack, scale: float, senders: int, seed: int, timeout_s: float) -> dict[str, Any]:
    from synthetic_hospital.hospital import default_hospital
    from synthetic_hospital.plan import plan_days
    from synthetic_hospital.sender import write_dicom_dir

    settle_s = stack.settings.streams.idle_close_s + 10

    plan = plan_days(default_hospital(), date(2024, 3, 4), 1, seed, SITE_TZ, scale=scale)
    n, n_exams = plan.n_instances, len(plan.exams)
    t = time.perf_counter()
    dirs = write_dicom_dir(plan, stack.work / "day")
    write_s = time.perf_counter() - t
    prefix = stack.settings.kafka.topic_prefix
    base_rows = int(stack.qdb.scalar("SELECT count() FROM instances FINAL"))
    base_exams = int(stack.qdb.scalar("SELECT count() FROM exams_latest"))
    base_held = int(stack.qdb.scalar("SELECT sum(instance_count) FROM exams_latest") or 0)
    base_committed = committed(stack, prefix, f"{prefix}-streams")
    ae_of = {d.key: d.ae_title for d in plan.devices}
    # biggest folders first, so the last sender does not run alone for long
    order = sorted(dirs, key=lambda k: -sum(1 for _ in dirs[k].rglob("*.dcm")))
    marks: dict[str, float] = {}
    errors: list[BaseException] = []
    sent = threading.Event()

    def send_all() -> None:
        try:
            with ThreadPoolExecutor(senders) as pool:
                jobs = [pool.submit(storescu, dirs[k], stack.edge_port, aet=ae_of[k], recurse=True) for k in order]
                for job in jobs:
                    job.result()
        except BaseException as exc:
            errors.append(exc)
        finally:
            marks["sent"] = time.perf_counter() - t0
            sent.set()

    def poll() -> bool:
        if errors:
            raise RuntimeError(f"sending failed: {errors[0]}")
        now = time.perf_counter() - t0
        if "rows" not in marks and int(stack.qdb.scalar("SELECT count() FROM instances FINAL")) >= base_rows + n:
            marks["rows"] = now
        if "streamed" not in marks and committed(stack, prefix, f"{prefix}-streams") >= base_committed + n:
            marks["streamed"] = now
        if "in_progress" not in marks:
            if int(stack.qdb.scalar("SELECT count() FROM exams_latest")) >= base_exams + n_exams:
                marks["in_progress"] = now
        if "complete" not in marks:
            # complete and holding every instance: an exam closed early by the idle timer reopens and closes again.
            # If every exam is complete but instances are missing from the counts for longer than a reopen takes,
            # stop waiting and report the difference (an exam that lost an instance never reopens).
            done, held = stack.qdb.query(
                "SELECT countIf(status = 'complete'), sumIf(instance_count, status = 'complete') FROM exams_latest"
            ).rows[0]
            if done >= base_exams + n_exams:
                marks.setdefault("all_complete", now)
                if held >= base_held + n or now - marks["all_complete"] > settle_s:
                    marks["complete"] = now if held >= base_held + n else marks["all_complete"]
            else:
                marks.pop("all_complete", None)
        return sent.is_set() and all(k in marks for k in ("rows", "streamed", "complete"))

    worker = stack.workers[0]
    cpu0 = cpu_snapshot(stack, worker)
    rows0 = sink_rows(stack)
    t0 = time.perf_counter()
    sender = threading.Thread(target=send_all, name="storescu-senders", daemon=True)
    sender.start()
    def state() -> str:
        rows = stack.qdb.query(
            "SELECT count(), countIf(status = 'complete'), sumIf(instance_count, status = 'complete'), "
            "sum(instance_count) FROM exams_latest").rows[0]
        return (f"marks {marks}; expected {n} instances in {n_exams} exams (+{base_rows} rows, +{base_exams} exams "
                f"before); instances FINAL {stack.qdb.scalar('SELECT count() FROM instances FINAL')}; streams "
                f"committed {committed(stack, prefix, f'{prefix}-streams')} (+{base_committed} before); exams_latest "
                f"(exams, complete, instances in complete, instances) = {rows}")

    wait_for("every instance a row and every exam complete", poll, timeout_s, stack, every_s=0.2, state=state)
    sender.join()
    cpu = cpu_per_event_ms(cpu0, cpu_snapshot(stack, worker), n)
    rows1 = sink_rows(stack)
    rows_written = {t: rows1[t] - rows0.get(t, 0) for t in sorted(rows1) if rows1[t] - rows0.get(t, 0)}
    through = max(marks["rows"], marks["streamed"], marks["sent"])
    edge_rate = n / marks["sent"]
    exams_found = stack.qdb.query(
        "SELECT count(), sum(instance_count) FROM exams_latest WHERE status = 'complete'").rows[0]
    # exams whose published instance_count differs from their rows in `instances` (should be none)
    short = stack.qdb.query(
        "SELECT e.exam_key, e.instance_count, i.n, e.version FROM exams_latest AS e INNER JOIN "
        "(SELECT study_pseudonym, count() AS n FROM instances FINAL GROUP BY study_pseudonym) AS i "
        "ON i.study_pseudonym = e.exam_key "
        "WHERE e.instance_count != i.n").rows
    return {
        "instances": n, "exams": n_exams, "devices": len(dirs), "senders": senders, "write_s": write_s,
        "sent_s": marks["sent"], "rows_s": marks["rows"], "streamed_s": marks["streamed"],
        "in_progress_s": marks["in_progress"], "complete_s": marks["complete"],
        "edge_rate": edge_rate, "pipeline_rate": n / through, "pipeline_rate_to_complete": n / marks["complete"],
        "lag_after_last_cstore_s": through - marks["sent"],
        "exams_complete_total": int(exams_found[0]), "instances_in_complete_exams": int(exams_found[1] or 0),
        "cpu_ms_per_instance": cpu, "wall_s": time.perf_counter() - t0, "sink_rows_written": rows_written,
        "exams_with_wrong_instance_count": len(short),
        "instances_missing_from_exams": sum(int(r[2]) - int(r[1]) for r in short),
        "wrong_count_examples": [{"exam_key": r[0], "exam_instance_count": r[1], "instance_rows": r[2],
                                  "version": r[3]} for r in short[:5]],
    }


def latency(stack: Stack, rate: float, seconds: float, senders: int, timeout_s: float) -> dict[str, Any]:
    from edge_ingest.pseudonyms import uid_pseudonym

    count = max(20, int(rate * seconds))
    paths, study_of = write_single_exams(stack.work / "latency", count)
    key_of = {study: uid_pseudonym(stack.keys, study) for study in study_of.values()}
    done_at: dict[str, float] = {}
    visible_at: dict[str, float] = {}
    since_us = int(time.time() * 1e6)
    stats: dict[str, Any] = {}

    errors: list[BaseException] = []

    def send() -> None:
        # at most 1.5× the planned time: a pipeline that cannot take the pace shows it in the achieved rate
        try:
            stats.update(send_single_exams(stack, paths, rate, senders, study_of, max_s=seconds * 1.5))
            done_at.update(stats.pop("done_at"))
        except BaseException as exc:
            errors.append(exc)

    worker = stack.workers[0]
    cpu0 = cpu_snapshot(stack, worker)
    sender = threading.Thread(target=send, name="latency-senders", daemon=True)
    sender.start()
    wanted = set(key_of.values())
    first_seen: dict[str, tuple[int, float, float]] = {}  # key → (version, published, received) when first visible
    deadline = time.monotonic() + seconds * 3 + timeout_s
    while time.monotonic() < deadline:
        started = time.time()
        rows = stack.qdb.query(
            "SELECT exam_key, version, toUnixTimestamp64Micro(updated_at), toUnixTimestamp64Micro(first_received_at) "
            f"FROM exams_latest WHERE updated_at >= fromUnixTimestamp64Micro({since_us}, 'UTC')"
        ).rows
        now = time.time()
        for key, version, updated_us, received_us in rows:
            if key in wanted and key not in visible_at:
                visible_at[key] = now
                first_seen[key] = (int(version), updated_us / 1e6, (received_us or 0) / 1e6)
        if not sender.is_alive() and all(key_of[s] in visible_at for s in done_at):
            break
        time.sleep(max(0.0, POLL_S - (time.time() - started)))
    sender.join()
    if errors:
        raise RuntimeError(f"paced sending failed: {errors[0]!r}")
    sent = max(int(stats.get("sent", 0)), 1)
    cpu = cpu_per_event_ms(cpu0, cpu_snapshot(stack, worker), sent)
    cpu.pop("storescu", None)
    lat = [visible_at[key_of[s]] - t for s, t in done_at.items() if key_of[s] in visible_at]
    missing = len(done_at) - len(lat)
    # where the time goes, from the row's own timestamps when first seen at version 1 (in_progress):
    # edge receive → C-STORE response; edge receive → streams publish; streams publish → visible here
    to_response, to_streams, to_visible = [], [], []
    for study, t_resp in done_at.items():
        key = key_of[study]
        if key in first_seen and first_seen[key][0] == 1:
            _v, published, received = first_seen[key]
            to_response.append(t_resp - received)
            to_streams.append(published - received)
            to_visible.append(visible_at[key] - published)
    p99 = pctl(lat, 99) if not missing else float("inf")
    return {
        "target_rate": rate, "exams": int(stats.get("sent", 0)), "senders": senders, **stats, "visible": len(lat),
        "missing": missing, "first_seen_at_version_1": len(to_visible),
        "p50_s": pctl(lat, 50), "p95_s": pctl(lat, 95), "p99_s": p99, "max_s": max(lat) if lat else float("nan"),
        "mean_s": statistics.fmean(lat) if lat else float("nan"), "met": p99 < LATENCY_TARGET_S,
        "p50_edge_receive_to_response_s": pctl(to_response, 50),
        "p50_edge_receive_to_streams_publish_s": pctl(to_streams, 50),
        "p50_streams_publish_to_visible_s": pctl(to_visible, 50),
        "p99_streams_publish_to_visible_s": pctl(to_visible, 99),
        "cpu_ms_per_exam": cpu,
    }


def streams_alone(stack: Stack, timeout_s: float) -> dict[str, Any]:
    """Replay the edge's encoded events to a fresh prefix and time a fresh Faust worker on them."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from edge_ingest.producer import ensure_topics
    from schemas import codec
    from schemas.config import load_settings
    from schemas.events import Exam

    # first: how long the pipeline's worker needs to close every exam after the pace, then what it costs idle,
    # holding every exam so far in its table
    worker = stack.workers[0]
    t_catch = time.perf_counter()
    while time.perf_counter() - t_catch < timeout_s:
        if not int(stack.qdb.scalar("SELECT countIf(status != 'complete') FROM exams_latest")):
            break
        time.sleep(0.5)
    caught_up_s = time.perf_counter() - t_catch
    # completed exams still feed the utilization agent (device KPIs, exam timings): busy until its backlog is done
    t_busy = time.perf_counter()
    while time.perf_counter() - t_busy < timeout_s:
        cpu0 = cpu_seconds(worker.pid)
        time.sleep(1.0)
        if cpu_seconds(worker.pid) - cpu0 < 0.2:
            break
    busy_s = time.perf_counter() - t_busy
    held = int(stack.qdb.scalar("SELECT count() FROM exams_latest"))
    cpu0, t_idle = cpu_seconds(worker.pid), time.perf_counter()
    time.sleep(5)
    idle_pct = (cpu_seconds(worker.pid) - cpu0) / (time.perf_counter() - t_idle) * 100
    for proc in list(stack.workers):  # the pipeline's worker would only compete for the CPU
        stack.stop_worker(proc)
    src = stack.settings.topic("instances")
    reader = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"replay-{uuid.uuid4().hex[:6]}",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.partition.eof": True})
    parts = stack.settings.kafka.partitions
    reader.assign([TopicPartition(src, p, 0) for p in range(parts)])
    messages: list[tuple[bytes, bytes]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + 60
    while len(eof) < parts and time.monotonic() < deadline:
        for msg in reader.consume(1000, 1.0):
            if msg.error():
                eof.add(msg.partition())
            else:
                messages.append((msg.key() or b"", msg.value() or b""))
    reader.close()
    m, n_exams = len(messages), len({k for k, _ in messages})
    prefix = stack.settings.kafka.topic_prefix + "s"
    env = stack.env | {"RADPULSE_KAFKA__TOPIC_PREFIX": prefix}
    settings = load_settings(None, env=env)
    ensure_topics(settings.kafka, [settings.topic("instances"), settings.topic("exams")])
    producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 5, "acks": "all",
                         "enable.idempotence": True, "compression.type": "lz4", "partitioner": "murmur2_random"})
    latest: dict[bytes, tuple[int, str, int]] = {}
    exams = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"exams-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                      "topic.metadata.refresh.interval.ms": 1000})
    exams.subscribe([settings.topic("exams")])

    def read_exams() -> None:
        for msg in exams.consume(1000, 0.05):
            if msg.error():
                continue
            exam = codec.decode(Exam, msg.value() or b"")
            key = msg.key() or b""
            if exam.version >= latest.get(key, (0, "", 0))[0]:
                latest[key] = (exam.version, exam.status, exam.instance_count)

    try:
        worker = stack.start_worker("alone", env)
        first_key, first_value = messages[0]
        producer.produce(settings.topic("instances"), first_value, first_key)
        producer.flush(10)
        wait_for("streams worker published the warm-up exam", lambda: (read_exams(), first_key in latest)[1],
                 180, stack, every_s=0.05)
        group = f"{prefix}-streams"
        cpu0 = cpu_snapshot(stack, worker)
        t0 = time.perf_counter()
        for key, value in messages[1:]:
            while True:
                try:
                    producer.produce(settings.topic("instances"), value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(30)
        produced_s = time.perf_counter() - t0
        marks: dict[str, float] = {}

        def poll() -> bool:
            read_exams()
            now = time.perf_counter() - t0
            if "committed" not in marks and committed(stack, prefix, group) >= m:
                marks["committed"] = now
            done = sum(1 for _v, status, _n in latest.values() if status == "complete")
            held = sum(n for _v, status, n in latest.values() if status == "complete")
            if "complete" not in marks and done >= n_exams:
                marks.setdefault("all_complete", now)
                if held >= m or now - marks["all_complete"] > settle_s:  # see throughput(): report, don't hang
                    marks["complete"] = now if held >= m else marks["all_complete"]
            elif "complete" not in marks:
                marks.pop("all_complete", None)
            return "committed" in marks and "complete" in marks

        def state() -> str:
            done = sum(1 for _v, status, _n in latest.values() if status == "complete")
            return (f"marks {marks}; {m} events in {n_exams} exams; committed {committed(stack, prefix, group)}; "
                    f"{len(latest)} exams published, {done} complete")

        settle_s = settings.streams.idle_close_s + 10
        wait_for("streams worker committed every event and closed every exam", poll, timeout_s, stack, every_s=0.05,
                 state=state)
        worker_cpu_ms = cpu_per_event_ms(cpu0, cpu_snapshot(stack, worker), m - 1)["streams worker"]
        counted = sum(n for _v, _s, n in latest.values())
    finally:
        exams.close()
    return {
        "events": m, "exams": n_exams, "produce_s": produced_s, "committed_s": marks["committed"],
        "complete_s": marks["complete"], "streams_rate": (m - 1) / marks["committed"],
        "streams_rate_to_complete": (m - 1) / marks["complete"], "instances_counted_in_exams": counted,
        "instances_missing_from_exams": m - counted,
        "worker_cpu_ms_per_event": worker_cpu_ms, "idle_worker_cpu_pct": idle_pct, "idle_worker_exams_held": held,
        "all_exams_complete_after_pace_s": caught_up_s, "worker_busy_after_all_complete_s": busy_s,
    }


# -- entry point ---------------------------------------------------------------------------------------------------
def _fmt(v: float, unit: str = "", digits: int = 1) -> str:
    return f"{v:.{digits}f}{unit}" if v == v and v != float("inf") else str(v)


def main(argv: list[str] | None = None, *, edge_rate: float | None = None) -> dict[str, Any]:
    """Run the three phases; ``edge_rate`` (the edge benchmark's inst/s) sets the latency pace and the target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller day and shorter latency run")
    parser.add_argument("--scale", type=float, help="simulator scale (default 0.1 ≈ 3,700 instances; quick 0.04)")
    parser.add_argument("--senders", type=int, default=4, help="storescu processes at a time (one per device)")
    parser.add_argument("--latency-s", type=float, help="seconds of paced sending (default 30; quick 10)")
    parser.add_argument("--latency-senders", type=int, default=2, help="pynetdicom associations for the pace")
    parser.add_argument("--rate", type=float, help="paced C-STOREs/s (default: half the edge's rate)")
    parser.add_argument("--edge-rate", type=float, help="the edge benchmark's inst/s (default: measured in phase 1)")
    parser.add_argument("--idle-close-s", type=float, default=2.0, help="[streams] idle_close_s for the run")
    parser.add_argument("--tick-s", type=float, default=0.5, help="[streams] tick_interval_s for the run")
    parser.add_argument("--flush-s", type=float, default=1.0, help="SinkWriter flush_interval_s")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--timeout-s", type=float, default=240, help="per phase, after its sending")
    parser.add_argument("--bootstrap", help="use this Kafka (e.g. Apache Kafka from infra/kafka) instead of the "
                        "embedded broker; topics get a fresh prefix")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, chDB) and print its path")
    args = parser.parse_args(argv)
    scale = args.scale or (0.04 if args.quick else 0.1)
    latency_s = args.latency_s or (10.0 if args.quick else 30.0)
    edge_rate = edge_rate or args.edge_rate
    if not Path(STORESCU).exists():
        sys.exit(f"{STORESCU} not found: apt-get install dcmtk")
    work = Path(tempfile.mkdtemp(prefix="radpulse-pipeline-"))
    stack: Stack | None = None
    result: dict[str, Any] = {"cores": os.cpu_count(), "idle_close_s": args.idle_close_s, "tick_s": args.tick_s,
                              "flush_s": args.flush_s, "broker": args.bootstrap or "embedded tansu"}
    try:
        with console.status("starting broker, edge, streams worker and sink"):
            t = time.perf_counter()
            stack = start_stack(work, idle_close_s=args.idle_close_s, tick_s=args.tick_s, flush_s=args.flush_s,
                                bootstrap=args.bootstrap)
            warm_up(stack)
            result["startup_s"] = time.perf_counter() - t
        with console.status(f"throughput: simulator day at scale {scale} via storescu"):
            result["throughput"] = thr = throughput(stack, scale, args.senders, args.seed, args.timeout_s)
        reference = edge_rate or thr["edge_rate"]
        result["edge_rate_reference"] = reference
        result["edge_rate_source"] = "edge benchmark" if edge_rate else "phase 1 accepted rate"
        rate = args.rate or reference / 2
        with console.status(f"latency: {rate:.0f} single-instance exams/s for {latency_s:.0f} s"):
            result["latency"] = latency(stack, rate, latency_s, args.latency_senders, args.timeout_s)
        with console.status("streams alone: replaying the edge's events to a fresh worker"):
            result["streams"] = streams_alone(stack, args.timeout_s)
        result["keeps_up"] = keeps_up(result)
        console.print(render(result))
        return result
    finally:
        _close_readers()
        if stack is not None:
            stop_stack(stack)
        if args.keep:
            console.print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def keeps_up(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's target: the pipeline keeps up with the edge's own throughput (the reference rate)."""
    ref = result["edge_rate_reference"]
    thr, streams = result["throughput"], result["streams"]
    return {
        # end to end: nothing queues up behind the edge (rows and streams done within 10% of the sending time)
        "pipeline": thr["pipeline_rate"] >= 0.9 * thr["edge_rate"],
        "pipeline_vs_reference": thr["pipeline_rate"] >= ref,
        "streams_vs_reference": streams["streams_rate"] >= ref,
    }


def render(result: dict[str, Any]) -> Table:
    thr, lat, st, ok = result["throughput"], result["latency"], result["streams"], result["keeps_up"]
    ref = result["edge_rate_reference"]

    def verdict(met: bool) -> str:
        return "met" if met else "[bold red]MISSED[/]"

    table = Table(title=f"pipeline: C-STORE → Kafka ({result['broker']}) → Faust → sink → chDB ({result['cores']} "
                        f"cores; idle close {result['idle_close_s']} s, tick {result['tick_s']} s, sink flush "
                        f"{result['flush_s']} s)")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    table.add_row("day sent", f"{thr['instances']} instances, {thr['exams']} exams, {thr['devices']} devices, "
                  f"{thr['senders']} storescu at a time", "")
    table.add_row("edge accepted", _fmt(thr["edge_rate"], " inst/s", 0) + f" (last response after "
                  f"{thr['sent_s']:.1f} s)", "")
    table.add_row("rows in instances FINAL / streams committed",
                  f"after {thr['rows_s']:.1f} s / {thr['streamed_s']:.1f} s "
                  f"(lag after last C-STORE {thr['lag_after_last_cstore_s']:.1f} s)", "")
    table.add_row("pipeline events/s (C-STORE → rows, streams done)", _fmt(thr["pipeline_rate"], " ev/s", 0),
                  f"≥ edge accepted ×0.9: {verdict(ok['pipeline'])}; ≥ {ref:.0f} ({result['edge_rate_source']}): "
                  f"{verdict(ok['pipeline_vs_reference'])}")
    table.add_row("every exam complete in exams_latest", f"after {thr['complete_s']:.1f} s "
                  f"({_fmt(thr['pipeline_rate_to_complete'], ' ev/s', 0)}, includes the {result['idle_close_s']} s "
                  f"idle close); {thr['exams_complete_total']} complete exams", "")
    table.add_row("exams whose instance_count ≠ their instance rows", f"{thr['exams_with_wrong_instance_count']} "
                  f"({thr['instances_missing_from_exams']} instances missing)",
                  "0: " + verdict(thr["exams_with_wrong_instance_count"] == 0))
    table.add_row("rows the sink wrote during the day", ", ".join(
        f"{t} {n}" for t, n in thr["sink_rows_written"].items()), "")
    table.add_row("CPU ms per instance during the day", ", ".join(
        f"{k} {v:.1f}" for k, v in thr["cpu_ms_per_instance"].items()), "")
    table.add_row("streams alone events/s (edge events produced flat out to a warmed worker)",
                  _fmt(st["streams_rate"], " ev/s", 0) + f" ({st['events']} events in {st['committed_s']:.1f} s; "
                  f"all {st['exams']} exams complete after {st['complete_s']:.1f} s, "
                  f"{st['instances_missing_from_exams']} instances missing from their counts; worker CPU "
                  f"{st['worker_cpu_ms_per_event']:.1f} ms/event)",
                  f"≥ {ref:.0f}: {verdict(ok['streams_vs_reference'])}")
    table.add_row("pipeline's streams worker after the pace",
                  f"every exam complete {st['all_exams_complete_after_pace_s']:.1f} s after the last one was "
                  f"visible; worker still busy (> 20% CPU) {st['worker_busy_after_all_complete_s']:.0f} s longer; "
                  f"then {st['idle_worker_cpu_pct']:.0f}% of a core idle with {st['idle_worker_exams_held']} exams "
                  "in its table", "")
    table.add_row("latency pace", f"{_fmt(lat['achieved_rate'], ' exams/s', 0)} achieved (asked "
                  f"{lat['target_rate']:.0f}), {lat['exams']} single-instance exams, {lat['senders']} associations", "")
    table.add_row("latency C-STORE response → exam row visible", f"P50 {_fmt(lat['p50_s'], ' s', 2)}, P95 "
                  f"{_fmt(lat['p95_s'], ' s', 2)}, P99 {_fmt(lat['p99_s'], ' s', 2)}, max {_fmt(lat['max_s'], ' s', 2)}"
                  f"; {lat['missing']} never visible", f"P99 < {LATENCY_TARGET_S:.0f} s: {verdict(lat['met'])}")
    table.add_row("  CPU ms per exam during the pace", ", ".join(
        f"{k} {v:.1f}" for k, v in lat["cpu_ms_per_exam"].items()) + " (senders: own process)", "")
    table.add_row("  of which (P50)", f"edge receive → response {_fmt(lat['p50_edge_receive_to_response_s'], ' s', 3)}"
                  f"; receive → streams publish {_fmt(lat['p50_edge_receive_to_streams_publish_s'], ' s', 3)}; "
                  f"publish → visible {_fmt(lat['p50_streams_publish_to_visible_s'], ' s', 2)}", "")
    return table


if __name__ == "__main__":
    main()
