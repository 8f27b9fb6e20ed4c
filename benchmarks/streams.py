"""Streams benchmark: the radpulse streams worker alone, side by side with Faust's own ceiling in the same run.

Synthetic InstanceEvents (``--exams`` exams of ``--per-exam`` instances, a dose report in every CT exam, 10 % of the
instances sent twice) are Avro-encoded and produced with confluent-kafka to a fresh topic on the embedded broker
(or ``--bootstrap``). Measured, each on a fresh worker subprocess warmed with one event:

* **radpulse**: ``python -m cli.main streams`` — events/s until its consumer group has committed every event; the
  time until every exam is published complete with every instance counted (instances missing are reported); how
  long the worker stays busy (CPU ≥ 10 % of a core in 1 s windows) after the last exam is complete.
* **Faust ceiling**: ``benchmarks.faust_ceiling`` — one agent, one table update per event, on a copy of the same
  events — events/s until committed.

    python -m benchmarks.streams [--quick] [--exams 200] [--per-exam 150]
    python -m benchmarks --only streams [--quick]

It reports, it doesn't gate: every missed target is printed as MISSED (targets: ≥ 3,000 events/s; idle within
5 s of the last exam; zero instances missing).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.edge_throughput import cpu_seconds, stop_process

console = Console()
REPO = Path(__file__).resolve().parents[1]
TARGET_RATE = 3000.0
TARGET_IDLE_S = 5.0
PARTITIONS = 4


def synthetic_events(exams: int, per_exam: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, encoded InstanceEvent) in arrival order (exams interleaved like devices sending at once), and the
    number of distinct instances."""
    from schemas import codec
    from schemas.events import AccumulatedDose, DoseReport, InstanceEvent

    rng = random.Random(seed)
    t0 = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)
    per_study: list[list[tuple[bytes, bytes]]] = []
    distinct = 0
    for x in range(exams):
        study = f"2.25.{10**20 + x}"
        modality = ("CT", "MR", "DX", "CT")[x % 4]
        start = t0 + timedelta(minutes=7 * x)
        out = []
        for i in range(per_exam):
            sr = modality == "CT" and i == per_exam - 1
            ev = InstanceEvent(
                event_id=str(uuid.UUID(int=rng.getrandbits(128))), site_id="bench", edge_id="edge",
                received_at=start + timedelta(seconds=i), calling_ae=f"{modality}1",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67" if sr else "1.2.840.10008.5.1.4.1.1.2",
                transfer_syntax_uid="1.2.840.10008.1.2.1", instance_pseudonym=f"i{x}.{i}", study_pseudonym=study,
                series_pseudonym=f"s{x}.{i // 50}", modality="SR" if sr else modality, device_id=f"{modality}1",
                station_name=f"{modality}1", image_type=() if sr else ("ORIGINAL", "PRIMARY", "AXIAL"),
                acquisition_datetime_utc=start + timedelta(seconds=i), study_description="BENCH",
                dose_report=DoseReport(kind="CT", totals=AccumulatedDose(ct_dlp_total_mgy_cm=300.0)) if sr else None,
            )
            value = codec.encode(ev)
            out.append((study.encode(), value))
            distinct += 1
            if rng.random() < 0.1:
                out.append((study.encode(), value))  # a resend
        per_study.append(out)
    events: list[tuple[bytes, bytes]] = []
    lanes = [iter(s) for s in per_study]
    while lanes:  # a few exams at a time, like a department's devices sending together
        batch, lanes = lanes[:8], lanes[8:]
        while batch:
            for it in list(batch):
                item = next(it, None)
                if item is None:
                    batch.remove(it)
                else:
                    events.append(item)
    return events, distinct


def produce(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True,
                         "compression.type": "lz4"})
    t0 = time.perf_counter()
    for key, value in events:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return time.perf_counter() - t0


_readers: dict[tuple[str, str], Any] = {}


