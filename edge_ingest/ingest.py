"""The one place that orders the edge's steps for a received object.

    filter by SOP class → parse header (stop before pixels) → filter by device → de-identify → Avro encode
    → Kafka ack, or fsync to the spool → DICOM status

Success (0x0000) goes out only after Kafka acknowledged the event or the spool fsynced it. While the spool holds
anything, new events go to the spool too, so events leave in the order they arrived; a drainer thread empties it
into Kafka when Kafka answers again. A full spool answers 0xA700 (Out of Resources) so the sender retries later.
A malformed object answers 0xC000-range failures and is logged without any value from the object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import BinaryIO, Protocol

from pydicom.dataset import Dataset

from edge_ingest.counters import EdgeCounters
from edge_ingest.deid import DeidContext, DoseExtractor, build_event
from edge_ingest.extract import ExtractError, parse_header
from edge_ingest.filters import CompiledFilter, carries_dose
from edge_ingest.mpps import PpsLinks, mpps_event
from edge_ingest.spool import Spool, SpoolFull
from schemas import codec
from schemas.events import InstanceEvent

log = logging.getLogger("radpulse.edge")


class Status(IntEnum):
    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700
    CANNOT_UNDERSTAND = 0xC000  # the dataset does not parse
    MISSING_IDENTIFIERS = 0xC001  # no SOP Instance / Study Instance UID: nothing to key the event on
    PROCESSING_FAILURE = 0xC002  # an unexpected internal error: the object was not kept, the sender may retry


@dataclass(frozen=True)
class Received:
    """One C-STORE request as the SCP handed it over."""

    data: bytes | BinaryIO
    transfer_syntax_uid: str
    sop_class_uid: str
    calling_ae: str
    received_at: datetime


@dataclass(frozen=True)
class Outcome:
    status: Status
    event: InstanceEvent | None = None
    reason: str | None = None


class Sender(Protocol):
    """What ``Delivery`` needs from Kafka (``producer.KafkaSender`` satisfies it)."""

    def send(self, topic: str, key: bytes, value: bytes) -> str | None: ...
    def send_many(self, messages: list[tuple[str, bytes, bytes]]) -> str | None: ...


class Delivery:
    """Kafka when it acknowledges, else the durable spool; drains the spool in order when Kafka returns."""

    def __init__(
        self,
        sender: Sender,
        spool: Spool,
        counters: EdgeCounters,
        *,
        retry_s: float = 1.0,
        drain_sender: Sender | None = None,
    ) -> None:
        self.sender = sender
        # draining has no sender waiting on it, so it may give Kafka longer to answer than a C-STORE can
        self.drain_sender = drain_sender or sender
        self.spool = spool
        self.counters = counters
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._spooling = not spool.is_empty()
        self._wake = threading.Event()
        self._running = True
        self._stopped = threading.Event()
        self.kafka_ok = True
        self._drainer = threading.Thread(target=self._drain_loop, name="spool-drain", daemon=True)
        self._drainer.start()

    @property
    def spooling(self) -> bool:
        return self._spooling

    def deliver(self, topic: str, key: bytes, value: bytes) -> Status:
        if not self._spooling:
            error = self.sender.send(topic, key, value)
            if error is None:
                self.counters.add("produced")
                return Status.SUCCESS
            with self._lock:
                if not self._spooling:
                    log.warning("Kafka did not acknowledge (%s); spooling events locally until it does", error)
                self._spooling = True
                self.kafka_ok = False
        try:
            # under the lock the drainer cannot declare the spool empty between our check and our append
            with self._lock:
                if not self._spooling:
                    self._spooling = True  # the drainer switched back meanwhile: stay behind what is spooled
                self.spool.append(topic, key, value)
        except SpoolFull as exc:
            self.counters.add("out_of_resources")
            log.error("%s: answering 0xA700 so senders retry later; raise [edge] spool_max_mb or fix Kafka", exc)
            return Status.OUT_OF_RESOURCES
        except OSError as exc:
            self.counters.add("out_of_resources")
            log.error("spool write failed (%s): answering 0xA700; check free space in %s", exc, self.spool.dir)
            return Status.OUT_OF_RESOURCES
        self.counters.add("spooled")
        self._wake.set()
        return Status.SUCCESS

    def _drain_loop(self) -> None:
        while self._running:
            if self.spool.is_empty():
                with self._lock:
                    if self.spool.is_empty() and self._spooling:
                        self._spooling = False
                        log.info("spool drained; producing directly to Kafka again")
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            batch = self.spool.read_batch(500)
            if not batch:
                time.sleep(0.05)
                continue
            error = self.drain_sender.send_many([(r.topic, r.key, r.value) for r in batch])
            if error is not None:
                self.kafka_ok = False
                log.debug("spool drain paused: %s", error)
                self._stopped.wait(self.retry_s)
                continue
            # every record of the batch is acknowledged by Kafka: only now may the cursor move past them
            self.kafka_ok = True
            if self.spool.commit(batch[-1], len(batch)):
                self.counters.add("drained", len(batch))
                self.counters.add("produced", len(batch))

    def wait_drained(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.is_empty() and not self._spooling:
                return True
            self._wake.set()
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._running = False
        self._stopped.set()
        self._wake.set()
        self._drainer.join(timeout=5)


class Ingestor:
    def __init__(
        self,
        ctx: DeidContext,
        source_filter: CompiledFilter,
        delivery: Delivery,
        topic: str,
        counters: EdgeCounters,
        dose_extractor: DoseExtractor | None = None,
        on_event: Callable[[InstanceEvent], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.filter = source_filter
        self.delivery = delivery
        self.topic = topic
        self.counters = counters
        self.dose_extractor = dose_extractor
        self.on_event = on_event
        f = source_filter
        # without device rules (the usual case) the four header lookups per instance are skipped
        self._device_rules = any((f.ignore_station, f.accept_station, f.ignore_manufacturer, f.accept_manufacturer,
                                  f.ignore_model, f.accept_model, f.ignore_serial, f.accept_serial))

    def ingest(self, rx: Received) -> Outcome:
        self.counters.add("received")
        capture = False
        if (why := self.filter.sop_class_ignored(rx.sop_class_uid)) is not None:
            capture = self.filter.may_carry_dose(rx.sop_class_uid)
            if not capture:
                self.counters.add("ignored")
                return Outcome(Status.SUCCESS, reason=f"ignored by filter ({why})")
        try:
            header = parse_header(rx.data, rx.transfer_syntax_uid)
            ds = header.dataset
            if capture and not carries_dose(ds):  # a Secondary Capture without dose: ignored as configured
                self.counters.add("ignored")
                return Outcome(Status.SUCCESS, reason="ignored by filter (sop_class)")
            why = self.filter.device_ignored(
                _text(ds, "StationName"), _text(ds, "Manufacturer"), _text(ds, "ManufacturerModelName"),
                _text(ds, "DeviceSerialNumber"),
            ) if self._device_rules else None
            if why is not None:
                self.counters.add("ignored")
                return Outcome(Status.SUCCESS, reason=f"ignored by filter ({why})")
            event = build_event(
                header,
                self.ctx,
                calling_ae=rx.calling_ae,
                received_at=rx.received_at,
                sop_class_uid=rx.sop_class_uid,
                dose_extractor=self.dose_extractor,
            )
        except ExtractError as exc:
            if capture:  # an unreadable capture is what it was before: ignored, not rejected
                self.counters.add("ignored")
                return Outcome(Status.SUCCESS, reason="ignored by filter (sop_class)")
            status = Status.MISSING_IDENTIFIERS if str(exc).startswith("missing") else Status.CANNOT_UNDERSTAND
            self.counters.reject(status.name.lower())
            return Outcome(status, reason=str(exc))
        except Exception as exc:
            self.counters.reject("processing_failure")
            return Outcome(Status.PROCESSING_FAILURE, reason=f"internal error {type(exc).__name__} while parsing")
        value = codec.encode(event)
        status = self.delivery.deliver(self.topic, event.study_pseudonym.encode(), value)
        if status == Status.SUCCESS and self.on_event is not None:
            self.on_event(event)
        return Outcome(status, event=event, reason=None if status == Status.SUCCESS else "spool full")


def _text(ds: object, keyword: str) -> str | None:
    try:
        value = getattr(ds, keyword, None)
    except Exception:
        return None
    if value is None or value == "":
        return None
    return str(value).strip() or None


class MppsIngestor:
    """MPPS N-CREATE/N-SET → WorkflowEvent → Kafka or spool, with the same durability as C-STORE."""

    def __init__(self, ctx: DeidContext, delivery: Delivery, topic: str, counters: EdgeCounters, links: PpsLinks):
        self.ctx = ctx
        self.delivery = delivery
        self.topic = topic
        self.counters = counters
        self.links = links

    def ingest(self, message: str, pps_uid: str, dataset: Dataset, calling_ae: str, received_at: datetime) -> Outcome:
        try:
            event = mpps_event(dataset, message=message, pps_uid=pps_uid, ctx=self.ctx, calling_ae=calling_ae,
                               received_at=received_at)
        except Exception as exc:
            self.counters.reject("mpps_malformed")
            return Outcome(Status.CANNOT_UNDERSTAND, reason=f"malformed MPPS {message} ({type(exc).__name__})")
        event = self.links.complete(event)
        self.links.remember(event)
        key = (event.study_pseudonym or event.pps_pseudonym or "").encode()
        status = self.delivery.deliver(self.topic, key, codec.encode(event))
        self.counters.add("workflow")
        return Outcome(status, reason=None if status == Status.SUCCESS else "spool full")
