"""Outage against Apache Kafka (which keeps its data across a restart): stop the broker mid-send, keep sending,
restart it — every instance arrives, by event id, and none is missing.

This test starts its own single-node Apache Kafka from infra/kafka (Java 17 + Maven Central jars), so it runs in
the first CI pass whatever broker the rest of the suite uses."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from cli.broker import free_port
from edge_ingest.node import EdgeNode
from schemas import codec
from schemas.events import InstanceEvent
from tests.conftest import REPO, edge_settings
from tests.helpers import CT_IMAGE, make_image, read_messages

KAFKA_DIR = REPO / "infra" / "kafka"


class ApacheKafka:
    def __init__(self, data: Path) -> None:
        self.port, self.controller_port, self.data = free_port(), free_port(), data
        self.env = dict(os.environ, PYTHON=str(Path(os.sys.executable)))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        result = subprocess.run(
            [str(KAFKA_DIR / "start-kafka.sh"), "--port", str(self.port), "--controller-port",
             str(self.controller_port), "--data", str(self.data), "--timeout", "150"],
            capture_output=True, text=True, env=self.env, timeout=400,
        )
        assert result.returncode == 0, f"Apache Kafka did not start:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"

    def stop(self) -> None:
        subprocess.run([str(KAFKA_DIR / "stop-kafka.sh"), "--data", str(self.data)], capture_output=True,
                       env=self.env, timeout=60)


@pytest.fixture
def apache_kafka(tmp_path: Path):
    kafka = ApacheKafka(tmp_path / "kafka")
    kafka.start()
    yield kafka
    kafka.stop()


def test_broker_restart_mid_send_loses_nothing(apache_kafka: ApacheKafka, tmp_path: Path, topic_prefix: str) -> None:
    settings = edge_settings(tmp_path, apache_kafka.bootstrap, topic_prefix, edge={"kafka_ack_timeout_s": 2})
    node = EdgeNode(settings)
    node.start()
    images = [make_image(CT_IMAGE, study_uid=f"1.2.826.0.1.3680043.8.498.{i % 5 + 100}", InstanceNumber=i)
              for i in range(90)]
    statuses: list[int] = []

    def sender() -> None:
        ae = AE(ae_title="CT1")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="RADPULSE")
        for ds in images:
            statuses.append(int(assoc.send_c_store(ds).Status))
            time.sleep(0.05)
        assoc.release()

    thread = threading.Thread(target=sender)
    thread.start()
    while len(statuses) < 20:
        time.sleep(0.05)
    apache_kafka.stop()  # mid-send
    while len(statuses) < 50:
        time.sleep(0.05)
    assert node.counters.snapshot()["spooled"] > 0, "nothing was spooled while Kafka was down"
    apache_kafka.start()
    thread.join(120)
    assert statuses == [0] * 90
    assert node.delivery.wait_drained(120), f"spool still holds {node.spool.pending}"
    node.stop()
    messages = read_messages(apache_kafka.bootstrap, settings.topic("instances"), timeout_s=60, expect=None)
    ids = [codec.decode(InstanceEvent, m.value()).instance_number for m in messages]
    assert set(ids) == set(range(90)), f"missing {sorted(set(range(90)) - set(ids))}"
