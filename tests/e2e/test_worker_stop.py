"""A streams worker stops promptly on SIGTERM in any state, even when the broker stops answering mid-stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cli.broker import EmbeddedBroker, free_port
from tests.conftest import REPO

pytestmark = pytest.mark.kafka

STOP_TIMEOUT_S = 6


def _start_worker(tmp_path: Path, bootstrap: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    env = dict(os.environ) | {
        "RADPULSE_CONFIG": os.devnull,
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": "t" + uuid.uuid4().hex[:10],
        "RADPULSE_STREAMS__DATA_DIR": str(tmp_path / "streams"),
        "RADPULSE_STREAMS__STOP_TIMEOUT_S": str(STOP_TIMEOUT_S),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "streams", "--web-port", "0", "--loglevel", "info"],
        env=env, cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    return proc, log


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the worker log within {timeout_s}s:\n"
                         + log.read_text(errors="replace")[-3000:])


@pytest.mark.parametrize("when", ["starting", "running"])
def test_sigterm_stops_the_worker_even_when_the_broker_freezes(tmp_path: Path, when: str) -> None:
    """The broker is frozen (SIGSTOP) just before the stop request: commits, leave-group and producer flushes
    cannot finish, so only the stop watchdog can end the worker within its bound. Without it, a worker stopped
    while starting waited 91 s (mode's 60 s shutdown timeout on the consumer thread, then more). Always on a
    private embedded broker: freezing a shared broker would stall the other tests."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc, log = _start_worker(tmp_path, broker.bootstrap)
        # "starting": topics exist, Faust is joining the group / recovering; "running": partitions assigned
        _wait_for(log, "streams worker (group" if when == "starting" else "DRL tables", proc)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S + 15)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker still running {time.monotonic() - t0:.0f}s after SIGTERM:\n"
                                     + log.read_text(errors="replace")[-3000:]) from None
            assert time.monotonic() - t0 < STOP_TIMEOUT_S + 15
        finally:
            broker.process.send_signal(signal.SIGCONT)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        broker.stop()
