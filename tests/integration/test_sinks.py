"""Sinks against real things: chDB in a temporary folder, the session's Kafka-protocol broker, the HTTP endpoint and
the `radpulse` command line in subprocesses.

chDB runs one engine per process, so every test uses the session's one folder (``chdb_root`` in tests/conftest.py)
with a database of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import codec
from schemas.config import Settings, load_settings
from schemas.events import EdgeHeartbeat
from sinks import query_server
from sinks.bench import synthetic_exam, synthetic_instance
from sinks.clickhouse import Database, connect, parse_url
from sinks.errors import ClickHouseError, ClickHouseUrlError, EngineConflictError, MigrationError
from sinks.migrate import MIGRATIONS_DIR, applied, discover, migrate
from sinks.query_server import QueryServer
from sinks.rows import COLUMNS, exam_row
from sinks.sql import ENDPOINT_HEADER, ask_endpoint, ensure_token, open_endpoint, query, read_token, token_path
from sinks.writer import SinkWriter

REPO = Path(__file__).resolve().parents[2]
T = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


# -- fixtures --------------------------------------------------------------------------------------------------------
def settings_for(db: Database, bootstrap: str = "127.0.0.1:1", prefix: str = "radpulse", port: int = 0) -> Settings:
    env = {
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": prefix,
        "RADPULSE_CLICKHOUSE__URL": f"chdb://{db.target.path}?database={db.database}",
        "RADPULSE_CLICKHOUSE__QUERY_PORT": str(port),
        "RADPULSE_CONFIG": os.devnull,  # this test's settings only, whatever radpulse.toml the cwd holds
    }
    return load_settings(None, env=env)


@pytest.fixture
def sink_settings(db: Database, kafka_bootstrap: str, topic_prefix: str) -> Settings:
    settings = settings_for(db, kafka_bootstrap, topic_prefix)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [
        NewTopic(settings.topic(t), num_partitions=2, replication_factor=1)
        for t in ("instances", "exams", "edge_health")
    ]
    for fut in admin.create_topics(topics, request_timeout=10).values():
        fut.result(10)
    return settings


def produce(settings: Settings, name: str, objects: list[object]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    for obj in objects:
        key = getattr(obj, "exam_key", None) or getattr(obj, "study_pseudonym", None) or "k"
        producer.produce(settings.topic(name), codec.encode(obj), key.encode())
    assert producer.flush(10) == 0, "broker did not ack every message"


def produce_raw(settings: Settings, name: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for value in values:
        producer.produce(settings.topic(name), value, b"k")
    assert producer.flush(10) == 0


def writer_for(settings: Settings, db: Database, group: str | None = None, **kw: object) -> SinkWriter:
    """A writer in its own group. The broker's minimum session timeout makes the first join quick (tansu waits about
    half of it) and a short fetch long-poll makes drain() settle sooner."""
    conf = {"session.timeout.ms": 6000, "fetch.wait.max.ms": 100}
    group = group or "g-" + uuid.uuid4().hex[:8]
    return SinkWriter(settings, db, group_id=group, consumer_config=conf, **kw)  # type: ignore[arg-type]


def committed_offsets(settings: Settings, group: str, parts: list[TopicPartition]) -> list[int | None]:
    """The group's committed offsets, read by a consumer that never joins the group (so no rebalance)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group})
    try:
        return [tp.offset if tp.offset >= 0 else None for tp in consumer.committed(parts, timeout=10)]
    finally:
        consumer.close()


def count(db: Database, sql: str) -> int:
    return int(db.scalar(sql))


def heartbeat(at: datetime) -> EdgeHeartbeat:
    """A heartbeat at `at` (keep it recent: edge_health drops rows older than its 90-day TTL on insert)."""
    return EdgeHeartbeat("site-1", "edge-1", at, T, 10, 10, 0, 0, 0, 0, 0, 0, 0, True)


