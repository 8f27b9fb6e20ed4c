"""Synthetic events for tests and ``python -m sinks.bench``: insert rate through the batcher and exams_latest latency.

``python -m sinks.bench --url chdb:///tmp/radpulse-bench --instances 200000 --exams 100000`` (a fresh folder: the
benchmark writes into database ``bench`` and drops it first).
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from schemas.events import AccumulatedDose, DoseReport, Exam, Exposure, InstanceEvent, IrradiationEvent
from sinks.batcher import Batcher
from sinks.clickhouse import Database, connect
from sinks.migrate import migrate
from sinks.rows import COLUMNS, rows_for

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
MODALITIES = ("CT", "MR", "DX", "CR", "MG", "XA", "US")


def synthetic_instance(
    i: int,
    *,
    study: int | None = None,
    site_id: str = "site-1",
    received_at: datetime | None = None,
    dose_events: int = 0,
) -> InstanceEvent:
    """Instance ``i`` of study ``study`` (default ``i // 50``); deterministic except ``received_at``."""
    study = i // 50 if study is None else study
    acquired = T0 + timedelta(minutes=study * 7, seconds=i % 50)
    report = None
    if dose_events:
        events = tuple(
            IrradiationEvent(
                event_pseudonym=f"ev-{study}-{k}",
                datetime_started_utc=acquired + timedelta(seconds=k),
                acquisition_type="SPIRAL",
                ctdivol_mgy=8.0 + k,
                dlp_mgy_cm=300.0 + k,
                ctdi_phantom="BODY32",
            )
            for k in range(dose_events)
        )
        totals = AccumulatedDose(total_events=dose_events, ct_dlp_total_mgy_cm=sum(e.dlp_mgy_cm or 0 for e in events))
        report = DoseReport(kind="CT", template_id="10011", start_utc=acquired, totals=totals, events=events)
    return InstanceEvent(
        event_id=f"evt-{i}",
        site_id=site_id,
        edge_id="edge-1",
        received_at=received_at or datetime.now(UTC),
        calling_ae="CT01",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        instance_pseudonym=f"inst-{i}",
        study_pseudonym=f"study-{study}",
        series_pseudonym=f"series-{study}-{i % 3}",
        patient_pseudonym=f"pat-{study % 997}",
        modality=MODALITIES[study % len(MODALITIES)],
        manufacturer="ACME",
        model="Scanner 1",
        station_name="CT01",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        series_number=i % 3 + 1,
        instance_number=i % 50 + 1,
        patient_age_years=40 + study % 50,
        patient_sex="F",
        study_description="CT CHEST",
        study_datetime_utc=acquired.replace(second=0),
        acquisition_datetime_utc=acquired,
        exposure=Exposure(kvp=120.0, tube_current_ma=200.0, ctdivol_mgy=8.5),
        dose_report=report,
    )


def synthetic_exam(i: int, version: int, *, site_id: str = "site-1", status: str | None = None) -> Exam:
    """Exam ``i`` at ``version``: later versions have more instances and a later end."""
    start = T0 + timedelta(minutes=i * 7)
    return Exam(
        exam_key=f"study-{i}",
        site_id=site_id,
        version=version,
        status=status or ("complete" if version >= 3 else "in_progress"),
        updated_at=start + timedelta(minutes=version),
        modality=MODALITIES[i % len(MODALITIES)],
        station_name=f"ROOM{i % 9}",
        study_description="CT CHEST",
        series_descriptions=("AXIAL", "COR"),
        patient_pseudonym=f"pat-{i % 997}",
        start_utc=start,
        end_utc=start + timedelta(minutes=version),
        duration_s=60.0 * version,
        study_datetime_utc=start,
        series_count=version,
        instance_count=50 * version,
        first_received_at=start,
        last_received_at=start + timedelta(minutes=version),
    )


def bench_inserts(db: Database, n: int, batch_rows: int = 5000) -> float:
    """Rows/s of instances through rows.py → Batcher → insert (decoding excluded)."""
    events = [synthetic_instance(i) for i in range(n)]
    batcher = Batcher(batch_rows, max_age_s=1.0)
    start = time.perf_counter()
    for ev in events:
        for table, rows in rows_for(ev):
            batcher.add(table, rows, 0.0)
        if batcher.due(0.0):
            batcher.flush(lambda t, r: db.insert(t, r, COLUMNS[t]))
    batcher.flush(lambda t, r: db.insert(t, r, COLUMNS[t]))
    return n / (time.perf_counter() - start)


def bench_exams_latest(db: Database, n_exams: int, versions: int = 3) -> dict[str, float]:
    """Seconds for the same aggregate over the latest exam versions: FINAL, argMax and LIMIT 1 BY, first on
    unmerged parts (merges stopped: the worst case), then after OPTIMIZE … FINAL (the steady state)."""
    db.command("SYSTEM STOP MERGES exams")
    for v in range(1, versions + 1):
        rows = [r for i in range(n_exams) for _, rs in rows_for(synthetic_exam(i, v)) for r in rs]
        for k in range(0, len(rows), 50_000):
            db.insert("exams", rows[k : k + 50_000], COLUMNS["exams"])
    agg = "count(), sum(instance_count), avg(duration_s)"
    queries = {
        "FINAL (exams_latest)": f"SELECT modality, {agg} FROM exams_latest GROUP BY modality",
        "argMax": (
            f"SELECT modality, {agg} FROM (SELECT site_id, exam_key, argMax(modality, version) AS modality, "
            "argMax(instance_count, version) AS instance_count, argMax(duration_s, version) AS duration_s "
            "FROM exams GROUP BY site_id, exam_key) GROUP BY modality"
        ),
        "LIMIT 1 BY": (
            f"SELECT modality, {agg} FROM (SELECT * FROM exams ORDER BY site_id, exam_key, version DESC "
            "LIMIT 1 BY site_id, exam_key) GROUP BY modality"
        ),
        "FINAL, time range": (
            "SELECT station_name, count() FROM exams_latest "
            "WHERE start_utc >= '2024-03-20' AND start_utc < '2024-04-20' GROUP BY station_name"
        ),
    }
    out: dict[str, float] = {}
    for state in ("unmerged", "merged"):
        if state == "merged":
            db.command("SYSTEM START MERGES exams")
            db.command("OPTIMIZE TABLE exams FINAL")
        parts = db.scalar(
            f"SELECT count() FROM system.parts WHERE database = '{db.database}' AND table = 'exams' AND active"
        )
        answers = set()
        for label, sql in queries.items():
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                result = db.query(sql)
                best = min(best, time.perf_counter() - t)
            out[f"{label}, {state} ({db.scalar('SELECT count() FROM exams')} rows in {parts} parts)"] = best
            if "time range" not in label:
                answers.add(
                    tuple(sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in result.rows))
                )
        assert len(answers) == 1, "FINAL, argMax and LIMIT 1 BY disagree"
    total = db.scalar("SELECT count() FROM exams_latest")
    assert total == n_exams, f"exams_latest has {total} rows, expected {n_exams}"
    return out


