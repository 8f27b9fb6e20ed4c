"""`radpulse up`: broker (unless an external Kafka is configured) + edge + streams + sink as one supervised tree.

Each part runs as its own child process (chDB allows one engine per process, Faust wants its own event loop, and a
crash in one part must not take the others down). A child that dies is restarted with backoff; Ctrl-C or SIGTERM
stops them in reverse order of start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli.broker import EmbeddedBroker, wait_for_kafka
from schemas.config import Settings

log = logging.getLogger("radpulse.up")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout_s: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if child is not None and not child.alive():
            raise RuntimeError(f"{what} exited during start-up; see {child.log_path}")
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f}s; see its log")


def child_commands(settings: Settings, config_path: str | None) -> list[tuple[str, list[str]]]:
    """(name, argv) of each child: the same config file for all, the streams' web port from [streams] web_port."""
    cli = [sys.executable, "-m", "cli.main"]
    config = ["--config", config_path] if config_path else []
    return [
        ("sink", [*cli, *config, "sink"]),
        ("streams", [*cli, *config, "streams", "--web-port", str(settings.streams.web_port)]),
        ("edge", [*cli, *config, "edge"]),
    ]


@dataclass
class Supervisor:
    settings: Settings
    extra_env: dict[str, str] = field(default_factory=dict)
    config_path: str | None = None  # `radpulse --config FILE up`: every child reads the same FILE
    log_dir: Path = Path("radpulse-data/logs")
    broker: EmbeddedBroker | None = None
    children: list[Child] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _embedded_wanted(self) -> bool:
        k = self.settings.kafka.bootstrap_servers
        return k == f"127.0.0.1:{self.settings.broker.port}" and not port_open("127.0.0.1", self.settings.broker.port)

    def start(self) -> None:
        s = self.settings
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._embedded_wanted():
            self.broker = EmbeddedBroker(port=s.broker.port, binary=s.broker.binary,
                                         log_path=self.log_dir / "broker.log").start()
            log.info("Kafka: embedded tansu broker (memory-only) on %s", self.broker.bootstrap)
            try:
                restore_snapshot(self.settings, self.broker)
            except Exception:
                self.broker.stop()  # and never save over the snapshot that could not be restored
                self.broker = None
                raise
        else:
            wait_for_kafka(s.kafka.bootstrap_servers, 30)
            log.info("Kafka: external broker at %s", s.kafka.bootstrap_servers)
        env = dict(os.environ) | self.extra_env
        for name, argv in child_commands(s, self.config_path or os.environ.get("RADPULSE_CONFIG")):
            child = Child(name, argv, env, self.log_dir / f"{name}.log")
            child.start()
            self.children.append(child)
        sink, _streams, edge = self.children
        wait_port("127.0.0.1", s.clickhouse.query_port, 120, "the sink's query endpoint", sink)
        log.info("ClickHouse: %s (read-only SQL on 127.0.0.1:%d — `radpulse sql \"SELECT …\"`)",
                 _mask(s.clickhouse.url), s.clickhouse.query_port)
        host = "127.0.0.1" if s.edge.host in ("0.0.0.0", "") else s.edge.host
        wait_port(host, s.edge.port, 60, "the DICOM edge", edge)
        log.info("DICOM: AE %s listening on %s:%d (C-ECHO, C-STORE, MPPS)", s.edge.ae_title, s.edge.host, s.edge.port)
        log.info("Streams: Faust worker group %s-streams; logs in %s", s.kafka.topic_prefix, self.log_dir)
        threading.Thread(target=self._watch, name="supervisor", daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for child in self.children:
                if child.alive() or self._stop.is_set():
                    continue
                code = child.process.returncode if child.process else None
                backoff = min(30.0, 2.0 ** min(child.restarts, 5))
                if time.monotonic() - child.started_at < backoff:
                    continue
                child.restarts += 1
                log.warning("%s exited (code %s); restarting (#%d); see %s", child.name, code, child.restarts,
                            child.log_path)
                child.start()

    def wait(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        self._stop.set()
        log.info("stopping: edge, streams, sink%s", ", broker" if self.broker else "")
        for child in reversed(self.children):
            child.stop()
        if self.broker is not None:
            save_snapshot(self.settings, self.broker)
            self.broker.stop()


def save_snapshot(settings: Settings, broker: EmbeddedBroker) -> None:
    """Keep the memory-only broker's unconsumed records and the streams' state for the next start."""
    from cli.broker_snapshot import save

    if not settings.broker.snapshot_file or not broker.alive():
        return
    path = Path(settings.broker.snapshot_file)
    try:
        stats = save(settings.kafka.client_config() | {"bootstrap.servers": broker.bootstrap}, path)
    except Exception as exc:  # the stop must go on; say what is lost
        log.error("the embedded broker's state was NOT saved to %s (%s): the next start begins empty", path, exc)
        return
    log.info("embedded broker state saved to %s: %d records of %d topics (%d read) in %.1fs", path, stats.records,
             stats.topics, stats.read, stats.seconds)


def restore_snapshot(settings: Settings, broker: EmbeddedBroker) -> None:
    """Write back what the last orderly stop saved, before any radpulse process connects."""
    from cli.broker_snapshot import restore

    if not settings.broker.snapshot_file or not Path(settings.broker.snapshot_file).exists():
        return
    path = Path(settings.broker.snapshot_file)
    stats = restore(settings.kafka.client_config() | {"bootstrap.servers": broker.bootstrap}, path)
    log.info("embedded broker state restored from %s: %d records of %d topics in %.1fs", path, stats.records,
             stats.topics, stats.seconds)


def _mask(url: str) -> str:
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
