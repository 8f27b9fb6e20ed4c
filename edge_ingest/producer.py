"""confluent-kafka producer whose delivery reports are the acks that let a C-STORE answer success.

Idempotent (no duplicates from librdkafka's own retries), acks=all, lz4. ``send`` blocks the calling
association thread until its own delivery report arrives or the deadline passes; a background thread polls for
reports so concurrent associations each wait only for their own message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import KafkaSettings

log = logging.getLogger("radpulse.edge.kafka")


@dataclass
class _Waiter:
    done: threading.Event
    error: str | None = None


class KafkaSender:
    def __init__(self, settings: KafkaSettings, ack_timeout_s: float, client_id: str = "radpulse-edge") -> None:
        self.ack_timeout_s = ack_timeout_s
        self._fatal: str | None = None
        self._conf = settings.client_config() | {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 1,
            # Java/aiokafka-compatible hashing: Faust's co-partitioned topics must agree on a key's partition
            "partitioner": "murmur2_random",
            "message.timeout.ms": int(ack_timeout_s * 1000),
            "socket.keepalive.enable": True,
            "reconnect.backoff.max.ms": 1000,
            "client.id": client_id,
            "logger": logging.getLogger("radpulse.edge.librdkafka"),
            "error_cb": self._on_error,
        }
        self._producer = Producer(self._conf)
        self._lock = threading.Lock()
        self._running = True
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = f"{err.name()}: {err.str()}"

    def _renew_if_fatal(self) -> None:
        """An idempotent producer that hit a fatal error (e.g. after timeouts during an outage) never recovers:
        replace it. Undelivered messages are failed back to their waiters, who spool or retry them."""
        if self._fatal is None:
            return
        with self._lock:
            if self._fatal is None:
                return
            log.warning("Kafka producer failed fatally (%s); starting a new one", self._fatal)
            old = self._producer
            self._producer = Producer(self._conf)
            self._fatal = None
        old.purge()
        old.flush(0)
    @staticmethod
    def _on_delivery(waiter: _Waiter, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            waiter.error = f"{err.name()}: {err.str()}"
        waiter.done.set()

    def send(self, topic: str, key: bytes, value: bytes, timeout_s: float | None = None) -> str | None:
        """Produce one message and wait for its ack. Returns None on success, else the reason it failed."""
        return self.send_many([(topic, key, value)], timeout_s)

    def send_many(self, messages: Iterable[tuple[str, bytes, bytes]], timeout_s: float | None = None) -> str | None:
        """Produce messages in order and wait until all are acked; the first failure reason, or None."""
        self._renew_if_fatal()
        waiters = []
        for topic, key, value in messages:
            waiter = _Waiter(threading.Event())
            waiters.append(waiter)
            while True:
                try:
                    self._producer.produce(
                        topic, value, key, on_delivery=lambda err, msg, w=waiter: self._on_delivery(w, err, msg)
                    )
                    break
                except BufferError:
                    time.sleep(0.01)  # local queue full: let the poller drain delivery reports
                except KafkaException as exc:
                    return str(exc)
        deadline = time.monotonic() + (timeout_s or self.ack_timeout_s) + 1.0
        for waiter in waiters:
            if not waiter.done.wait(max(deadline - time.monotonic(), 0)):
                return "no delivery report before the deadline"
            if waiter.error:
                return waiter.error
        return None

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
        self._running = False
        self._poller.join(timeout=1)


def ensure_topics(settings: KafkaSettings, names: Iterable[str], timeout_s: float = 10.0) -> None:
    """Create topics that don't exist yet (partition count from settings); existing ones are left alone."""
    admin = AdminClient(settings.client_config())
    existing = admin.list_topics(timeout=timeout_s).topics
    new = [NewTopic(n, num_partitions=settings.partitions, replication_factor=1) for n in names if n not in existing]
    if not new:
        return
    for name, fut in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            fut.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic %s", name)