def committed(bootstrap: str, topic: str, group: str) -> int:
    """Sum of a group's committed offsets on `topic` (one reader per group, kept: a new client per poll would load
    the broker more than the workers measured)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    if (bootstrap, group) not in _readers:
        _readers[(bootstrap, group)] = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                                 "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in _readers[(bootstrap, group)].committed(tps, timeout=5))
    except KafkaException:
        return 0


def close_readers() -> None:
    for c in _readers.values():
        c.close()
    _readers.clear()


def ensure(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics
           if t not in admin.list_topics(timeout=10).topics]
    for fut in admin.create_topics(new).values() if new else ():
        fut.result(30)


class ExamReader:
    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 50, "topic.metadata.refresh.interval.ms": 1000})
        self.consumer.subscribe([topic])
        self.latest: dict[bytes, tuple[int, str, int]] = {}
        self.versions = 0

    def poll(self) -> None:
        from schemas import codec
        from schemas.events import Exam

        for msg in self.consumer.consume(2000, 0.05):
            if msg.error():
                continue
            exam = codec.decode(Exam, msg.value() or b"")
            self.versions += 1
            key = msg.key() or b""
            if exam.version >= self.latest.get(key, (0, "", 0))[0]:
                self.latest[key] = (exam.version, exam.status, exam.instance_count)

    def complete(self) -> tuple[int, int]:
        done = [n for _v, status, n in self.latest.values() if status == "complete"]
        return len(done), sum(done)

    def close(self) -> None:
        self.consumer.close()


def wait(what: str, cond: Any, timeout_s: float, every_s: float = 0.05) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if cond():
            return time.perf_counter() - t0
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not reached within {timeout_s:.0f} s")


def busy_after(pid: int, limit_s: float = 120) -> float:
    """Seconds until the process uses < 10 % of a core over a 1 s window."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        c0 = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - c0 < 0.1:
            return time.perf_counter() - t0 - 1.0
    return limit_s


