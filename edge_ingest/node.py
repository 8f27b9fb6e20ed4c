"""Wires one edge node from ``Settings``: keys, spool, Kafka sender, ingestor, DICOM server, counters."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_ingest.counters import EdgeCounters
from edge_ingest.deid import DeidContext
from edge_ingest.dose_sr import extract_dose_report
from edge_ingest.filters import CompiledFilter
from edge_ingest.ingest import Delivery, Ingestor, MppsIngestor
from edge_ingest.keys import EdgeKeys, load_keys
from edge_ingest.mllp import Hl7Ingestor, MllpServer
from edge_ingest.mpps import PpsLinks
from edge_ingest.producer import KafkaSender, ensure_topics
from edge_ingest.pseudonyms import pseudonym
from edge_ingest.scp import limits_from_settings, make_ae, start_server
from edge_ingest.spool import Spool
from edge_ingest.tls import server_context
from edge_ingest.vocabulary import Vocabulary, VocabularyStore, build_vocabulary
from schemas import codec
from schemas.config import Settings
from schemas.events import EdgeHeartbeat

log = logging.getLogger("radpulse.edge")

TOPIC_INSTANCES = "instances"
TOPIC_EDGE_HEALTH = "edge_health"
TOPIC_WORKFLOW = "workflow"


def edge_vocabulary(s: Settings, keys: EdgeKeys) -> Vocabulary:
    """The shipped words + the exam-type rules + [deid] site words, learning into <data_dir>/vocabulary.sqlite."""
    store = VocabularyStore(Path(s.edge.data_dir) / "vocabulary.sqlite", s.deid.vocabulary_k,
                            lambda word: pseudonym(keys, "word", word))
    # the site's own exam-type rules file, wherever the settings keep it ([dose] today)
    own = getattr(s.dose, "exam_type_rules", "") or getattr(s.streams, "exam_type_rules", "")
    rules = [own] if own else []
    return build_vocabulary(rule_files=rules, word_files=s.deid.vocabulary_files, extra_words=s.deid.extra_words,
                            store=store)


@dataclass
class EdgeNode:
    settings: Settings
    counters: EdgeCounters = field(default_factory=EdgeCounters)

    def __post_init__(self) -> None:
        s = self.settings
        data_dir = Path(s.edge.data_dir)
        self.keys = load_keys(data_dir)
        self.spool = Spool(data_dir / "spool", int(s.edge.spool_max_mb * 1024 * 1024))
        self.sender = KafkaSender(s.kafka, s.edge.kafka_ack_timeout_s)
        self.drain_sender = KafkaSender(s.kafka, max(30.0, s.edge.kafka_ack_timeout_s), client_id="radpulse-edge-drain")
        self.delivery = Delivery(self.sender, self.spool, self.counters, drain_sender=self.drain_sender)
        self.vocabulary = edge_vocabulary(s, self.keys)
        ctx = DeidContext(
            keys=self.keys,
            site_id=s.site.id,
            edge_id=s.edge.id,
            site_timezone=s.site.timezone,
            description_max_len=s.edge.description_max_len,
            test_patient_patterns=tuple(re.compile(p) for p in s.edge.test_patient_patterns),
            vocabulary=self.vocabulary,
            on_text_issue=self.counters.text_issue,
        )
        self.ingestor = Ingestor(
            ctx,
            CompiledFilter.from_settings(s.filters),
            self.delivery,
            s.topic(TOPIC_INSTANCES),
            self.counters,
            dose_extractor=extract_dose_report,
        )
        self.mpps = MppsIngestor(ctx, self.delivery, s.topic(TOPIC_WORKFLOW), self.counters,
                                 PpsLinks(data_dir / "mpps-links.sqlite"))
        self.hl7 = Hl7Ingestor(ctx, self.delivery, s.topic(TOPIC_WORKFLOW), self.counters)
        self.mllp: MllpServer | None = None
        self.started_at = datetime.now(UTC)
        self._stop = threading.Event()
        self._server = None
        self._ticker: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self, *, create_topics: bool = True) -> None:
        s = self.settings
        if create_topics:
            try:
                ensure_topics(s.kafka, [s.topic(t) for t in (TOPIC_INSTANCES, TOPIC_EDGE_HEALTH, TOPIC_WORKFLOW)],
                              timeout_s=5)
            except Exception as exc:
                log.warning("could not check Kafka topics at %s (%s); events will spool until Kafka answers",
                            s.kafka.bootstrap_servers, type(exc).__name__)
        limits = limits_from_settings(s.edge)
        ae = make_ae(s.edge.ae_title, s.edge.allowed_calling_aes, s.edge.max_pdu, limits)
        tls = server_context("edge", s.edge.tls_cert, s.edge.tls_key, s.edge.tls_ca, s.edge.tls_require_client_cert)
        self._server = start_server(ae, s.edge.host, s.edge.port, self.ingestor.ingest, self.mpps.ingest,
                                    limits=limits, tls=tls, spill_dir=Path(s.edge.data_dir) / "incoming",
                                    rejections=self.counters)
        if not s.edge.allowed_calling_aes:
            log.warning("[edge] allowed_calling_aes is empty: ANY device that knows the AE title %s may send; "
                        "list your modalities' AE titles there", s.edge.ae_title)
        if s.hl7.enabled:
            hl7_tls = server_context("hl7", s.hl7.tls_cert, s.hl7.tls_key, s.hl7.tls_ca, s.hl7.tls_require_client_cert)
            self.mllp = MllpServer(s.hl7.host, s.hl7.port, self.hl7.handle,
                                   max_message_bytes=s.hl7.max_message_kb * 1024, counters=self.counters,
                                   max_connections=s.hl7.max_connections,
                                   max_connections_per_peer=s.hl7.max_connections_per_peer,
                                   read_timeout_s=s.hl7.read_timeout_s, tls=hl7_tls).start()
            log.info("HL7 v2 (MLLP) listening on %s:%d → topic %s", s.hl7.host, self.mllp.port,
                     s.topic(TOPIC_WORKFLOW))
        self._ticker = threading.Thread(target=self._tick, name="edge-counters", daemon=True)
        self._ticker.start()
        log.info(
            "DICOM node %s listening on %s:%d%s (site %s, edge %s) → Kafka %s topic %s; spool %s",
            s.edge.ae_title, s.edge.host, self.port, " over TLS" if tls else "", s.site.id, s.edge.id,
            s.kafka.bootstrap_servers,
            s.topic(TOPIC_INSTANCES), self.spool.dir,
        )

    def heartbeat(self) -> EdgeHeartbeat:
        c = self.counters.snapshot()
        return EdgeHeartbeat(
            site_id=self.settings.site.id,
            edge_id=self.settings.edge.id,
            at=datetime.now(UTC),
            started_at=self.started_at,
            spool_pending=self.spool.pending,
            spool_bytes=self.spool.size_bytes,
            kafka_ok=self.delivery.kafka_ok and not self.delivery.spooling,
            **c,
        )

    def _tick(self) -> None:
        interval = self.settings.edge.counters_interval_s
        while not self._stop.wait(interval):
            hb = self.heartbeat()
            log.info(
                "counters: received=%d produced=%d spooled=%d drained=%d ignored=%d rejected=%d "
                "out_of_resources=%d spool_depth=%d (%d bytes) text_undecodable=%d text_cleaned=%d",
                hb.received, hb.produced, hb.spooled, hb.drained, hb.ignored, hb.rejected, hb.out_of_resources,
                hb.spool_pending, hb.spool_bytes, self.counters.text_undecodable, self.counters.text_cleaned,
            )
            if hb.kafka_ok:
                # best effort: a heartbeat lost while Kafka is down is replaced by the next one
                self.sender.send(self.settings.topic(TOPIC_EDGE_HEALTH), hb.edge_id.encode(), codec.encode(hb))

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self.mllp is not None:
            self.mllp.stop()
        self.delivery.close()
        self.sender.close()
        self.drain_sender.close()
        self.spool.close()
        self.mpps.links.close()
        if self.vocabulary.store is not None:
            self.vocabulary.store.close()
