"""HL7 over a real MLLP socket: framing, NAK-and-carry-on, charsets, concurrency, a full spool, and (marked kafka)
events read back from a real Kafka-protocol broker through the edge's real Delivery."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_ingest.counters import EdgeCounters
from edge_ingest.deid import DeidContext
from edge_ingest.hl7 import parse
from edge_ingest.ingest import Delivery, Status
from edge_ingest.keys import EdgeKeys
from edge_ingest.mllp import RETRY_LATER, Frame, FrameReader, Hl7Ingestor, MllpServer, frame
from edge_ingest.producer import KafkaSender, ensure_topics
from edge_ingest.pseudonyms import pseudonym
from edge_ingest.spool import Spool
from schemas import codec
from schemas.config import KafkaSettings
from schemas.events import WorkflowEvent
from tests.helpers import read_messages

KEYS = EdgeKeys(b"k" * 32, b"a" * 32)
CTX = DeidContext(keys=KEYS, site_id="site-1", edge_id="edge-1", site_timezone="Asia/Shanghai")
PATIENT = "PID|1||MRN55501^^^HOSP^MR||CHEN^MEILING||19750203|F|||8 Harbour St^^Shanghai"


def hl7(type_code: str, control: str, *segments: str, charset: str = "") -> str:
    head = f"MSH|^~\\&|RIS|HOSPITAL|RADPULSE|EDGE|20240301101500||{type_code}|{control}|P|2.5.1"
    if charset:
        head += f"||||||{charset}"
    return "\r".join([head, *segments]) + "\r"


def a10(control: str) -> str:
    return hl7("ADT^A10", control, "EVN||20240301081500||||20240301081200", PATIENT, "PV1|1|O|CT^ROOM1")


def orm_new(control: str, accession: str = "ACC7001") -> str:
    return hl7("ORM^O01", control, PATIENT, f"ORC|NW|PLC1|{accession}||SC||^^^20240302093000||20240301101400",
               f"OBR|1|PLC1|{accession}|CTCHEST^CT chest CHEN MEILING")


class Client:
    """A minimal MLLP sender: frames out, ACK frames back (in order)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.reader = FrameReader()
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, codec_name: str = "utf-8") -> str:
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.pending += [f.data for f in self.reader.feed(chunk) if isinstance(f, Frame)]
        return self.pending.pop(0).decode(codec_name)

    def request(self, message: str, codec_name: str = "utf-8") -> str:
        self.send(frame(message, codec_name))
        return self.reply(codec_name)

    def close(self) -> None:
        self.sock.close()


def msa(reply: str) -> list[str]:
    return next(s for s in reply.split("\r") if s.startswith("MSA")).split("|")