def run_radpulse(bootstrap: str, work: Path, events: list[tuple[bytes, bytes]], n_exams: int, distinct: int,
                 timeout_s: float) -> dict[str, Any]:
    prefix = "b" + uuid.uuid4().hex[:8]
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull, "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": prefix, "RADPULSE_KAFKA__PARTITIONS": str(PARTITIONS),
        "RADPULSE_STREAMS__DATA_DIR": str(work / prefix), "RADPULSE_STREAMS__IDLE_CLOSE_S": "3",
        "RADPULSE_STREAMS__TICK_INTERVAL_S": "0.5", "RADPULSE_SITE__TIMEZONE": "Asia/Shanghai",
    }
    topic = f"{prefix}.instances"
    ensure(bootstrap, [topic, f"{prefix}.exams"])
    log = open(work / f"{prefix}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "streams", "--web-port", "0", "--loglevel", "warn"],
                            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    reader = ExamReader(bootstrap, f"{prefix}.exams")
    try:
        produce(bootstrap, topic, events[:1])
        wait("the radpulse worker published its warm-up exam", lambda: (reader.poll(), reader.latest)[1], 180)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        produce_s = produce(bootstrap, topic, events[1:])
        marks: dict[str, float] = {}

        def poll() -> bool:
            reader.poll()
            now = time.perf_counter() - t0
            if "committed" not in marks and committed(bootstrap, topic, f"{prefix}-streams") >= len(events):
                marks["committed"] = now
                marks["cpu_s"] = cpu_seconds(proc.pid) - cpu0
            done, held = reader.complete()
            if "complete" not in marks and done >= n_exams and held >= distinct:
                marks["complete"] = now
            return "committed" in marks and "complete" in marks

        try:
            wait("the radpulse worker committed every event and completed every exam", poll, timeout_s, 0.2)
        except TimeoutError:
            log.flush()
            tail = (work / f"{prefix}.log").read_text(errors="replace")[-2000:]
            console.print(f"[bold red]timed out[/] (worker exit code {proc.poll()}); its log ends:\n{tail}")
            marks.setdefault("complete", float("nan"))
            marks.setdefault("committed", float("nan"))
            marks.setdefault("cpu_s", cpu_seconds(proc.pid) - cpu0)
        busy = busy_after(proc.pid)
        done, held = reader.complete()
        return {"events": len(events) - 1, "exams": n_exams, "produce_s": produce_s,
                "committed_s": marks["committed"], "rate": (len(events) - 1) / marks["committed"],
                "complete_s": marks["complete"], "cpu_ms_per_event": marks["cpu_s"] * 1000 / (len(events) - 1),
                "exams_complete": done, "instances_counted": held, "instances_missing": distinct - held,
                "exam_versions_published": reader.versions, "busy_after_complete_s": busy}
    finally:
        reader.close()
        stop_process(proc)


def run_faust(bootstrap: str, work: Path, events: list[tuple[bytes, bytes]], timeout_s: float) -> dict[str, Any]:
    app_id = "f" + uuid.uuid4().hex[:8]
    topic = f"{app_id}.instances"
    ensure(bootstrap, [topic])
    log = open(work / f"{app_id}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.faust_ceiling", bootstrap, topic, app_id,
                             str(PARTITIONS)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        produce(bootstrap, topic, events[:1])
        wait("the Faust ceiling worker committed its warm-up event", lambda: committed(bootstrap, topic, app_id) >= 1,
             180, every_s=0.2)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        produce(bootstrap, topic, events[1:])
        committed_s = wait("the Faust ceiling worker committed every event",
                           lambda: committed(bootstrap, topic, app_id) >= len(events), timeout_s, 0.2)
        committed_s = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        return {"events": len(events) - 1, "committed_s": committed_s, "rate": (len(events) - 1) / committed_s,
                "cpu_ms_per_event": cpu * 1000 / (len(events) - 1)}
    finally:
        stop_process(proc)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 exams × 100 instances")
    parser.add_argument("--exams", type=int, default=200)
    parser.add_argument("--per-exam", type=int, default=150)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: a fresh embedded broker)")
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--work", type=Path, help="keep the workers' logs in this folder (default: a temporary one)")
    parser.add_argument("--skip-faust", action="store_true", help="measure the radpulse worker only")
    args = parser.parse_args(argv)
    exams, per_exam = (60, 100) if args.quick else (args.exams, args.per_exam)
    events, distinct = synthetic_events(exams, per_exam)
    console.print(f"{len(events)} events ({distinct} distinct instances) in {exams} exams")
    broker = None
    with tempfile.TemporaryDirectory(prefix="radpulse-bench-streams-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        bootstrap = args.bootstrap
        if not bootstrap:
            from cli.broker import EmbeddedBroker, free_port

            broker = EmbeddedBroker(port=free_port(), log_path=work / "broker.log").start()
            bootstrap = broker.bootstrap
        try:
            faust_res = {"rate": float("nan"), "cpu_ms_per_event": float("nan")} if args.skip_faust else \
                run_faust(bootstrap, work, events, args.timeout_s)
            ours = run_radpulse(bootstrap, work, events, exams, distinct, args.timeout_s)
        finally:
            close_readers()
            if broker is not None:
                broker.stop()
    ratio = ours["rate"] / faust_res["rate"]
    console.print(f"Faust ceiling (one table update per event): {faust_res['rate']:,.0f} events/s, "
                  f"{faust_res['cpu_ms_per_event']:.2f} ms CPU/event")
    console.print(f"radpulse streams: {ours['rate']:,.0f} events/s ({ratio:.2f} × Faust's ceiling), "
                  f"{ours['cpu_ms_per_event']:.2f} ms CPU/event; every exam complete with every instance after "
                  f"{ours['complete_s']:.1f} s; {ours['exam_versions_published']} exam versions for {exams} exams; "
                  f"busy {ours['busy_after_complete_s']:.1f} s after; missing {ours['instances_missing']}")
    missed = []
    for ok, text in ((ours["rate"] >= TARGET_RATE, f"≥ {TARGET_RATE:,.0f} events/s"),
                     (ours["busy_after_complete_s"] <= TARGET_IDLE_S, f"idle within {TARGET_IDLE_S:.0f} s"),
                     (ours["instances_missing"] == 0, "zero instances missing")):
        console.print(("[green]met[/] " if ok else "[bold red]MISSED[/] ") + text)
        if not ok:
            missed.append(f"streams: {text} (radpulse {ours['rate']:,.0f} events/s, Faust's ceiling "
                          f"{faust_res['rate']:,.0f})")
    return {"faust_ceiling": faust_res, "radpulse": ours, "ratio_to_faust": ratio, "missed": missed}


if __name__ == "__main__":
    main()
