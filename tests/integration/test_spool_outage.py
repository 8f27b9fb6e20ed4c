"""Kafka unreachable (embedded broker behind a proxy that we cut): the edge spools, survives its own restart, and
drains in order when Kafka answers again. The broker keeps its data throughout (tansu is memory-only, so the
broker-restart variant of this test runs against Apache Kafka in test_kafka_outage.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from cli.broker import EmbeddedBroker, free_port
from edge_ingest.node import EdgeNode
from schemas import codec
from schemas.events import InstanceEvent
from tests.conftest import edge_settings
from tests.helpers import CT_IMAGE, make_image, read_messages
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def proxied_broker(tmp_path: Path):
    """tansu advertising a proxy's address, so every client connection goes through the proxy."""
    broker_port, proxy_port = free_port(), free_port()
    broker = EmbeddedBroker(port=broker_port, log_path=tmp_path / "tansu.log")
    broker.advertised_port = proxy_port
    proxy = TcpProxy(proxy_port, ("127.0.0.1", broker_port)).start()
    broker.start()
    yield broker, proxy, f"127.0.0.1:{proxy_port}"
    proxy.stop()
    broker.stop()


def _send(port: int, datasets: list) -> list[int]:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADPULSE")
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(ds).Status) for ds in datasets]
    assoc.release()
    return statuses


def _read_instances(bootstrap: str, topic: str, wanted: set[int], timeout_s: float = 90) -> list[InstanceEvent]:
    """Read until every wanted instance number was seen. Not "until N messages": an outage may deliver an event
    twice (its ack was lost, so it was spooled and sent again), and counting repeats would stop the read early."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "radpulse-test-reader",
                         "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    events: list[InstanceEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not wanted <= {e.instance_number for e in events}:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                events.append(codec.decode(InstanceEvent, msg.value()))
    finally:
        consumer.close()
    return events


def test_outage_spools_survives_edge_restart_and_drains_in_order(
    proxied_broker, tmp_path: Path, topic_prefix: str
) -> None:
    _broker, proxy, bootstrap = proxied_broker
    settings = edge_settings(tmp_path, bootstrap, topic_prefix, edge={"kafka_ack_timeout_s": 2})
    study = "1.2.826.0.1.3680043.8.498.77"
    images = [make_image(CT_IMAGE, study_uid=study, InstanceNumber=i) for i in range(60)]
    node = EdgeNode(settings)
    node.start()
    assert _send(node.port, images[:20]) == [0] * 20
    assert node.counters.snapshot()["produced"] == 20

    proxy.stop()  # Kafka unreachable from here on
    assert _send(node.port, images[20:40]) == [0] * 20  # still success: durable in the spool
    assert node.counters.snapshot()["spooled"] >= 20 and node.spool.pending >= 20
    node.stop()

    # the edge restarts while Kafka is still away: the spool is still there and keeps taking objects
    node = EdgeNode(settings)
    node.start(create_topics=False)
    assert node.spool.pending >= 20
    assert _send(node.port, images[40:60]) == [0] * 20
    assert node.spool.pending >= 40

    proxy.start()  # Kafka is back
    assert node.delivery.wait_drained(120), f"spool still holds {node.spool.pending} events"
    node.stop()

    events = _read_instances(bootstrap, settings.topic("instances"), set(range(60)))
    seen = {e.instance_number for e in events}
    assert seen == set(range(60)), f"missing {sorted(set(range(60)) - seen)} ({len(events)} messages read)"
    by_partition_order = [e.instance_number for e in events]  # one study → one partition → arrival order
    first_seen = list(dict.fromkeys(by_partition_order))
    assert first_seen == list(range(60)), "events left the spool out of order"


def test_full_spool_answers_out_of_resources(proxied_broker, tmp_path: Path, topic_prefix: str) -> None:
    _broker, proxy, bootstrap = proxied_broker
    settings = edge_settings(tmp_path, bootstrap, topic_prefix, edge={"kafka_ack_timeout_s": 1, "spool_max_mb": 0.002})
    node = EdgeNode(settings)
    node.start()
    proxy.stop()
    statuses = _send(node.port, [make_image(CT_IMAGE) for _ in range(20)])
    assert 0xA700 in statuses, ([hex(s) for s in statuses], node.counters.snapshot(), node.spool.size_bytes)
    accepted = statuses.index(0xA700)
    assert accepted >= 1 and all(s == 0 for s in statuses[:accepted])
    proxy.start()
    assert node.delivery.wait_drained(120)
    time.sleep(0.5)
    node.stop()
    events = read_messages(bootstrap, settings.topic("instances"), expect=statuses.count(0), timeout_s=20)
    assert len({codec.decode(InstanceEvent, m.value()).event_id for m in events}) == statuses.count(0)