def bench_kafka(db: Database, bootstrap: str, n: int) -> tuple[float, float]:
    """(messages/s through SinkWriter once assigned, seconds to join the group) for ``n`` InstanceEvents."""
    import uuid

    from confluent_kafka import Producer

    from schemas.codec import encode
    from schemas.config import load_settings
    from sinks.writer import SinkWriter

    prefix = "bench" + uuid.uuid4().hex[:6]
    env = {"RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "RADPULSE_KAFKA__TOPIC_PREFIX": prefix}
    settings = load_settings(None, env=env)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    for i in range(n):
        ev = synthetic_instance(10_000_000 + i)
        while True:
            try:
                producer.produce(settings.topic("instances"), encode(ev), ev.study_pseudonym.encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    writer = SinkWriter(settings, db, group_id=prefix, consumer_config={"session.timeout.ms": 6000})
    start = time.perf_counter()
    joined: float | None = None
    while writer.counters.rows_written["instances"] < n:
        if writer.step(0.2) and joined is None:
            joined = time.perf_counter()
    writer.flush()
    writer.close()
    assert joined is not None
    return n / (time.perf_counter() - joined), joined - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sinks.bench", description=__doc__)
    p.add_argument("--url", default="chdb:///tmp/radpulse-bench")
    p.add_argument("--instances", type=int, default=200_000)
    p.add_argument("--exams", type=int, default=100_000)
    p.add_argument("--bootstrap", help="also measure Kafka → SinkWriter → chDB against this broker")
    args = p.parse_args(argv)
    random.seed(0)
    db = connect(args.url, "bench")
    db.command("DROP DATABASE IF EXISTS bench")
    db.close()
    db = connect(args.url, "bench")
    migrate(db)
    rate = bench_inserts(db, args.instances)
    print(f"instances via batcher: {rate:,.0f} rows/s ({args.instances:,} rows, 5,000 per insert)")
    for label, seconds in bench_exams_latest(db, args.exams).items():
        print(f"latest of {args.exams:,} exams x 3 versions, {label}: {seconds * 1000:.0f} ms")
    if args.bootstrap:
        rate, join_s = bench_kafka(db, args.bootstrap, args.instances)
        print(f"Kafka → SinkWriter → instances: {rate:,.0f} messages/s after joining the group in {join_s:.1f} s")
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
