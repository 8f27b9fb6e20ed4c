"""Smoke test for the broker started by start-kafka.sh (confluent-kafka client).

    python infra/kafka/smoke_test.py produce --bootstrap 127.0.0.1:9092 --topic smoke --count 1000
    python infra/kafka/smoke_test.py consume --bootstrap 127.0.0.1:9092 --topic smoke --count 1000

`produce` uses an idempotent producer (enable.idempotence, acks=all, lz4) and fails unless every
message is acknowledged. `consume` reads the topic from the beginning with a fresh consumer group
and fails unless exactly messages 0..count-1 come back, each intact. Run `consume` again after a
stop/start of the broker to prove durability.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient


def payload(i: int) -> bytes:
    # ~300 bytes, compressible, self-checking.
    body = f"msg-{i:06d}|" + "study=1.2.840.113619.2.55.3|modality=CT|" * 6
    return (body + hashlib.sha256(body.encode()).hexdigest()).encode()


def check(value: bytes) -> int:
    text = value.decode()
    body, digest = text[:-64], text[-64:]
    if hashlib.sha256(body.encode()).hexdigest() != digest:
        raise ValueError(f"corrupt message: {text[:40]}...")
    return int(body[4:10])


def produce(args: argparse.Namespace) -> None:
    p = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
        }
    )
    acked: list[int] = []
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked.append(check(msg.value()))

    t0 = time.monotonic()
    for i in range(args.count):
        while True:
            try:
                p.produce(args.topic, key=f"k{i % 37}".encode(), value=payload(i), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(30)
    dt = time.monotonic() - t0
    if left or errors or sorted(acked) != list(range(args.count)):
        sys.exit(f"produce FAILED: unflushed={left} errors={errors[:3]} acked={len(acked)}/{args.count}")
    md = AdminClient({"bootstrap.servers": args.bootstrap}).list_topics(args.topic, timeout=10)
    parts = len(md.topics[args.topic].partitions)
    print(f"produced {args.count} messages to {args.topic} ({parts} partitions, idempotent, acks=all, lz4) "
          f"in {dt:.2f}s")


def consume(args: argparse.Namespace) -> None:
    group = args.group or f"smoke-{uuid.uuid4().hex[:8]}"
    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.subscribe([args.topic])
    seen: dict[int, int] = {}
    eof: set[int] = set()
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(msg.partition())
                    if len(seen) >= args.count and eof >= set(range(len(c.assignment()))):
                        break
                    continue
                raise KafkaException(msg.error())
            n = check(msg.value())
            seen[n] = seen.get(n, 0) + 1
        if seen and args.commit:
            c.commit(asynchronous=False)
    finally:
        c.close()
    dt = time.monotonic() - t0
    dups = sum(v - 1 for v in seen.values())
    missing = [i for i in range(args.count) if i not in seen]
    if missing or dups or len(seen) != args.count:
        sys.exit(f"consume FAILED: got {len(seen)} distinct (dups={dups}), missing={missing[:10]}...")
    print(f"consumed {args.count}/{args.count} intact messages from {args.topic} (group {group}) in {dt:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("produce", "consume"):
        s = sub.add_parser(name)
        s.add_argument("--bootstrap", default="127.0.0.1:9092")
        s.add_argument("--topic", default="radpulse-smoke")
        s.add_argument("--count", type=int, default=1000)
        if name == "consume":
            s.add_argument("--group", default=None)
            s.add_argument("--commit", action="store_true")
            s.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    {"produce": produce, "consume": consume}[args.cmd](args)


if __name__ == "__main__":
    main()
