"""Restart-recovery benchmark: a streams worker starting on a year of a hospital's history in its exam changelog,
side by side with one starting on only ``[streams] retain_days`` of it.

The history is simulated, not replayed: the exam table's changelog records are written straight to the changelog
topic (``<prefix>-streams-exams-changelog``) with confluent-kafka, the way the worker writes them
(``streams.examstore``): per exam its sealed instance-hash chunks (``<exam>#<i>``, 1 KB each), its dose state
(``<exam>#d``) and ``--puts-per-exam`` versions of its exam record (in the last 7 days one per instance, as the
worker writes it), one changelog partition per exam; and, for every exam whose last instance is older than
``retain_days``, the eviction's tombstones (chunks, dose, exam) a minute after its retention ends. The KPI
agent's table of complete exams (``kpi_exams``, one partition) gets each exam once and its tombstone likewise.
Records carry their simulated time as timestamp, so on Apache Kafka segments roll by simulated time
(``segment.ms``: the worker's, one day, or ``--segment-ms``) and the log cleaner can compact all but the newest.

Measured per run, on a fresh worker subprocess (``python -m cli.main streams``) started on that changelog: the time
from its start until a freshly sent instance of a recent exam is published (tables recovered, agents running), and
that this publication is the recovered exam's next version with one more instance (else the table was not
recovered); peak RSS (``VmHWM``) of the worker and its RSS once idle. The target (issue 10): under 60 s with a year
of history, and memory bounded by the retention, not the history.

    python -m benchmarks.recovery [--quick] [--exams-per-year 120000] [--bootstrap HOST:PORT]
    python -m benchmarks --only recovery [--quick]

On the embedded tansu broker the changelog is never compacted (and lives only as long as the broker process):
the worker reads every record of the year, tombstones included.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.edge_throughput import stop_process

console = Console(width=shutil.get_terminal_size((170, 40)).columns)
REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
TARGET_S = 60.0
RETAIN_DAYS = 8.0
KPI = -1  # records of the KPI agent's `kpi_exams` table
RAW_DAYS = 7  # Kafka's default segment.ms: the days of per-instance exam rewrites a log can hold uncompacted
# modality, share of exams, instances per exam (mean), dose report (a `#d` record)
MIX = (("CT", 0.30, 400, True), ("MR", 0.20, 300, False), ("DX", 0.40, 2, False), ("MG", 0.05, 4, True),
       ("RF", 0.05, 30, True))


def partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """librdkafka's default (consistent_random) partition of a keyed record: the edge keys instances by study."""
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions


def _templates() -> tuple[dict[str, Any], dict[str, Any]]:
    """A real exam state and dose state (folded from a synthetic CT exam with a dose report), to copy."""
    from benchmarks.streams import synthetic_events
    from schemas import codec
    from schemas.events import InstanceEvent
    from streams import dose as dose_mod
    from streams.exams import fold

    events, _ = synthetic_events(1, 20)
    state = dose_state = None
    for _key, value in events:
        ev = codec.decode(InstanceEvent, value)
        state, _ = fold(state, ev, time.time())
        dose_state, _ = dose_mod.fold_dose(dose_state, ev)
    assert state is not None and dose_state is not None
    return state.to_dict(), dose_state.to_dict()


