"""Shared fixtures: the vendor samples, a real Kafka-protocol broker, and DICOM/Kafka helpers.

Broker: by default each test session starts the embedded tansu broker on a free port. With
``RADPULSE_TEST_KAFKA=host:port`` (set by .ci/run for its second pass) the Kafka-facing tests run against that
Apache Kafka instead. If a broker cannot start, the tests fail: a skipped integration test would test nothing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "dicom-samples"
DCMTK_STORESCU = "/usr/bin/storescu"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"vendor samples not found at {SAMPLES} (expected ../shared/dicom-samples beside the repo)")
    return SAMPLES


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("RADPULSE_TEST_KAFKA")
    if external:
        from cli.broker import wait_for_kafka

        wait_for_kafka(external, 60)
        yield external
        return
    from cli.broker import EmbeddedBroker, free_port

    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = EmbeddedBroker(port=free_port(), log_path=log).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def chdb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chDB folder this test process may open: chDB runs one engine per process, so every test that needs
    ClickHouse gets its own DATABASE inside this folder."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace per test, so tests never read each other's events."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def storescu() -> str:
    if not Path(DCMTK_STORESCU).exists():
        pytest.fail(f"DCMTK storescu not found at {DCMTK_STORESCU}: `apt-get install dcmtk` (.ci/run does this)")
    return DCMTK_STORESCU


def pytest_report_header(config: pytest.Config) -> str:
    kafka = os.environ.get("RADPULSE_TEST_KAFKA") or "embedded tansu (started per session)"
    return f"radpulse: Kafka = {kafka}; samples = {SAMPLES if SAMPLES.is_dir() else 'absent'}; " + (
        f"storescu = {shutil.which('storescu')}"
    )


def edge_settings(tmp_path: Path, bootstrap: str, topic_prefix: str, **sections: dict[str, object]):
    """Settings for an in-process edge on a free port, its own data dir and topics."""
    from schemas.config import load_settings

    env = {
        "RADPULSE_EDGE__PORT": "0",
        "RADPULSE_EDGE__HOST": "127.0.0.1",
        "RADPULSE_EDGE__DATA_DIR": str(tmp_path / "edge"),
        "RADPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RADPULSE_KAFKA__TOPIC_PREFIX": topic_prefix,
        "RADPULSE_SITE__TIMEZONE": "Asia/Shanghai",
        "RADPULSE_EDGE__KAFKA_ACK_TIMEOUT_S": "3",
        "RADPULSE_EDGE__COUNTERS_INTERVAL_S": "1",
        "RADPULSE_HL7__PORT": "0",
        "RADPULSE_HL7__HOST": "127.0.0.1",
    }
    for section, values in sections.items():
        for k, v in values.items():
            env[f"RADPULSE_{section.upper()}__{k.upper()}"] = ",".join(v) if isinstance(v, list) else str(v)
    return load_settings(None, env=env)


@pytest.fixture
def start_edge(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str):
    """Factory: start an EdgeNode (extra settings per section as dicts); stopped after the test."""
    from edge_ingest.node import EdgeNode

    nodes: list[EdgeNode] = []

    def _start(bootstrap: str | None = None, **sections: dict[str, object]) -> EdgeNode:
        settings = edge_settings(tmp_path, bootstrap or kafka_bootstrap, topic_prefix, **sections)
        node = EdgeNode(settings)
        node.start()
        nodes.append(node)
        return node

    yield _start
    for node in nodes:
        node.stop()
