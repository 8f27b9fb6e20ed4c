"""`radpulse edge` also listens for HL7 v2 over MLLP: an ADT^A10 arrival becomes a workflow event."""

from __future__ import annotations

import socket

import pytest

from schemas import codec
from schemas.events import WorkflowEvent
from tests.helpers import read_messages

pytestmark = pytest.mark.kafka

A10 = "\r".join([
    "MSH|^~\\&|HIS|HOSP|RADPULSE|RAD|20240301085500||ADT^A10^ADT_A09|CTRL0001|P|2.5",
    "EVN|A10|20240301085500||||20240301085400",
    "PID|1||MRN-CANARY-77^^^HOSP^MR||ZHANG^SAN||19800101|M",
    "PV1|1|O|RAD^^^HOSP",
]) + "\r"


def test_arrival_over_mllp_reaches_the_workflow_topic(start_edge, kafka_bootstrap: str) -> None:
    node = start_edge()
    assert node.mllp is not None
    with socket.create_connection(("127.0.0.1", node.mllp.port), timeout=10) as conn:
        conn.sendall(b"\x0b" + A10.encode() + b"\x1c\x0d")
        reply = conn.recv(4096)
    assert b"MSA|AA|CTRL0001" in reply
    messages = read_messages(kafka_bootstrap, node.settings.topic("workflow"), expect=1)
    event = codec.decode(WorkflowEvent, messages[0].value())
    assert event.kind == "arrival" and event.source == "HL7"
    assert event.occurred_at is not None and event.occurred_at.isoformat() == "2024-03-01T00:54:00+00:00"
    assert b"MRN-CANARY-77" not in messages[0].value() and b"ZHANG" not in messages[0].value()