class History:
    """A year of exams, generated day by day in simulated-time order (memory: the last `retain_days` of exams)."""

    def __init__(self, exams_per_year: int, days: float, retain_days: float, puts_per_exam: int, now: datetime,
                 seed: int = 11) -> None:
        self.per_day = exams_per_year / 365.0
        self.days, self.retain_days, self.puts = days, retain_days, puts_per_exam
        self.now = now
        self.rng = random.Random(seed)
        self.exam_t, self.dose_t = _templates()
        self.recent: list[tuple[str, dict[str, Any]]] = []  # complete exams within retention: the probe's pick
        self.exams = 0
        self.live_exams = 0

    def _exam(self, n: int, t: datetime) -> tuple[str, dict[str, Any], int, bool]:
        rng = self.rng
        r, acc = rng.random(), 0.0
        modality, mean, dose = MIX[0][0], MIX[0][2], MIX[0][3]
        for kind in MIX:
            acc += kind[1]
            if r < acc:
                modality, mean, dose = kind[0], kind[2], kind[3]
                break
        count = max(1, int(rng.expovariate(1 / mean))) if mean > 4 else mean
        key = f"2.25.{10**30 + n}"
        sealed, tail = divmod(count, 128)
        t_us = int(t.timestamp() * 1e6)
        raw = dict(self.exam_t) | {
            "exam_key": key, "modality": modality, "device_id": f"{modality}{n % 3}",
            "calling_ae": f"{modality}{n % 3}", "station_name": f"{modality}{n % 3}",
            "version": 2, "status": "complete", "published": 2,
            "instance_count": count, "seen_sealed": sealed, "partition": partition_of(key.encode()),
            "seen_tail": base64.b64encode(rng.randbytes(8 * tail)).decode("ascii"),
            "first_received": t_us - count * 200_000, "last_received": t_us, "timed_start": t_us - count * 200_000,
            "timed_end": t_us, "any_start": t_us - count * 200_000, "any_end": t_us,
            "last_update_wall": t.timestamp(), "has_dose_report": dose,
            "series": [f"s{n}.{i}" for i in range(min(8, 1 + count // 100))],
        }
        return key, raw, sealed, dose

    def records(self) -> Iterator[tuple[int, bytes, bytes | None, int]]:
        """(partition, key, value or None for a tombstone, timestamp ms) in simulated-time order; partition
        ``KPI`` is the KPI agent's table of complete exams (``kpi_exams``, one partition)."""
        start = self.now - timedelta(days=self.days)
        pending: list[tuple[datetime, str, int, bool]] = []  # evictions to come, in time order
        n = 0
        day = 0
        while True:
            day_start = start + timedelta(days=day)
            if day_start >= self.now:
                break
            today = int(self.per_day) + (1 if self.rng.random() < self.per_day % 1 else 0)
            times = sorted(day_start + timedelta(seconds=self.rng.uniform(7 * 3600, 20 * 3600)) for _ in range(today))
            for t in times:
                if t >= self.now:
                    break
                while pending and pending[0][0] <= t:
                    yield from self._evict(*pending.pop(0))
                n += 1
                key, raw, sealed, dose = self._exam(n, t)
                count = raw["instance_count"]
                kb = json.dumps(key).encode()
                p = partition_of(key.encode())
                ms = int(t.timestamp() * 1000)
                for i in range(sealed):
                    yield p, json.dumps(f"{key}#{i}").encode(), json.dumps(
                        base64.b64encode(self.rng.randbytes(8 * 128)).decode("ascii")).encode(), ms
                if dose:
                    yield p, json.dumps(f"{key}#d").encode(), json.dumps(self.dose_t).encode(), ms
                # the last RAW_DAYS as a worker writes them, one exam record per instance: Kafka's cleaner does not
                # compact a partition's active segment; older rewrites stand for a cleaned (on tansu, a smaller) log
                puts = count if t > self.now - timedelta(days=RAW_DAYS) else self.puts
                for v in range(puts):
                    last = v == puts - 1
                    yield p, kb, json.dumps(raw | ({} if last else {"status": "in_progress", "version": 1,
                                                                    "published": 0})).encode(), ms
                yield KPI, self._kpi_key(raw), json.dumps(self._kpi_value(raw)).encode(), ms
                evict_at = t + timedelta(days=self.retain_days, minutes=1)
                if evict_at <= self.now:
                    pending.append((evict_at, key, sealed, dose, self._kpi_key(raw)))
                else:
                    self.live_exams += 1
                    if t > self.now - timedelta(days=1):
                        self.recent.append((key, raw))
            day += 1
        self.exams = n
        for ev in pending:
            yield from self._evict(*ev)

    def _kpi_key(self, raw: dict[str, Any]) -> bytes:
        return json.dumps(f"{raw['station_name']}|{raw['exam_key']}").encode()

    def _kpi_value(self, raw: dict[str, Any]) -> str:
        """The exam as the KPI agent keeps it: base64 of its Avro encoding."""
        from schemas import codec
        from streams.exams import ExamState, as_exam

        exam = as_exam(ExamState.from_dict(raw), datetime.fromtimestamp(raw["last_update_wall"], UTC))
        return base64.b64encode(codec.encode(exam)).decode("ascii")

    def _evict(self, t: datetime, key: str, sealed: int, dose: bool,
               kpi_key: bytes) -> Iterator[tuple[int, bytes, None, int]]:
        p, ms = partition_of(key.encode()), int(t.timestamp() * 1000)
        for i in range(sealed):
            yield p, json.dumps(f"{key}#{i}").encode(), None, ms
        if dose:
            yield p, json.dumps(f"{key}#d").encode(), None, ms
        yield p, json.dumps(key).encode(), None, ms
        yield KPI, kpi_key, None, ms  # the KPI agent forgets exams older than its retention too


def create_changelog(bootstrap: str, topic: str, segment_ms: int | None, steady: bool,
                     partitions: int = PARTITIONS) -> None:
    """The changelog as the worker creates it (``streams.worker.CHANGELOG_CONFIG``). With `steady` (a broker that
    compacts), tombstones go 1 s after a cleaning instead of a day, so that the benchmark's wait shows the log as it
    stands a day after the evictions, and the cleaner starts on any dirty segment."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.worker import CHANGELOG_CONFIG

    config = dict(CHANGELOG_CONFIG)
    if segment_ms:
        config["segment.ms"] = str(segment_ms)
    if steady:
        config |= {"min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                             config=config)]).values():
        fut.result(30)


def write_history(bootstrap: str, topic: str, kpi_topic: str, history: History) -> dict[str, Any]:
    """Produce the records; each partition's last record goes alone in its own batch, after the others: tansu
    reports a partition's end as its last batch's first offset + 1, and Faust's recovery reads up to that end."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all", "enable.idempotence": True,
                         "compression.type": "lz4", "batch.size": 1_000_000, "queue.buffering.max.kbytes": 512_000,
                         "message.max.bytes": 2_000_000})
    held: dict[int, tuple[bytes, bytes | None, int]] = {}  # by partition, KPI for kpi_topic's one
    counts = {"records": 0, "tombstones": 0, "bytes": 0}
    t0 = time.perf_counter()

    def send(p: int, key: bytes, value: bytes | None, ms: int) -> None:
        while True:
            try:
                producer.produce(kpi_topic if p == KPI else topic, value, key, partition=max(p, 0), timestamp=ms)
                return
            except BufferError:
                producer.poll(0.05)

    for p, key, value, ms in history.records():
        if p in held:
            send(p, *held[p])
        held[p] = (key, value, ms)
        counts["records"] += 1
        counts["tombstones"] += value is None
        counts["bytes"] += len(key) + len(value or b"")
    producer.flush(300)
    for p, rec in held.items():
        send(p, *rec)
        producer.flush(30)
    counts["write_s"] = time.perf_counter() - t0
    return counts


def count_records(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> int:
    """Records a reader of the changelog gets now (after whatever compaction the broker did)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "fetch.max.bytes": 50_000_000})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n, eof, deadline = 0, set(), time.monotonic() + 300
    while len(eof) < partitions and time.monotonic() < deadline:
        for msg in c.consume(10_000, 1.0):
            if msg.error():
                eof.add(msg.partition())
            else:
                n += 1
    c.close()
    return n


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of a process, in MB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return out


def probe_event(key: str, raw: dict[str, Any]) -> bytes:
    """A new instance for a recovered exam (its last instance + 1 s)."""
    from schemas import codec
    from schemas.events import InstanceEvent

    t = datetime.fromtimestamp(raw["last_received"] / 1e6, UTC) + timedelta(seconds=1)
    ev = InstanceEvent(
        event_id=str(uuid.uuid4()), site_id="bench", edge_id="edge", received_at=datetime.now(UTC),
        calling_ae=raw["calling_ae"], sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", instance_pseudonym=f"probe.{uuid.uuid4().hex}",
        study_pseudonym=key, series_pseudonym="probe", modality=raw["modality"], device_id=raw["device_id"],
        station_name=raw["station_name"], image_type=("ORIGINAL", "PRIMARY", "AXIAL"), acquisition_datetime_utc=t,
        study_description="BENCH")
    return codec.encode(ev)


def run(bootstrap: str, work: Path, history: History, *, segment_ms: int | None, compact_wait_s: float,
        timeout_s: float, label: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer

    from benchmarks.streams import ensure
    from schemas import codec
    from schemas.events import Exam

    prefix = "r" + uuid.uuid4().hex[:8]
    changelog, kpi_changelog = f"{prefix}-streams-exams-changelog", f"{prefix}-streams-kpi_exams-changelog"
    ensure(bootstrap, [f"{prefix}.instances", f"{prefix}.exams"])
    create_changelog(bootstrap, changelog, segment_ms, steady=compact_wait_s > 0)
    create_changelog(bootstrap, kpi_changelog, segment_ms, steady=compact_wait_s > 0, partitions=1)
    with console.status(f"{label}: writing the changelog"):
        written = write_history(bootstrap, changelog, kpi_changelog, history)
    if compact_wait_s:
        with console.status(f"{label}: giving the log cleaner {compact_wait_s:.0f} s"):
            time.sleep(compact_wait_s)
    with console.status(f"{label}: counting the changelog's records"):
        readable = count_records(bootstrap, changelog) + count_records(bootstrap, kpi_changelog, 1)
    key, raw = history.recent[len(history.recent) // 2]
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull, "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": prefix, "RADPULSE_KAFKA__PARTITIONS": str(PARTITIONS),
        "RADPULSE_STREAMS__DATA_DIR": str(work / prefix), "RADPULSE_STREAMS__RETAIN_DAYS": str(history.retain_days),
        "RADPULSE_SITE__TIMEZONE": "Asia/Shanghai",
    }
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{prefix}", "auto.offset.reset": "earliest",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                       "topic.metadata.refresh.interval.ms": 1000})
    reader.subscribe([f"{prefix}.exams"])
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(f"{prefix}.instances", probe_event(key, raw), key.encode(), partition=partition_of(key.encode()))
    producer.flush(30)
    log = open(work / f"{prefix}.log", "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "streams", "--web-port", "0", "--loglevel", "warn"],
                            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    got: Exam | None = None
    peak: dict[str, int] = {}
    try:
        with console.status(f"{label}: worker recovering"):
            while time.perf_counter() - t0 < timeout_s and got is None and proc.poll() is None:
                peak = proc_status(proc.pid) or peak
                for msg in reader.consume(100, 0.1):
                    if not msg.error() and msg.key() == key.encode():
                        got = codec.decode(Exam, msg.value() or b"")
        ready_s = time.perf_counter() - t0 if got is not None else float("nan")
        time.sleep(3)  # idle: the scan has had its first full pass
        after = proc_status(proc.pid) or peak
    finally:
        reader.close()
        stop_process(proc)
    if got is None:
        tail = (work / f"{prefix}.log").read_text(errors="replace")[-1500:]
        console.print(f"[bold red]{label}: the probe was not published within {timeout_s:.0f} s[/]; log:\n{tail}")
    recovered = got is not None and got.version == raw["version"] + 1 and got.instance_count == raw[
        "instance_count"] + 1
    return {"label": label, "exams": history.exams, "live_exams": history.live_exams, **written,
            "readable_records": readable, "ready_s": ready_s, "recovered": recovered,
            "probe": None if got is None else {"version": got.version, "instance_count": got.instance_count,
                                               "expected_version": raw["version"] + 1,
                                               "expected_instance_count": raw["instance_count"] + 1},
            "peak_rss_mb": after.get("VmHWM", 0), "idle_rss_mb": after.get("VmRSS", 0)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller hospital: 40,000 exams a year")
    parser.add_argument("--exams-per-year", type=int, default=120_000)
    parser.add_argument("--days", type=float, default=365.0, help="days of history")
    parser.add_argument("--retain-days", type=float, default=RETAIN_DAYS, help="[streams] retain_days")
    parser.add_argument("--puts-per-exam", type=int, default=3,
                        help="exam-record versions per exam older than 7 days (a worker writes one per instance; "
                        "compacted, one is left)")
    parser.add_argument("--bootstrap", help="an existing Kafka (default: a fresh embedded tansu broker)")
    parser.add_argument("--segment-ms", type=int, help="changelog segment.ms (default: the worker's, 1 day; records "
                        "carry simulated time, so segments roll by simulated time)")
    parser.add_argument("--compact-wait-s", type=float, default=0.0, help="wait this long for the log cleaner "
                        "(Apache Kafka; the topic then gets min.cleanable.dirty.ratio 0.01, delete.retention.ms 1 s)")
    parser.add_argument("--timeout-s", type=float, default=600)
    args = parser.parse_args(argv)
    per_year = 40_000 if args.quick and args.exams_per_year == 120_000 else args.exams_per_year
    now = datetime.now(UTC)
    results = []
    broker = None
    with tempfile.TemporaryDirectory(prefix="radpulse-bench-recovery-") as tmp:
        work = Path(tmp)
        bootstrap = args.bootstrap
        if not bootstrap:
            from cli.broker import EmbeddedBroker, free_port

            broker = EmbeddedBroker(port=free_port(), log_path=work / "broker.log").start()
            bootstrap = broker.bootstrap
        try:
            for label, days in (("retention only", args.retain_days), ("a year", args.days)):
                history = History(per_year, days, args.retain_days, args.puts_per_exam, now)
                results.append(run(bootstrap, work, history, segment_ms=args.segment_ms,
                                   compact_wait_s=args.compact_wait_s, timeout_s=args.timeout_s, label=label))
        finally:
            if broker is not None:
                broker.stop()
    table = Table(title=f"restart recovery ({args.bootstrap or 'embedded tansu'}, {per_year:,} exams/year, "
                        f"retain_days {args.retain_days:g}, {args.puts_per_exam} exam-record puts per exam"
                        + (f", segment.ms {args.segment_ms}" if args.segment_ms else "") + ")")
    for col in ("history", "exams (live)", "changelog records (tombstones), MB", "records readable",
                "start → probe published", "recovered", "worker peak RSS / idle RSS"):
        table.add_column(col)
    for r in results:
        table.add_row(r["label"], f"{r['exams']:,} ({r['live_exams']:,})",
                      f"{r['records']:,} ({r['tombstones']:,}), {r['bytes'] / 1e6:,.0f}", f"{r['readable_records']:,}",
                      f"{r['ready_s']:.1f} s", "yes" if r["recovered"] else f"[bold red]NO[/] {r['probe']}",
                      f"{r['peak_rss_mb']} / {r['idle_rss_mb']} MB")
    console.print(table)
    year, base = results[-1], results[0]
    for ok, text in ((year["ready_s"] < TARGET_S, f"a year of history recovered in under {TARGET_S:.0f} s"),
                     (year["recovered"] and base["recovered"], "every table recovered (the probe's next version)"),
                     (year["peak_rss_mb"] <= base["peak_rss_mb"] * 1.25 + 20,
                      "peak RSS with a year ≈ with retention only (bounded by the retention)")):
        console.print(("[green]met[/] " if ok else "[bold red]MISSED[/] ") + text)
    return {"runs": results, "exams_per_year": per_year, "broker": args.bootstrap or "embedded tansu"}


if __name__ == "__main__":
    main()