# -- URLs and the one-engine rule -----------------------------------------------------------------------------------
def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url("chdb:///abs/dir").path == Path("/abs/dir")
    rel = parse_url("chdb://./data/chdb?database=radpulse")  # not host "." and database "data", as urlparse reads it
    assert (rel.kind, rel.path, rel.database) == ("chdb", tmp_path / "data" / "chdb", "radpulse")
    assert parse_url("chdb:///x", database="other").database == "other"
    assert parse_url("https://u:pw@ch.example:8443/rp").kind == "http"
    for bad, why in [
        ("chdb://", "name a folder"),
        ("chdb:///x?db=y", "unknown parameter"),
        ("pg://x", "expected"),
        ("chdb:///x?database=a-b", "database"),
    ]:
        with pytest.raises(ClickHouseUrlError, match=why):
            parse_url(bad)
    with pytest.raises(ClickHouseUrlError) as info:
        parse_url("mysql://u:secret@h/db")
    assert "secret" not in str(info.value) and "RADPULSE_CLICKHOUSE__URL" in str(info.value)


def test_a_second_folder_in_this_process_is_a_clear_error(db: Database, tmp_path: Path) -> None:
    with pytest.raises(EngineConflictError, match="one engine per process"):
        connect(f"chdb://{tmp_path / 'other'}")
    assert db.scalar("SELECT 1") == 1  # the open engine is unharmed


# -- migrations ------------------------------------------------------------------------------------------------------
def test_migrations_are_idempotent(db: Database) -> None:
    before = db.query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version").rows
    tables = db.query("SHOW TABLES").rows
    assert [r[:2] for r in before] == [(m.version, m.name) for m in discover()]
    assert [r[:2] for r in before][:2] == [(1, "base"), (2, "dose_utilization")]
    assert migrate(db) == [] and migrate(db) == []
    assert db.query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version").rows == before
    assert db.query("SHOW TABLES").rows == tables
    assert {t for (t,) in tables} >= {"instances", "irradiation_events", "exams", "exams_latest", "edge_health",
                                     "exam_dose", "dose_alerts", "dose_reviews", "device_kpis", "exam_timing"}


def test_table_columns_are_the_row_columns(db: Database) -> None:
    for table, columns in COLUMNS.items():
        assert tuple(r[0] for r in db.query(f"DESCRIBE TABLE {table}").rows) == columns, table


def test_an_edited_migration_is_refused_and_a_new_one_applies(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)  # every released migration, already applied to db
    base = (MIGRATIONS_DIR / "0001_base.sql").read_text()
    (folder / "0001_base.sql").write_text("-- comments may change\n" + base)
    released = [m.version for m in discover()]
    note = f"{len(released) + 1:04d}_note.sql"
    (folder / note).write_text("CREATE TABLE IF NOT EXISTS notes (n String) ENGINE = MergeTree ORDER BY n;")
    assert [m.filename for m in migrate(db, folder)] == [note]
    assert sorted(applied(db)) == [*released, len(released) + 1]
    edited = base.replace("INTERVAL 90 DAY", "INTERVAL 30 DAY")
    assert edited != base
    (folder / "0001_base.sql").write_text(edited)
    with pytest.raises(MigrationError, match=r"0001_base\.sql changed after it was applied"):
        migrate(db, folder)


# -- Kafka → chDB ----------------------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_events_land_in_their_tables(sink_settings: Settings, db: Database) -> None:
    instances = [synthetic_instance(i, dose_events=2 if i % 50 == 0 else 0) for i in range(200)]  # 4 studies
    exams = [synthetic_exam(i, v) for i in range(4) for v in (1, 2, 3)]
    produce(sink_settings, "instances", instances)
    produce(sink_settings, "exams", exams)
    now = datetime.now(UTC)
    produce(sink_settings, "edge_health", [heartbeat(now - timedelta(minutes=m)) for m in range(3)])
    writer = writer_for(sink_settings, db)
    try:
        counters = writer.drain(60)
    finally:
        writer.close()
    assert counters.rows_written == {"instances": 200, "irradiation_events": 8, "exams": 12, "edge_health": 3}
    assert counters.undecodable == 0 and counters.insert_errors == 0

    assert count(db, "SELECT count() FROM instances FINAL") == 200
    row = db.query(
        "SELECT event_id, received_at, event_time, image_type, exposure_kvp, dose_event_count "
        "FROM instances FINAL WHERE event_id = 'evt-50'"
    ).rows
    ev = instances[50]
    assert row == [("evt-50", ev.received_at, ev.acquisition_datetime_utc, list(ev.image_type), 120.0, 2)]
    assert row[0][1].tzinfo is not None  # aware UTC datetimes come back
    assert count(db, "SELECT count() FROM irradiation_events FINAL WHERE study_pseudonym = 'study-1'") == 2
    latest = db.query("SELECT exam_key, version, status, instance_count FROM exams_latest ORDER BY exam_key").rows
    assert latest == [(f"study-{i}", 3, "complete", 150) for i in range(4)]
    assert count(db, "SELECT count() FROM edge_health") == 3


