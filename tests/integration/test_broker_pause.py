"""The broker freezes for 30 s (SIGSTOP/SIGCONT) while objects keep arriving: the edge spools, and within 10 s of
the broker answering again new objects go straight to Kafka and the spool drains — with the same producers, which
a frozen broker leaves timed out, fenced or fatally failed unless the edge replaces them.

Runs on the embedded broker and on Apache Kafka (started here from infra/kafka, so its pid is ours to pause)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from cli.broker import EmbeddedBroker, free_port
from edge_ingest.node import EdgeNode
from tests.conftest import edge_settings
from tests.helpers import CT_IMAGE, make_image
from tests.integration.test_kafka_outage import ApacheKafka
from tests.integration.test_spool_outage import _read_instances

PAUSE_S = 30
RECOVERY_S = 10  # the promise: direct to Kafka again within 10 s of the broker being back


class _Sender:
    """One association that stays open across the pause, as a modality's would."""

    def __init__(self, port: int) -> None:
        ae = AE(ae_title="CT1")
        ae.add_requested_context(CTImageStorage)
        ae.dimse_timeout = 120
        self.assoc = ae.associate("127.0.0.1", port, ae_title="RADPULSE")
        assert self.assoc.is_established
        self.study = "1.2.826.0.1.3680043.8.498.91"
        self.sent = 0

    def send(self) -> int:
        ds = make_image(CT_IMAGE, study_uid=self.study, InstanceNumber=self.sent)
        self.sent += 1
        return int(self.assoc.send_c_store(ds).Status)

    def release(self) -> None:
        self.assoc.release()


def _pause_and_recover(pid: int, bootstrap: str, tmp_path: Path, topic_prefix: str) -> None:
    settings = edge_settings(tmp_path, bootstrap, topic_prefix, edge={"kafka_ack_timeout_s": 2})
    node = EdgeNode(settings)
    node.start()
    sender = _Sender(node.port)
    try:
        assert [sender.send() for _ in range(5)] == [0] * 5
        assert node.counters.snapshot()["spooled"] == 0

        os.kill(pid, signal.SIGSTOP)
        try:
            paused_until = time.monotonic() + PAUSE_S
            while time.monotonic() < paused_until:
                assert sender.send() == 0  # success from the spool's fsync
                time.sleep(0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        back = time.monotonic()
        assert node.counters.snapshot()["spooled"] > 0, "nothing was spooled while the broker was frozen"

        # from here on, a send that does not raise `spooled` went straight to Kafka
        recovered_after = None
        while time.monotonic() - back < RECOVERY_S + 20:
            spooled = node.counters.snapshot()["spooled"]
            assert sender.send() == 0
            if node.counters.snapshot()["spooled"] == spooled and node.spool.is_empty():
                recovered_after = time.monotonic() - back
                break
            time.sleep(0.2)
        counters = node.counters.snapshot()
        renewals = (node.sender.renewals, node.drain_sender.renewals)
        assert recovered_after is not None and recovered_after <= RECOVERY_S, (
            f"not producing directly {RECOVERY_S} s after the broker resumed (took {recovered_after}); "
            f"counters {counters}, spool {node.spool.pending}, producer renewals {renewals}"
        )
        # and it stays direct: no object after recovery goes through the spool
        spooled = counters["spooled"]
        assert [sender.send() for _ in range(10)] == [0] * 10
        assert node.counters.snapshot()["spooled"] == spooled, f"spooling again after recovery: {renewals}"
        assert node.delivery.wait_drained(30)
    finally:
        sender.release()
        node.stop()
    events = _read_instances(bootstrap, settings.topic("instances"), set(range(sender.sent)))
    seen = {e.instance_number for e in events}
    assert seen == set(range(sender.sent)), f"missing {sorted(set(range(sender.sent)) - seen)}"


def test_embedded_broker_frozen_30s_edge_recovers(tmp_path: Path, topic_prefix: str) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    try:
        assert broker.process is not None
        _pause_and_recover(broker.process.pid, broker.bootstrap, tmp_path, topic_prefix)
    finally:
        broker.stop()


def test_apache_kafka_frozen_30s_edge_recovers(tmp_path: Path, topic_prefix: str) -> None:
    kafka = ApacheKafka(tmp_path / "kafka")
    kafka.start()
    try:
        pid = int((tmp_path / "kafka" / "kafka.pid").read_text().strip())
        _pause_and_recover(pid, kafka.bootstrap, tmp_path, topic_prefix)
    finally:
        kafka.stop()
