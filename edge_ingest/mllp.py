"""HL7 v2 over MLLP: a threaded TCP server, and the ingestor that turns each message into delivered events.

Framing (HL7 MLLP release 1): ``0x0B`` message ``0x1C 0x0D``. Bytes outside a frame are discarded, so junk and
keep-alive newlines between frames do no harm. A frame larger than ``max_message_bytes`` is read to its end with
bounded memory and answered with a NAK; a frame abandoned by a new ``0x0B`` is dropped unanswered, because MLLP is
strictly request/response and the sender now waits for the answer to the new frame. One thread per connection
(capped, see ``MllpServer``); each connection carries any number of messages, answered in order.

Order of durable steps in ``Hl7Ingestor.handle``:
1. decode (per MSH-18) and parse; a message no receiver could read → AE with ERR naming the segment and field;
2. map to ``WorkflowEvent``s (message types not mapped → AA, counted as ignored);
3. deliver every event: Kafka ack, or fsync to the spool;
4. only then AA. A full spool → AR "out of resources, retry later": HL7 defines AR (not AE) as "rejected for
   reasons unrelated to content, send again later", and engines re-send on AR but park AE messages for a human.
A failure part-way through step 3 leaves earlier events delivered; the re-send repeats them with the same
deterministic event ids, so downstream writes ignore the repeat.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edge_ingest.deid import DeidContext
from edge_ingest.hl7 import ERR_DATA_TYPE, ERR_INTERNAL, Hl7Error, ack, decode_bytes, parse, to_workflow_events
from edge_ingest.ingest import Status
from edge_ingest.tls import handshake
from schemas import codec
from schemas.events import WorkflowEvent

log = logging.getLogger("radpulse.edge.hl7")

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
MAX_MESSAGE_BYTES = 1024 * 1024
_HEAD_BYTES = 64 * 1024  # kept from an oversized frame so its NAK can quote MSH-10
RETRY_LATER = "out of resources, retry later"


class Deliverer(Protocol):
    """What the ingestor needs from ``ingest.Delivery``."""

    def deliver(self, topic: str, key: bytes, value: bytes) -> Status: ...


class Counters(Protocol):
    """What the ingestor needs from ``counters.EdgeCounters``."""

    def add(self, name: str, n: int = 1) -> None: ...
    def reject(self, reason: str) -> None: ...


# --------------------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One complete message as received."""

    data: bytes


@dataclass(frozen=True)
class Oversized:
    """A frame that exceeded the cap: its first bytes (for the NAK) and its full size."""

    head: bytes
    size: int