class Recording:
    """A Delivery stand-in that keeps what it was given (for the tests that are about the socket)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self._lock = threading.Lock()

    def deliver(self, topic: str, key: bytes, value: bytes) -> Status:
        with self._lock:
            self.sent.append((topic, key, value))
        return Status.SUCCESS


@pytest.fixture
def serve() -> Iterator[Callable[..., MllpServer]]:
    servers: list[MllpServer] = []

    def _start(handle: Callable[[str], str], **kw: Any) -> MllpServer:
        server = MllpServer("127.0.0.1", 0, handle, **kw).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


def test_many_messages_on_one_connection_with_junk_and_split_writes(serve) -> None:
    delivery, counters = Recording(), EdgeCounters()
    server = serve(Hl7Ingestor(CTX, delivery, "t.workflow", counters).handle)
    client = Client(server.port)
    client.send(b"\r\n junk before the first frame \n" + frame(a10("M1")))
    second = frame(orm_new("M2"))
    for part in (second[:10], second[10:40], second[40:]):  # one message over three TCP writes
        client.send(part)
        time.sleep(0.05)
    client.send(b"\n" + frame(a10("M3")) + b"\r\n" + frame(hl7("ADT^A08", "M4", PATIENT)))  # two in one write
    replies = [client.reply() for _ in range(4)]
    client.close()
    assert [msa(r)[1:3] for r in replies] == [["AA", "M1"], ["AA", "M2"], ["AA", "M3"], ["AA", "M4"]]
    assert "ignored" in msa(replies[3])[3]
    events = [codec.decode(WorkflowEvent, v) for _, _, v in delivery.sent]
    assert [e.kind for e in events] == ["arrival", "ordered", "scheduled", "arrival"]
    assert counters.workflow == 4 and counters.ignored == 1


def test_malformed_and_oversized_frames_get_a_nak_and_the_connection_carries_on(serve) -> None:
    counters = EdgeCounters()
    server = serve(Hl7Ingestor(CTX, Recording(), "t", counters).handle, max_message_bytes=4096, counters=counters)
    client = Client(server.port)
    assert msa(client.request(a10("G1")))[1:3] == ["AA", "G1"]
    nak = client.request("MSH|^~\\&|RIS|HOSPITAL|RADPULSE|EDGE|20240301||ADT^A10||P|2.5\r" + PATIENT + "\r")
    assert msa(nak)[1] == "AE" and "MSH-10" in msa(nak)[3] and "CHEN" not in nak
    assert "ERR" in nak and parse(nak).type_code == "ACK^A10"
    assert msa(client.request("this is not HL7"))[1] == "AE"
    huge = hl7("ORM^O01", "BIG1", PATIENT, "NTE|1||" + "x" * 20_000)
    nak = client.request(huge)
    assert msa(nak)[1:3] == ["AE", "BIG1"] and "exceeds the 4096-byte limit" in msa(nak)[3]
    client.send(frame(a10("G2"))[:5])  # a message cut short by a new start block is dropped unanswered
    assert msa(client.request(a10("G3")))[1:3] == ["AA", "G3"]
    client.close()
    assert counters.rejected_reasons == Counter({"hl7_malformed": 2, "hl7_oversized": 1}) and counters.workflow == 2


def test_gb18030_in_and_out(serve) -> None:
    seen: list[str] = []

    def handle(text: str) -> str:
        seen.append(text)
        return Hl7Ingestor(CTX, Recording(), "t", EdgeCounters()).handle(text)

    server = serve(handle)
    message = hl7("ADT^A10", "CN1", "PID|1||M1^^^H||张^伟", charset="GB 18030-2000").replace("HOSPITAL", "人民医院")
    client = Client(server.port)
    reply = client.request(message, "gb18030")
    client.close()
    assert seen == [message]
    assert msa(reply)[1:3] == ["AA", "CN1"] and "|人民医院|" in reply  # addressed back, in the sender's charset


def test_concurrent_connections_each_get_their_own_acks(serve) -> None:
    delivery = Recording()
    server = serve(Hl7Ingestor(CTX, delivery, "t", EdgeCounters()).handle)
    failures: list[str] = []

    def sender(n: int) -> None:
        client = Client(server.port)
        for i in range(10):
            control = f"C{n}-{i}"
            got = msa(client.request(a10(control)))[1:3]
            if got != ["AA", control]:
                failures.append(f"{control}: {got}")
        client.close()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == [] and len(delivery.sent) == 80


def test_a_handler_crash_is_an_ae_and_the_connection_lives(serve) -> None:
    calls = []

    def handle(text: str) -> str:
        calls.append(text)
        if len(calls) == 1:
            raise KeyError("CHEN MEILING")
        return Hl7Ingestor(CTX, Recording(), "t", EdgeCounters()).handle(text)

    client = Client(serve(handle).port)
    nak = client.request(a10("X1"))
    assert msa(nak)[1:3] == ["AE", "X1"] and "KeyError" in nak and "CHEN" not in nak
    assert msa(client.request(a10("X2")))[1:3] == ["AA", "X2"]
    client.close()


class FailingSender:
    """Kafka that never acknowledges."""

    def send(self, topic: str, key: bytes, value: bytes) -> str | None:
        return "broker unreachable"

    def send_many(self, messages: list[tuple[str, bytes, bytes]]) -> str | None:
        return "broker unreachable"


def test_full_spool_answers_ar_retry_later(serve, tmp_path: Path) -> None:
    counters = EdgeCounters()
    delivery = Delivery(FailingSender(), Spool(tmp_path / "spool", 64), counters, retry_s=0.1)
    try:
        client = Client(serve(Hl7Ingestor(CTX, delivery, "t", counters).handle).port)
        reply = client.request(a10("S1"))
        client.close()
    finally:
        delivery.close()
        delivery.spool.close()
    assert msa(reply)[1:4] == ["AR", "S1", RETRY_LATER]
    assert counters.out_of_resources == 1 and counters.workflow == 0


def test_stop_closes_open_connections_and_the_port(serve) -> None:
    server = serve(Hl7Ingestor(CTX, Recording(), "t", EdgeCounters()).handle)
    port = server.port
    client = Client(port)
    assert msa(client.request(a10("Z1")))[1] == "AA"
    server.stop()
    assert client.sock.recv(10) == b""  # the server hung up
    client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


@pytest.mark.kafka
def test_messages_become_events_on_kafka_with_a_nak_in_the_middle(
    serve, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    topic = f"{topic_prefix}.workflow"
    ensure_topics(settings, [topic], timeout_s=10)
    counters = EdgeCounters()
    sender = KafkaSender(settings, 5.0)
    delivery = Delivery(sender, Spool(tmp_path / "spool", 64 * 1024 * 1024), counters)
    server = serve(Hl7Ingestor(CTX, delivery, topic, counters).handle)
    client = Client(server.port)
    malformed = "MSH|^~\\&|RIS|HOSPITAL|RADPULSE|EDGE|20240301||ORM^O01||P|2.5\r" + PATIENT + "\r"
    conversation = [
        (a10("K1"), "AA"),
        (orm_new("K2"), "AA"),
        (malformed, "AE"),
        (hl7("SIU^S12", "K3", "SCH|APPT1^RIS|FAPPT1^RIS|||||||||^^30^20240302093000", PATIENT), "AA"),
        (hl7("ORM^O01", "K4", PATIENT, "ORC|SC|PLC1|ACC7001||CM||||20240302100500", "OBR|1|PLC1|ACC7001"), "AA"),
        (orm_new("K2"), "AA"),  # a resend
    ]
    try:
        codes = [msa(client.request(text))[1] for text, _ in conversation]
        client.close()
        assert codes == [want for _, want in conversation]
        messages = read_messages(kafka_bootstrap, topic, expect=7)
    finally:
        server.stop()
        delivery.close()
        sender.close()
        delivery.spool.close()
    events = [codec.decode(WorkflowEvent, m.value()) for m in messages]
    assert len(events) == 7
    assert Counter(e.kind for e in events) == Counter({"arrival": 1, "ordered": 2, "scheduled": 3, "order_status": 1})
    patient = pseudonym(KEYS, "patient", "MRN55501")
    accession = pseudonym(KEYS, "accession", "ACC7001")
    assert {e.patient_pseudonym for e in events} == {patient}
    for m, e in zip(messages, events, strict=True):
        assert m.key() == (e.accession_pseudonym or e.patient_pseudonym).encode()
        assert e.source == "HL7" and e.site_id == "site-1"
    by_message = Counter(e.event_id for e in events if e.message_type == "ORM^O01" and e.kind != "order_status")
    assert sorted(by_message.values()) == [2, 2]  # the resend carries the same two event ids
    done = next(e for e in events if e.kind == "order_status")
    assert done.order_status == "CM" and done.accession_pseudonym == accession
    assert done.occurred_at is not None and done.occurred_at.isoformat() == "2024-03-02T02:05:00+00:00"
    siu = next(e for e in events if e.message_type == "SIU^S12")
    assert siu.accession_pseudonym is None and siu.scheduled_start_utc.isoformat() == "2024-03-02T01:30:00+00:00"
    blob = b"".join(m.value() + (m.key() or b"") for m in messages)
    for secret in (b"MRN55501", b"CHEN", b"MEILING", b"19750203", b"Harbour", b"ACC7001", b"APPT1", b"PLC1"):
        assert secret not in blob, secret
    assert counters.workflow == 7 and counters.produced == 7
    assert counters.rejected_reasons == Counter({"hl7_malformed": 1})
