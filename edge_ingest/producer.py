"""confluent-kafka producer whose delivery reports are the acks that let a C-STORE answer success.

Idempotent (no duplicates from librdkafka's own retries), acks=all, lz4, no linger: the edge waits for each ack
anyway, so holding a message back to batch it only adds latency. ``send`` blocks the calling association thread
until its own delivery report arrives or the deadline passes; a background thread polls for reports so concurrent
associations each wait only for their own message.

Recovery: a producer that failed a delivery is replaced by a fresh one (new producer id), whatever the error was:
an idempotent producer that timed out mid-outage can stay fenced, out of sequence or fatally failed for the rest
of its life, and an authentication or unknown-topic error may clear up by the next attempt. Messages still queued
in the old producer are failed back to their waiters (who spool or retry them) and purged, so a replaced producer
never delivers anything behind the caller's back.
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

_TOPIC_CHECK_TIMEOUT_S = 2.0
# don't replace producers faster than this: during a long outage every retry fails
_RENEW_MIN_INTERVAL_S = 1.0
# longest a sender waits in poll() before checking whether another sender already served its delivery report
_POLL_SLICE_S = 0.001


@dataclass(eq=False)
class _Waiter:
    done: threading.Event
    error: str | None = None
    code: int | None = None


class KafkaSender:
    def __init__(
        self,
        settings: KafkaSettings,
        ack_timeout_s: float,
        client_id: str = "radpulse-edge",
        *,
        linger_ms: float = 0,
    ) -> None:
        self.settings = settings
        self.ack_timeout_s = ack_timeout_s
        self.renewals = 0
        self._fatal: str | None = None
        self._failed: str | None = None  # a delivery failed: replace the producer before the next send
        self._failed_topics: set[str] = set()
        self._last_renew = 0.0
        self._delivered_since_renew = True
        self._conf = settings.client_config() | {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": linger_ms,
            # several associations' produce requests may be in flight at once: don't hold one back for an ACK
            "socket.nagle.disable": True,
            # Java/aiokafka-compatible hashing: Faust's co-partitioned topics must agree on a key's partition
            "partitioner": "murmur2_random",
            "message.timeout.ms": int(ack_timeout_s * 1000),
            "socket.keepalive.enable": True,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "client.id": client_id,
            "logger": logging.getLogger("radpulse.edge.librdkafka"),
            "error_cb": self._on_error,
        }
        self._producer = Producer(self._conf)
        self._generation = 0
        self._waiters: dict[int, set[_Waiter]] = {0: set()}  # generation → waiters not yet reported
        self._lock = threading.Lock()
        self._running = True
        self._closed = False
        self._active = 0  # senders waiting for acks right now
        self._polling = threading.Lock()  # held by the one sender serving delivery reports
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        """Serve delivery reports nobody waits for (a sender gave up, a purge); waiting senders serve their own."""
        while self._running:
            if self._active:
                time.sleep(0.05)
            else:
                self._producer.poll(0.05)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = f"{err.name()}: {err.str()}"

    @property
    def needs_renewal(self) -> bool:
        return self._fatal is not None or self._failed is not None

    def _renew_if_needed(self) -> None:
        """Replace a producer that failed, fatally or not; fail its unreported messages back to their waiters."""
        if not self.needs_renewal or time.monotonic() - self._last_renew < _RENEW_MIN_INTERVAL_S:
            return
        with self._lock:
            if not self.needs_renewal:
                return
            why = self._fatal or self._failed
            self._fatal = self._failed = None
            self._last_renew = time.monotonic()
            missing, self._failed_topics = self._failed_topics, set()
            old, old_waiters = self._producer, self._waiters.pop(self._generation, set())
            self._generation += 1
            self._waiters[self._generation] = set()
            self._producer = Producer(self._conf)
            self.renewals += 1
        # once per outage at warning level: during one, every retry fails and replaces the producer again
        level = logging.WARNING if self._delivered_since_renew else logging.DEBUG
        self._delivered_since_renew = False
        log.log(level, "Kafka producer %s failed a delivery (%s); replaced it with a new one", self._conf["client.id"],
                why)
        for waiter in list(old_waiters):
            _fail(waiter, "producer replaced before the delivery report arrived")
        # purge so the old producer never delivers a message its waiter already gave up on; destroy it off this
        # (association) thread: librdkafka's destroy joins its threads
        old.purge()
        retired = [old]
        del old
        threading.Thread(target=_retire, args=(retired,), name="kafka-retire", daemon=True).start()
        if missing:
            self._recreate_missing(missing)

    def _recreate_missing(self, topics: set[str]) -> None:
        """Recreate those of `topics` the broker no longer knows (a memory-only broker restarted, or someone deleted
        one): librdkafka only times messages out on a missing topic, and they would spool forever."""
        try:
            known = self._producer.list_topics(timeout=_TOPIC_CHECK_TIMEOUT_S).topics
            gone = sorted(t for t in topics if t not in known or known[t].error is not None)
            if gone:
                log.warning("topic(s) %s missing on the broker: creating them again", ", ".join(gone))
                ensure_topics(self.settings, gone, timeout_s=5)
        except Exception as exc:  # broker still away: check again with the next renewal
            log.debug("could not check topics %s (%s)", ", ".join(sorted(topics)), type(exc).__name__)

    def _on_delivery(self, waiter: _Waiter, generation: int, err: KafkaError | None, topic: str) -> None:
        if err is not None:
            waiter.error = f"{err.name()}: {err.str()}"
            waiter.code = err.code()
            if generation == self._generation and err.code() not in (KafkaError._PURGE_QUEUE,
                                                                       KafkaError._PURGE_INFLIGHT):
                self._failed = waiter.error
                self._failed_topics.add(topic)  # checked (and recreated if gone) when the producer is replaced
        else:
            self._delivered_since_renew = True
        self._waiters.get(generation, set()).discard(waiter)
        waiter.done.set()

    def send(self, topic: str, key: bytes, value: bytes, timeout_s: float | None = None) -> str | None:
        """Produce one message and wait for its ack. Returns None on success, else the reason it failed."""
        return self.send_many([(topic, key, value)], timeout_s)

    def send_many(self, messages: Iterable[tuple[str, bytes, bytes]], timeout_s: float | None = None) -> str | None:
        """Produce messages in order and wait until all are acked; the first failure reason, or None."""
        if self._closed:
            return "the Kafka sender is closed"
        self._renew_if_needed()
        with self._lock:
            producer, generation = self._producer, self._generation
            pending = self._waiters[generation]
        waiters = []
        for topic, key, value in messages:
            waiter = _Waiter(threading.Event())
            waiters.append(waiter)
            pending.add(waiter)
            while True:
                try:
                    producer.produce(
                        topic, value, key,
                        on_delivery=lambda err, _msg, w=waiter, g=generation, t=topic: self._on_delivery(w, g, err, t),
                    )
                    break
                except BufferError:
                    time.sleep(0.01)  # local queue full: let the poller drain delivery reports
                except KafkaException as exc:
                    pending.discard(waiter)
                    self._failed = str(exc)
                    self._failed_topics.add(topic)
                    return str(exc)
        deadline = time.monotonic() + (timeout_s or self.ack_timeout_s) + 1.0
        with self._lock:
            self._active += 1
        try:
            for waiter in waiters:
                # a waiting thread serves delivery reports itself: one thread handoff less per ack than waiting for
                # the poller thread. One sender polls at a time and the others wait on their own event, which the
                # polling one sets when it serves their report: a sender stuck in poll() would only notice that at
                # the end of its slice, and with several associations most reports are served by another sender.
                while not waiter.done.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._failed = "no delivery report before the deadline"
                        return self._failed
                    if self._polling.acquire(blocking=False):
                        try:
                            if not waiter.done.is_set():
                                producer.poll(min(remaining, _POLL_SLICE_S))
                        finally:
                            self._polling.release()
                    else:
                        waiter.done.wait(min(remaining, _POLL_SLICE_S))
                if waiter.error:
                    return waiter.error
        finally:
            with self._lock:
                self._active -= 1
        return None

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout_s`), then purge the rest so nothing is sent after close."""
        self._closed = True
        self._producer.flush(timeout_s)
        self._producer.purge()
        self._producer.flush(0)
        self._running = False
        self._poller.join(timeout=1)
        for waiters in self._waiters.values():
            for waiter in list(waiters):
                _fail(waiter, "the Kafka sender closed before the delivery report arrived")


def _retire(box: list[Producer]) -> None:
    producer = box.pop()
    producer.flush(0)  # serve the purged messages' reports; the last reference goes with this frame
    del producer


def _fail(waiter: _Waiter, reason: str) -> None:
    if not waiter.done.is_set():
        waiter.error = waiter.error or reason
        waiter.done.set()


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