@pytest.mark.kafka
def test_redelivery_changes_no_count(sink_settings: Settings, db: Database) -> None:
    instances = [synthetic_instance(i, received_at=T, dose_events=1 if i % 50 == 0 else 0) for i in range(100)]
    exams = [synthetic_exam(i, v) for i in range(2) for v in (1, 2, 3)]
    produce(sink_settings, "instances", instances)
    produce(sink_settings, "exams", exams)
    group = "g-" + uuid.uuid4().hex[:8]
    writer = writer_for(sink_settings, db, group)
    writer.drain(60)

    def counts() -> tuple[int, int, int, list[tuple[str, int]]]:
        return (
            count(db, "SELECT count() FROM instances FINAL"),
            count(db, "SELECT count() FROM irradiation_events FINAL"),
            count(db, "SELECT count() FROM exams_latest"),
            db.query("SELECT exam_key, version FROM exams_latest ORDER BY exam_key").rows,
        )

    first = counts()
    assert first == (100, 2, 2, [("study-0", 3), ("study-1", 3)])

    # the edge resends: same event_id, later received_at; the streams republish the same versions
    later = T + timedelta(hours=1)
    produce(sink_settings, "instances", [ev.replace(received_at=later) for ev in instances])
    produce(sink_settings, "exams", exams)
    writer.drain(60)
    writer.close()
    assert counts() == first
    assert count(db, "SELECT count() FROM instances") == 200  # both copies stored; FINAL shows one
    assert db.scalar("SELECT min(received_at) FROM instances FINAL") == later  # the later copy wins

    # a new consumer group replays both topics from offset 0
    replay = writer_for(sink_settings, db)
    try:
        counters = replay.drain(60)
    finally:
        replay.close()
    assert counters.rows_written["instances"] == 200
    assert counts() == first
    db.command("OPTIMIZE TABLE instances FINAL")
    assert count(db, "SELECT count() FROM instances") == 100  # merges collapse the copies for good


@pytest.mark.kafka
def test_exam_versions_out_of_order_show_the_highest(sink_settings: Settings, db: Database) -> None:
    produce(sink_settings, "exams", [synthetic_exam(1, v) for v in (1, 2, 3)])
    writer = writer_for(sink_settings, db)
    writer.drain(60)
    produce(sink_settings, "exams", [synthetic_exam(2, v) for v in (3, 1, 2)] + [synthetic_exam(1, 2)])
    writer.drain(60)
    writer.close()
    rows = db.query("SELECT exam_key, version, series_count FROM exams_latest ORDER BY exam_key").rows
    assert rows == [("study-1", 3, 3), ("study-2", 3, 3)]


