"""A real `radpulse sink` process (real chDB, the session's Kafka-protocol broker) for the SQL endpoint attacks.

Beside it, the edge's data folder with its real keys (``edge_ingest.keys``): what an attacker wants to read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ingest.keys import load_keys

REPO = Path(__file__).resolve().parents[2]
# the `radpulse` entry point: cli/main.py once the CLI moved out of infra/, infra/cli.py before
CLI = "cli.main"
ENDPOINT_HEADER = "X-Radpulse-Sql"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sink:
    proc: subprocess.Popen[bytes]
    folder: Path
    port: int
    env: dict[str, str]
    log: Path
    key: bytes  # the edge's pseudonym key, to look for in every answer

    @property
    def token_file(self) -> Path:
        return self.folder / "data" / "sql-endpoint.token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def key_file(self) -> Path:
        return self.folder / "edge" / "keys" / "pseudonym.key"

    def request(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                method: str = "POST", timeout: float = 60.0) -> Reply:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method,
                                     headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                return Reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read(), dict(exc.headers))

    def sql(self, sql: str, token: str | None = None, **headers: str) -> Reply:
        auth = {"Authorization": f"Bearer {self.token if token is None else token}"} if token != "" else {}
        return self.request("/query", sql.encode(), {"Content-Type": "text/plain", **auth, **headers})

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", CLI, *args], env=self.env, cwd=self.folder,
                              capture_output=True, text=True, timeout=timeout)

    def leaks(self, text: bytes | str) -> bool:
        raw = text.encode() if isinstance(text, str) else text
        return self.key.hex().encode() in raw.lower() or b"root:x:0:0" in raw

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def start_sink(folder: Path, bootstrap: str, topic_prefix: str, **clickhouse: str) -> Sink:
    """`radpulse sink` on ``folder/data/chdb`` with its endpoint on a free port; waits until it answers."""
    key = load_keys(folder / "edge").pseudonym_key  # created as the edge creates it (0600 in edge/keys/)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RADPULSE_CONFIG": os.devnull,
        "RADPULSE_CLICKHOUSE__URL": "chdb://./data/chdb",
        "RADPULSE_CLICKHOUSE__QUERY_PORT": str(port),
        "RADPULSE_EDGE__DATA_DIR": str(folder / "edge"),
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix,
        **{f"RADPULSE_CLICKHOUSE__{k.upper()}": v for k, v in clickhouse.items()},
    }
    log = folder / "sink.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", CLI, "sink"], env=env, cwd=folder, stdout=out,
                                stderr=subprocess.STDOUT)
    sink = Sink(proc, folder, port, env, log, key)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"radpulse sink exited with {proc.returncode}:\n{log.read_text()}")
        if sink.token_file.exists():
            try:
                if sink.sql("SELECT count() FROM schema_migrations").status == 200:
                    return sink
            except OSError:
                pass
        time.sleep(0.3)
    sink.stop()
    raise AssertionError(f"radpulse sink did not answer on 127.0.0.1:{port} within 120 s:\n{log.read_text()}")