class FrameReader:
    """Incremental MLLP deframer: feed it whatever ``recv`` returned, get back the frames it completed."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.discarded_bytes = 0  # junk between frames
        self.abandoned_frames = 0  # frames cut short by a new start block
        self._in_frame = False
        self._buf = bytearray()
        self._size = 0
        self._oversized = False

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        out: list[Frame | Oversized] = []
        i, n = 0, len(data)
        while i < n:
            if not self._in_frame:
                start = data.find(START_BLOCK, i)
                junk = data[i:] if start < 0 else data[i:start]
                self.discarded_bytes += len(junk) - junk.count(CARRIAGE_RETURN) - junk.count(b"\n")
                if start < 0:
                    break
                self._in_frame, self._oversized, self._size = True, False, 0
                self._buf.clear()
                i = start + 1
                continue
            end = data.find(END_BLOCK, i)
            restart = data.find(START_BLOCK, i)
            if restart >= 0 and (end < 0 or restart < end):
                self.abandoned_frames += 1
                self._in_frame = False
                i = restart
                continue
            stop = n if end < 0 else end
            self._take(data[i:stop])
            if end < 0:
                break
            out.append(Oversized(bytes(self._buf), self._size) if self._oversized else Frame(bytes(self._buf)))
            self._in_frame = False
            self._buf.clear()
            i = end + 1
        return out

    def _take(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._oversized:
            return
        if self._size > self.max_message_bytes:
            self._oversized = True
            self._buf += chunk[: max(_HEAD_BYTES - len(self._buf), 0)]
            del self._buf[_HEAD_BYTES:]
            return
        self._buf += chunk


def frame(message: str, codec_name: str = "utf-8") -> bytes:
    """Text of one message → its MLLP frame."""
    return bytes([START_BLOCK]) + message.encode(codec_name, errors="replace") + bytes([END_BLOCK, CARRIAGE_RETURN])


# --------------------------------------------------------------------------------------------------------- server


class MllpServer:
    """Threaded MLLP listener: ``handle(text) -> ack text`` per message ("" sends no reply).

    One thread per connection, at most ``max_connections`` of them (``max_connections_per_peer`` per IP address):
    further connections are closed at accept. A connection that completes no message for ``read_timeout_s`` is
    closed, whether silent or dribbling. The accept loop survives running out of file descriptors (EMFILE/ENFILE):
    it logs, backs off and accepts again once descriptors are free. TLS handshakes run on the connection's thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handle: Callable[[str], str],
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        counters: Counters | None = None,
        max_connections: int = 64,
        max_connections_per_peer: int = 8,
        read_timeout_s: float = 300.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.counters = counters  # counts what never reaches `handle` (oversized frames, handler crashes)
        self._requested_port = port
        self.handle = handle
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.max_connections_per_peer = max_connections_per_peer
        self.read_timeout_s = read_timeout_s
        self.tls = tls
        self._sock: socket.socket | None = None
        self._running = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._peers: Counter[str] = Counter()
        self._warned: dict[str, float] = {}
        self._not_logged: Counter[str] = Counter()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("MllpServer.port: call start() first")
        return int(self._sock.getsockname()[1])

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> MllpServer:
        self._sock = socket.create_server((self.host, self._requested_port), backlog=128)
        self._sock.settimeout(0.2)  # accept() wakes up to notice stop()
        self._running.set()
        self._acceptor = threading.Thread(target=self._accept_loop, name="mllp-accept", daemon=True)
        self._acceptor.start()
        log.info("HL7 MLLP listening on %s:%d%s", self.host, self.port, " over TLS" if self.tls else "")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._running.clear()
        if self._acceptor is not None:
            self._acceptor.join(timeout_s)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv()
            except OSError:
                pass
        for _, thread in connections:
            thread.join(timeout_s)

    def __enter__(self) -> MllpServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _warn(self, key: str, msg: str, *args: object) -> None:
        """At most one line per 10 s for a repeated condition (an attack must not flood the log)."""
        now = time.monotonic()
        with self._lock:
            if now - self._warned.get(key, -1e9) < 10.0:
                self._not_logged[key] += 1
                return
            self._warned[key] = now
            skipped, self._not_logged[key] = self._not_logged[key], 0
        log.warning(msg + (f" ({skipped} more like this not logged)" if skipped else ""), *args)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        backoff = 0.0
        while self._running.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._running.is_set():
                    break
                # out of descriptors (or memory): the connection stays queued; wait for some to free, never exit
                backoff = min(max(backoff * 2, 0.05), 2.0)
                self._warn("accept", "HL7 accept failed: %s; retrying in %.2f s (if EMFILE/ENFILE: raise the "
                           "open-files limit, `ulimit -n`, or lower [hl7] max_connections)",
                           errno.errorcode.get(exc.errno or 0, type(exc).__name__), backoff)
                time.sleep(backoff)
                continue
            if backoff:
                log.info("HL7 accept works again")
                backoff = 0.0
            self._admit(conn, peer)

    def _admit(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        ip = peer[0]
        with self._lock:
            if self._peers[ip] >= self.max_connections_per_peer:
                refused = f"{self._peers[ip]} connections held by that address, [hl7] max_connections_per_peer"
            elif len(self._connections) >= self.max_connections:
                refused = f"{len(self._connections)} connections held, [hl7] max_connections"
            else:
                refused = ""
                thread = threading.Thread(target=self._serve, args=(conn, peer), name=f"mllp-{ip}:{peer[1]}",
                                          daemon=True)
                self._connections[conn] = thread
                self._peers[ip] += 1
        if refused:
            self._warn("refused", "HL7 connection from %s closed at accept: %s", ip, refused)
            conn.close()
            return
        try:
            thread.start()
        except RuntimeError:  # no thread can start: give the slot back
            self._forget(conn, ip)
            self._warn("thread", "HL7 connection from %s closed: cannot start a thread", ip)
            conn.close()

    def _forget(self, conn: socket.socket, ip: str) -> None:
        with self._lock:
            self._connections.pop(conn, None)
            self._peers[ip] -= 1
            if self._peers[ip] <= 0:
                del self._peers[ip]

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        reader = FrameReader(self.max_message_bytes)
        log.debug("HL7 connection from %s:%d", peer[0], peer[1])
        sock: socket.socket = conn
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an ACK must not wait for a delayed ACK
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # notice dead peers
            if self.tls is not None:
                try:
                    sock = handshake(self.tls, conn, min(self.read_timeout_s, 30.0))
                except OSError as exc:
                    self._warn("tls", "HL7 TLS handshake with %s failed (%s): a plaintext client or an untrusted "
                               "certificate; connection closed", peer[0], getattr(exc, "reason", None)
                               or type(exc).__name__)
                    return
            # a message must complete within read_timeout_s of the previous one (or of connecting): silent and
            # dribbling connections alike give their slot back
            progress = time.monotonic()
            while self._running.is_set():
                left = progress + self.read_timeout_s - time.monotonic()
                if left <= 0:
                    log.info("HL7 connection from %s:%d: no complete message for %.0f s ([hl7] read_timeout_s); "
                             "closed", peer[0], peer[1], self.read_timeout_s)
                    break
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                for item in reader.feed(chunk):
                    progress = time.monotonic()
                    reply = self._respond(item)
                    if reply:
                        sock.settimeout(self.read_timeout_s)
                        sock.sendall(reply)
        except Exception as exc:
            # exception text may quote message values: the type name only
            log.warning("HL7 connection from %s:%d ended: %s", peer[0], peer[1], type(exc).__name__)
        finally:
            if reader.discarded_bytes or reader.abandoned_frames:
                log.warning("HL7 connection from %s:%d: discarded %d bytes outside frames and %d unfinished frames",
                            peer[0], peer[1], reader.discarded_bytes, reader.abandoned_frames)
            self._forget(conn, peer[0])
            try:
                sock.close()
            except OSError:
                pass
            conn.close()

    def _respond(self, item: Frame | Oversized) -> bytes:
        if isinstance(item, Oversized):
            text, codec_name = decode_bytes(item.head)
            reason = f"message of {item.size} bytes exceeds the {self.max_message_bytes}-byte limit"
            log.warning("HL7 %s: answered AE", reason)
            if self.counters is not None:
                self.counters.reject("hl7_oversized")
            return frame(ack(text, "AE", reason, error=Hl7Error(reason, code=ERR_DATA_TYPE)), codec_name)
        text, codec_name = decode_bytes(item.data)
        try:
            reply = self.handle(text)
        except Exception as exc:
            # the handler's values may be PHI: log the exception type only
            log.error("HL7 handler failed with %s; answered AE", type(exc).__name__)
            if self.counters is not None:
                self.counters.reject("hl7_processing_failure")
            reason = f"internal error ({type(exc).__name__})"
            reply = ack(text, "AE", reason, error=Hl7Error(reason, code=ERR_INTERNAL))
        return frame(reply, codec_name) if reply else b""


# ------------------------------------------------------------------------------------------------------- ingestor


class Hl7Ingestor:
    """One message → parse → ``WorkflowEvent``s → Kafka or spool → the ACK text. Thread-safe."""

    def __init__(self, ctx: DeidContext, delivery: Deliverer, topic: str, counters: Counters) -> None:
        self.ctx = ctx
        self.delivery = delivery
        self.topic = topic
        self.counters = counters

    def handle(self, raw: str) -> str:
        try:
            msg = parse(raw)
        except Hl7Error as exc:
            self.counters.reject("hl7_malformed")
            log.warning("HL7 message rejected: %s; answered AE", exc)
            return ack(raw, "AE", str(exc), error=exc)
        if msg.message_type == "ACK":
            return ""  # an acknowledgement is never acknowledged
        try:
            events = to_workflow_events(msg, self.ctx, received_at=datetime.now(UTC))
            if not events:
                self.counters.add("ignored")
                log.debug("HL7 %s from %s is not mapped; acknowledged and ignored",
                          msg.type_code, msg.sending_application)
                return ack(msg, "AA", f"{msg.type_code} not used; ignored")
            for event in events:
                if self.delivery.deliver(self.topic, _key(event), codec.encode(event)) != Status.SUCCESS:
                    log.warning("HL7 %s %s from %s: %s; answered AR",
                                msg.type_code, msg.control_id, msg.sending_application, RETRY_LATER)
                    return ack(msg, "AR", RETRY_LATER, error=Hl7Error(RETRY_LATER, code=ERR_INTERNAL))
                self.counters.add("workflow")
        except Hl7Error as exc:
            self.counters.reject("hl7_malformed")
            log.warning("HL7 %s %s from %s rejected: %s; answered AE",
                        msg.type_code, msg.control_id, msg.sending_application, exc)
            return ack(msg, "AE", str(exc), error=exc)
        except Exception as exc:
            # exception text may quote values (PHI): the type name only, in the log and in the NAK
            self.counters.reject("hl7_processing_failure")
            log.error("HL7 %s %s from %s: internal %s; answered AE",
                      msg.type_code, msg.control_id, msg.sending_application, type(exc).__name__)
            reason = f"internal error ({type(exc).__name__})"
            return ack(msg, "AE", reason, error=Hl7Error(reason, code=ERR_INTERNAL))
        return ack(msg, "AA")


def _key(event: WorkflowEvent) -> bytes:
    """Kafka key: one accession (else one patient) stays in one partition, so its events keep their order."""
    return (event.accession_pseudonym or event.patient_pseudonym or event.study_pseudonym or "").encode()