@pytest.mark.kafka
def test_undecodable_messages_are_counted_and_skipped(
    sink_settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b"PAYLOAD-CANARY-1234"
    unknown_fp = b"\xc3\x01" + b"\x00" * 8 + secret
    produce_raw(sink_settings, "instances", [secret, unknown_fp])
    produce(sink_settings, "instances", [synthetic_instance(1)])
    produce(sink_settings, "exams", [synthetic_exam(1, -1), synthetic_exam(2, 1)])  # a version the table can't take
    group = "g-" + uuid.uuid4().hex[:8]
    writer = writer_for(sink_settings, db, group)
    with caplog.at_level("WARNING", logger="radpulse.sinks"):
        counters = writer.drain(60)
    writer.close()
    assert (counters.messages, counters.undecodable, counters.rows_written["instances"]) == (5, 3, 1)
    assert count(db, "SELECT count() FROM exams") == 1
    assert "skipped undecodable message" in caplog.text and "PAYLOAD-CANARY" not in caplog.text
    # skipped messages are committed like the others: the group's offsets are at the end of every partition
    for name, total in (("instances", 3), ("exams", 2)):
        parts = [TopicPartition(sink_settings.topic(name), p) for p in (0, 1)]
        assert sum(o or 0 for o in committed_offsets(sink_settings, group, parts)) == total


@pytest.mark.kafka
def test_a_failed_insert_is_retried_and_commits_only_after(sink_settings: Settings, db: Database) -> None:
    produce(sink_settings, "edge_health", [heartbeat(datetime.now(UTC))])
    group = "g-" + uuid.uuid4().hex[:8]
    writer = writer_for(sink_settings, db, group, flush_interval_s=0.2, retry_max_s=0.5)
    topic = sink_settings.topic("edge_health")
    parts = [TopicPartition(topic, p) for p in (0, 1)]
    db.command("DETACH TABLE edge_health")  # a real failure: the table is gone for a while
    stop = threading.Event()
    worker = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while writer.counters.insert_errors < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert writer.counters.insert_errors >= 2, writer.counters
        assert writer.counters.flushes == 0
        assert committed_offsets(sink_settings, group, parts) == [None, None]  # nothing committed
        db.command("ATTACH TABLE edge_health")
        deadline = time.monotonic() + 30
        while writer.counters.rows_written["edge_health"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert writer.counters.rows_written["edge_health"] == 1, writer.counters
        assert sorted(committed_offsets(sink_settings, group, parts), key=str) == [1, None]
    finally:
        stop.set()
        worker.join(30)
    assert count(db, "SELECT count() FROM edge_health") == 1


# -- the read-only endpoint and `radpulse sql` -----------------------------------------------------------------------
def post(port: int, sql: str, token: str) -> tuple[int, dict[str, object], str | None]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/query", data=sql.encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get(ENDPOINT_HEADER)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get(ENDPOINT_HEADER)


def test_radpulse_sql_waits_for_a_busy_endpoint_then_gives_up(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # every query slot busy (a wall display refreshing): the endpoint answers 503 with Retry-After, and the
    # analyst's `radpulse sql` asks again instead of failing at once; past its patience it says why
    monkeypatch.setattr(query_server, "QUEUE_WAIT_S", 0.3)
    server = QueryServer(db.reopen(), 0, concurrency=1).start()
    try:
        held = server.slot()
        held.__enter__()  # the one slot, taken by a long query
        timer = threading.Timer(1.5, held.__exit__, (None, None, None))
        timer.start()
        t0 = time.monotonic()
        answer = ask_endpoint(server.port, "SELECT 41 + 1", token=server.token)
        assert answer is not None and answer.rows == [[42]]
        assert time.monotonic() - t0 >= 1.5  # it was refused first, then answered
        timer.join()
        with server.slot(), pytest.raises(ClickHouseError, match="queries are running"):
            with open_endpoint(server.port, "SELECT 1", server.token, busy_wait_s=1.0):
                pass
    finally:
        server.stop()


def test_query_endpoint_answers_select_and_refuses_writes(db: Database) -> None:
    for version in (1, 2):  # two inserts: one block holding both versions would collapse on insert already
        db.insert("exams", [exam_row(synthetic_exam(3, version))], COLUMNS["exams"])
    settings = settings_for(db)
    server = QueryServer(db.reopen(), 0, token=ensure_token(token_path(settings))).start()
    try:
        status, doc, ours = post(server.port, "SELECT exam_key, version, updated_at FROM exams_latest", server.token)
        assert (status, ours) == (200, "1")
        assert doc["columns"] == ["exam_key", "version", "updated_at"]
        assert doc["types"] == ["String", "UInt64", "DateTime64(6, 'UTC')"]
        assert doc["rows"] == [["study-3", 2, synthetic_exam(3, 2).updated_at.isoformat()]]

        for sql in ("DROP TABLE exams", "SELECT 1; DROP TABLE exams", "SELECT 1 INTO OUTFILE 'x.csv'"):
            status, doc, _ = post(server.port, sql, server.token)
            assert status == 403 and ("refused" in str(doc["error"]) or "statements" in str(doc["error"])), (sql, doc)
        assert count(db, "EXISTS TABLE exams") == 1
        status, doc, _ = post(server.port, "SELECT * FROM no_such_table", server.token)
        assert status == 400 and "UNKNOWN_TABLE" in str(doc["error"])

        answer = ask_endpoint(server.port, "SELECT count() FROM exams", token=server.token)
        assert answer is not None and answer.rows == [[2]] and answer.via == "endpoint"
        via = query(settings_for(db, port=server.port), "SELECT count() FROM exams_latest")
        assert (via.via, via.rows) == ("endpoint", [[1]])
    finally:
        server.stop()
        server.db.close()


def test_sql_opens_the_database_when_nothing_listens(db: Database) -> None:
    port = free_port()
    answer = query(settings_for(db, port=port), "SELECT name FROM schema_migrations WHERE version = 1")
    assert (answer.via, answer.rows) == ("direct", [["base"]])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def radpulse(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_migrate_and_sql_on_a_folder_nothing_holds(tmp_path: Path, chdb_root: Path) -> None:
    env = {"RADPULSE_CLICKHOUSE__URL": "chdb://./data/chdb", "RADPULSE_CLICKHOUSE__QUERY_PORT": str(free_port())}
    done = radpulse(["clickhouse", "migrate"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "applied 0001_base.sql" in done.stdout and (tmp_path / "data" / "chdb").is_dir(), done.stdout

    sql = "SELECT version, name FROM schema_migrations WHERE version = 1"
    out = radpulse(["sql", "--format", "json", sql], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "columns": ["version", "name"],
        "types": ["UInt32", "String"],
        "rows": [[1, "base"]],
    }

    refused = radpulse(["sql", "DROP TABLE exams"], env, tmp_path)
    assert refused.returncode == 2 and "refused DROP" in refused.stderr

    # the folder this pytest process holds: a second process gets the clear error
    locked_env = {**env, "RADPULSE_CLICKHOUSE__URL": f"chdb://{chdb_root}"}
    holder = connect(f"chdb://{chdb_root}")
    try:
        locked = radpulse(["sql", "SELECT 1"], locked_env, tmp_path)
    finally:
        holder.close()
    assert locked.returncode == 1
    assert "RADPULSE_CLICKHOUSE__URL" in locked.stderr and "radpulse up" in locked.stderr, locked.stderr


@pytest.mark.kafka
def test_radpulse_sink_serves_the_endpoint_and_stops_on_sigterm(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    port = free_port()
    env = {
        "RADPULSE_CLICKHOUSE__URL": "chdb://./chdb",
        "RADPULSE_CLICKHOUSE__QUERY_PORT": str(port),
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix,
    }
    settings = load_settings(None, env={**env, "RADPULSE_CONFIG": os.devnull})
    produce(settings, "exams", [synthetic_exam(i, v) for i in range(5) for v in (1, 2)])
    log = (tmp_path / "sink.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sink"],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, rows = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                token = read_token(tmp_path / "sql-endpoint.token")  # beside the sink's ./chdb folder
                answer = ask_endpoint(port, "SELECT count(), max(version) FROM exams_latest", timeout_s=5, token=token)
            except Exception:  # endpoint up but tables not migrated yet, etc.
                answer = None
            rows = answer.rows if answer else None
            if rows == [[5, 2]]:
                break
            time.sleep(0.3)
        assert rows == [[5, 2]], (tmp_path / "sink.log").read_text()
        # while the sink owns the folder, `radpulse sql` goes through it
        out = radpulse(["sql", "--format", "csv", "SELECT count() AS n FROM exams_latest"], env, tmp_path)
        assert out.returncode == 0 and out.stdout.split() == ["n", "5"], out.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    text = (tmp_path / "sink.log").read_text()
    assert code == 0, text
    assert f"127.0.0.1:{port}" in text and "sink stopped" in text
