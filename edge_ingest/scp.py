"""The pynetdicom application entity: contexts, who may associate, connection limits, and handlers. The only
pynetdicom import.

Handlers translate; they don't decide: a C-STORE hands the received bytes (``request.DataSet``, still encoded in
the negotiated transfer syntax) to ``Ingestor.ingest`` and turns its outcome into a status. pynetdicom's own
logging is turned down on purpose: its standard handlers log UIDs and identifiers, which are PHI here.

Staying open for the modalities (issue 9): the accept loop only accepts; TLS handshakes and everything else run on
the connection's own thread. Each connection counts against ``max_connections`` and ``max_connections_per_peer``
until its association thread ends; accepted sockets carry ``network_timeout_s`` and each PDU must arrive whole
within a deadline and under a size cap, so silent, half-open, slow and garbage connections end in bounded time.
The called AE title, the calling AE allow-list and ``max_associations`` (counting established associations only,
so connections still negotiating cannot starve real ones) are decided on A-ASSOCIATE-RQ. An address that once
passed those checks may exceed ``max_connections`` (by ``max_associations``), so strangers spread over many
addresses cannot lock out the modalities that have sent before.

Large objects: C-STORE data above ``spill_mb`` is written to an unnamed temporary file in ``data_dir/incoming``
as it arrives (``SpillBuffer``), so memory per association stays near one PDU plus ``spill_mb``; above
``max_object_mb`` the rest is discarded and the C-STORE answered 0xC003 with a comment.
"""

from __future__ import annotations

import errno
import io
import logging
import select
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, dimse_messages, evt
from pynetdicom import association as _pynd_association
from pynetdicom import dul as _pynd_dul
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import ModalityPerformedProcedureStep, Verification
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from edge_ingest.ingest import Outcome, Received, Status
from edge_ingest.tls import handshake

log = logging.getLogger("radpulse.edge")

# Accept every storage SOP class, public or private, in whatever transfer syntax the sender proposes.
_config.UNRESTRICTED_STORAGE_SERVICE = True
# Standard event logging prints identifiers (UIDs, AE details, query keys): never at any level we run.
_config.LOG_HANDLER_LEVEL = "none"
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

OBJECT_TOO_LARGE = 0xC003  # a failure (0xCxxx), not 0xA700: retrying the same object later cannot succeed
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one DICOM listener allows; built from ``[edge]`` by ``limits_from_settings``."""

    ae_title: str = "RADPULSE"
    accept_any_called_ae: bool = False
    allowed_calling_aes: tuple[str, ...] = ()
    max_associations: int = 32
    max_connections: int = 128
    max_connections_per_peer: int = 8
    acse_timeout_s: float = 10.0
    network_timeout_s: float = 60.0
    dimse_timeout_s: float = 60.0
    max_pdu: int = _MIB
    max_object_bytes: int = 2048 * _MIB
    spill_bytes: int = 4 * _MIB

    @property
    def max_pdu_read(self) -> int:
        """Largest PDU read from a peer: our advertised maximum plus room for an A-ASSOCIATE-RQ (with max_pdu 0 a
        conformant sender may put a whole object in one PDU)."""
        body = self.max_pdu if self.max_pdu > 0 else self.max_object_bytes
        return max(body + 65536, 256 * 1024)


def limits_from_settings(edge: Any) -> Limits:
    return Limits(
        ae_title=edge.ae_title,
        accept_any_called_ae=edge.accept_any_called_ae,
        allowed_calling_aes=tuple(a.strip() for a in edge.allowed_calling_aes),
        max_associations=edge.max_associations,
        max_connections=edge.max_connections,
        max_connections_per_peer=edge.max_connections_per_peer,
        acse_timeout_s=edge.acse_timeout_s,
        network_timeout_s=edge.network_timeout_s,
        dimse_timeout_s=edge.dimse_timeout_s,
        max_pdu=edge.max_pdu,
        max_object_bytes=int(edge.max_object_mb * _MIB),
        spill_bytes=int(edge.spill_mb * _MIB),
    )


class Rejections(Protocol):
    """What the handlers count (``counters.EdgeCounters`` satisfies it)."""

    def reject(self, reason: str) -> None: ...


# --------------------------------------------------------------------------------------------- large objects


class SpillBuffer(io.BytesIO):
    """Where pynetdicom collects a received DIMSE data set (it writes every P-DATA fragment with ``write``).

    Up to ``spill_bytes`` it is the ``BytesIO`` pynetdicom expects, so small objects cost nothing extra; beyond,
    the bytes move to an unnamed temporary file (deleted when closed, or when the process dies) and later
    fragments are appended there. Beyond ``max_bytes`` nothing more is kept and ``oversized`` is set.
    Limits are class attributes because pynetdicom creates the buffer with no argument; one edge per process.
    """

    spill_bytes: ClassVar[int] = 4 * _MIB
    max_bytes: ClassVar[int] = 2048 * _MIB
    spill_dir: ClassVar[str | None] = None

    def __init__(self, initial: bytes = b"") -> None:
        super().__init__(initial)
        self.size = len(initial)
        self.file: io.BufferedRandom | None = None
        self.oversized = False

    def write(self, data: Any) -> int:
        n = len(data)
        self.size += n
        if self.oversized:
            return n
        if self.size > self.max_bytes:
            self.oversized = True
            self.release()
            return n
        if self.file is not None:
            return self.file.write(data)
        if self.size > self.spill_bytes:
            self.file = tempfile.TemporaryFile(dir=self.spill_dir, prefix="rx-")  # closed in release()
            with self.getbuffer() as held:
                self.file.write(held)
            super().__init__()  # frees the in-memory copy
            return self.file.write(data)
        return super().write(data)

    def getvalue(self) -> bytes:
        if self.file is None:
            return super().getvalue()
        self.file.seek(0)  # only reached if pynetdicom itself decodes a spilled data set (a huge N-CREATE)
        return self.file.read()

    def release(self) -> None:
        """Drop what is held: the temporary file is deleted on close."""
        if self.file is not None:
            self.file.close()
            self.file = None
        super().__init__()


def configure_spill(limits: Limits, spill_dir: Path | None) -> None:
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
    SpillBuffer.spill_bytes = limits.spill_bytes
    SpillBuffer.max_bytes = limits.max_object_bytes
    SpillBuffer.spill_dir = str(spill_dir) if spill_dir is not None else None
    # pynetdicom builds each DIMSE message's data set with `BytesIO()` from this module's namespace
    dimse_messages.BytesIO = SpillBuffer  # type: ignore[attr-defined,misc]


# ------------------------------------------------------------------------------------------------ the AE


def make_ae(ae_title: str, allowed_calling_aes: list[str] | tuple[str, ...], max_pdu: int = 0,
            limits: Limits | None = None) -> AE:
    limits = limits or Limits(ae_title=ae_title, allowed_calling_aes=tuple(allowed_calling_aes), max_pdu=max_pdu)
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    # our own count (established associations, in EVT_REQUESTED) decides; pynetdicom's counts half-open sockets
    ae.maximum_associations = limits.max_connections + 1
    ae.maximum_pdu_size = limits.max_pdu
    ae.network_timeout = limits.network_timeout_s
    ae.acse_timeout = limits.acse_timeout_s
    ae.dimse_timeout = limits.dimse_timeout_s
    ae.radpulse_limits = limits  # type: ignore[attr-defined]  # start_server enforces these unless given others
    return ae


def _status(outcome: Outcome) -> Dataset | int:
    if outcome.status == Status.SUCCESS:
        return 0x0000
    rsp = Dataset()
    rsp.Status = int(outcome.status)
    rsp.ErrorComment = (outcome.reason or outcome.status.name)[:64]
    return rsp


def _on_echo(event: Any) -> int:
    return 0x0000


def _on_store(event: Any, ingest: Callable[[Received], Outcome], limits: Limits,
              rejections: Rejections | None) -> Dataset | int:
    request = event.request
    sop_class = str(request.AffectedSOPClassUID or "")
    calling = event.assoc.requestor.ae_title
    buffer = request.DataSet
    data: bytes | io.BytesIO | io.BufferedRandom = buffer
    try:
        if isinstance(buffer, SpillBuffer):
            if buffer.oversized:
                if rejections is not None:
                    rejections.reject("object_too_large")
                log.warning("C-STORE sop_class=%s from %s: %d MB exceeds [edge] max_object_mb=%d; answered 0x%04X",
                            sop_class, calling, buffer.size // _MIB, limits.max_object_bytes // _MIB,
                            OBJECT_TOO_LARGE)
                rsp = Dataset()
                rsp.Status = OBJECT_TOO_LARGE
                rsp.ErrorComment = f"object exceeds {limits.max_object_bytes // _MIB} MB limit"[:64]
                return rsp
            if buffer.file is not None:
                buffer.file.seek(0)
                data = buffer.file
        rx = Received(
            data=data,
            transfer_syntax_uid=str(event.context.transfer_syntax),
            sop_class_uid=sop_class,
            calling_ae=calling,
            received_at=datetime.now(UTC),
        )
        try:
            outcome = ingest(rx)
        except Exception as exc:
            log.error("C-STORE sop_class=%s from %s: internal %s; answered 0xC002", sop_class, calling,
                      type(exc).__name__)
            return 0xC002
    finally:
        if isinstance(buffer, SpillBuffer):
            buffer.release()
    if outcome.status != Status.SUCCESS:
        log.warning(
            "C-STORE sop_class=%s from %s answered 0x%04X (%s): %s",
            sop_class, calling, outcome.status, outcome.status.name, outcome.reason,
        )
    return _status(outcome)


def _on_mpps(event: Any, message: str, ingest: Callable[..., Outcome]) -> tuple[int, Dataset | None]:
    request = event.request
    if message == "N-CREATE":
        pps_uid = str(request.AffectedSOPInstanceUID or "")
        dataset = event.attribute_list
    else:
        pps_uid = str(request.RequestedSOPInstanceUID or "")
        dataset = event.modification_list
    calling = event.assoc.requestor.ae_title
    if not pps_uid:
        log.warning("MPPS %s from %s without SOP Instance UID: answered 0xC000", message, calling)
        return 0xC000, None
    outcome = ingest(message, pps_uid, dataset, calling, datetime.now(UTC))
    if outcome.status != Status.SUCCESS:
        log.warning("MPPS %s from %s answered 0x%04X: %s", message, calling, outcome.status, outcome.reason)
        return int(outcome.status), None
    return 0x0000, dataset


def _on_requested(event: Any, limits: Limits) -> None:
    """Decide on the A-ASSOCIATE-RQ before pynetdicom negotiates: called AE, calling AE, association count."""
    assoc = event.assoc
    rq = assoc.requestor.primitive
    calling = str(rq.calling_ae_title).strip()
    called = str(rq.called_ae_title).strip()
    peer = assoc.requestor.address
    server = assoc._server if isinstance(assoc._server, EdgeAssociationServer) else None

    def warn(key: str, msg: str, *args: object) -> None:  # rate-limited: rejected attempts must not flood the log
        if server is not None:
            server.warn(key, msg, *args)
        else:
            log.warning(msg, *args)

    why = ""
    if not limits.accept_any_called_ae and called != limits.ae_title:
        # permanent, service user, called AE title not recognised
        rsd, why = (0x01, 0x01, 0x07), "called_ae"
        warn(why, "association from %s (calling AE %s) rejected: called AE %r is not [edge] ae_title %r "
                    "(set the modality's destination AE title, or [edge] accept_any_called_ae = true)",
                    peer, calling, called, limits.ae_title)
    elif limits.allowed_calling_aes and calling not in limits.allowed_calling_aes:
        rsd, why = (0x01, 0x01, 0x03), "calling_ae"
        warn(why, "association from %s rejected: calling AE %r is not in [edge] allowed_calling_aes", peer, calling)
    else:
        established = sum(1 for a in assoc._server.active_associations if a.is_established) if assoc._server else 0
        if established >= limits.max_associations:
            # transient, presentation related, local limit exceeded: the sender retries later
            rsd, why = (0x02, 0x03, 0x02), "association_limit"
            warn(why, "association from %s (calling AE %s) rejected: %d associations open, [edge] "
                        "max_associations=%d", peer, calling, established, limits.max_associations)
    if not why:
        if server is not None:
            server.trust(peer)
        return
    assoc.acse.send_reject(*rsd)
    assoc.kill()


# ---------------------------------------------------------------------------------------- the listener


class _RateLimitedWarning:
    """One log line per ``every_s`` for a repeated event, with the count of the ones not logged."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.every_s:
                self._skipped[key] += 1
                return
            self._last[key] = now
            skipped, self._skipped[key] = self._skipped[key], 0
        log.warning(msg + (f" ({skipped} more like this not logged)" if skipped else ""), *args)


class GuardedSocket(AssociationSocket):
    """pynetdicom's socket with a cap on one PDU's size and a deadline for the whole PDU to arrive: pynetdicom
    itself reads any declared length, however large, and a peer dribbling one byte per timeout never ends."""

    max_read: int = 256 * 1024
    deadline_s: float = 60.0

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.max_read:
            raise OSError(f"PDU of {nr_bytes} bytes exceeds the {self.max_read}-byte limit ([edge] max_pdu)")
        sock = self.socket
        if sock is None:
            return bytearray()
        # a big PDU may take longer: at least 1 MiB per deadline
        deadline = time.monotonic() + self.deadline_s * max(1.0, nr_bytes / _MIB)
        # memory follows what arrives, not what the peer declares (only up to 4 MiB is reserved up front)
        buf = bytearray(min(nr_bytes, 4 * _MIB))
        got = 0
        try:
            while got < nr_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"PDU not complete within {self.deadline_s:.0f} s ([edge] network_timeout_s)")
                sock.settimeout(remaining)
                if got == len(buf):
                    buf.extend(bytes(min(nr_bytes - got, 4 * _MIB)))
                with memoryview(buf) as view:
                    n = sock.recv_into(view[got:], min(len(buf) - got, _MIB))
                if not n:
                    break
                got += n
        finally:
            sock.settimeout(self.deadline_s)  # sends use the socket's timeout too: not what was left of this one
        del buf[got:]
        return buf


# ----------------------------------------------------------------------------------- event-driven reactors

# pynetdicom 3.0.4's two reactor threads per association poll: each loop sleeps 1 ms, so every C-STORE waits for
# the association thread's next tick to be served and for the DUL thread's next tick to be answered, and an idle
# association wakes 2,000 times a second. For the edge's own associations those sleeps become waits that end as
# soon as there is work: the DUL thread waits on its socket and a wake-up pair (written when a primitive is queued
# to send), the association thread on an event set when a DIMSE message or ACSE primitive arrives. Both still wake
# every _REACTOR_IDLE_S to run pynetdicom's own checks (ARTIM and idle timers, kill flags), unchanged.
_REACTOR_IDLE_S = 0.01
_ASSOC_REACTOR = _pynd_association.Association._run_reactor.__code__
_DUL_REACTOR = _pynd_dul.DULServiceProvider.run_reactor.__code__


class _ReactorClock:
    """Stands in for the ``time`` module inside pynetdicom's association and dul modules: only the 1 ms sleep
    at the top of an edge association's reactor loops changes; every other use is the real ``time``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds == 0.001 and sys._getframe(1).f_code in (_ASSOC_REACTOR, _DUL_REACTOR):
            wait = getattr(threading.current_thread(), "radpulse_wait", None)
            if wait is not None:
                wait()
                return
        time.sleep(seconds)


_pynd_association.time = _ReactorClock()  # type: ignore[assignment]
_pynd_dul.time = _ReactorClock()  # type: ignore[assignment]


def _notify_on_put(q: Any, notify: Callable[[], None]) -> None:
    put = q.put

    def put_and_notify(item: Any, *args: Any, **kwargs: Any) -> None:
        put(item, *args, **kwargs)
        notify()

    q.put = put_and_notify


def _serve_stores_where_received(assoc: Any, notify: Callable[[], None]) -> None:
    """Serve each C-STORE request on the DUL thread that decoded it, instead of queueing it for the association
    thread: two thread wake-ups less per instance (the association thread to serve it, the DUL thread to send the
    response, which now goes out on the same thread's next loop), and each is a wait for a core on a busy machine.
    Nothing reads the socket meanwhile, as before: the sender waits for the response (no asynchronous operations
    are negotiated). Every other message goes to the association thread as pynetdicom does it. An abort from this
    thread must not wait for the DUL thread to end (it is this thread): it only queues the A-ABORT."""
    q, dul = assoc.dimse.msg_queue, assoc.dul
    put = q.put
    abort = assoc._abort_blocking

    def abort_without_waiting_on_self(block: bool = True) -> None:
        abort(block and threading.current_thread() is not dul)

    def put_or_serve(item: Any, *args: Any, **kwargs: Any) -> None:
        context_id, primitive = item
        if (type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is None
                and threading.current_thread() is dul):
            assoc._serve_request(primitive, context_id)
            return
        put(item, *args, **kwargs)
        notify()

    assoc._abort_blocking = abort_without_waiting_on_self
    q.put = put_or_serve


def _make_event_driven(assoc: Any) -> tuple[socket.socket, socket.socket] | None:
    """Give one acceptor association's reactors their waits; returns the wake-up pair to close when the
    association ends, or None when no descriptor was left (the association then polls as pynetdicom does)."""
    try:
        wake_r, wake_w = socket.socketpair()
    except OSError:
        return None
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    dul, dimse = assoc.dul, assoc.dimse
    ready = threading.Event()

    def wake_dul() -> None:
        try:
            wake_w.send(b"\0")
        except OSError:  # buffer full (a wake-up is pending anyway) or closed at the end
            pass

    def assoc_wait() -> None:
        ready.clear()
        if dimse.msg_queue.qsize() or dul.to_user_queue.qsize():
            return
        ready.wait(_REACTOR_IDLE_S)

    def dul_wait() -> None:
        if dul.to_provider_queue.qsize() or dul.event_queue.qsize() or dul._kill_thread:
            return
        sock = dul.socket.socket if dul.socket is not None else None
        if sock is None or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            time.sleep(0.001 if sock is None else 0)
            return
        try:
            readable, _, _ = select.select([sock, wake_r], [], [], _REACTOR_IDLE_S)
            if wake_r in readable:
                wake_r.recv(4096)
        except (OSError, ValueError):  # the connection closed under us: pynetdicom's next check notices
            time.sleep(0.001)

    _serve_stores_where_received(assoc, ready.set)
    _notify_on_put(dul.to_user_queue, ready.set)
    _notify_on_put(dul.to_provider_queue, wake_dul)
    assoc.radpulse_wait = assoc_wait
    dul.radpulse_wait = dul_wait
    return wake_r, wake_w


# ------------------------------------------------------------------------------------- the C-STORE response

# pynetdicom encodes each response's command set twice through pydicom's writer (once for the group length) after
# filling a Dataset of every keyword the message type has: on a bare SCP that is half of its CPU per instance. A
# C-STORE-RSP has at most seven fixed elements, so an edge association writes them directly (PS3.7 9.3.1.2,
# Implicit VR Little Endian as PS3.7 6.3.1 requires); anything unusual goes through pynetdicom unchanged.
_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<H")


def _text_element(elem: int, value: str | None, pad: bytes) -> bytes:
    data = value.encode("ascii")  # UIDs and our own comments: ASCII, else UnicodeEncodeError → pynetdicom's path
    if len(data) % 2:
        data += pad
    return _ELEMENT.pack(0x0000, elem, len(data)) + data


def _us_element(elem: int, value: int) -> bytes:
    return _ELEMENT.pack(0x0000, elem, 2) + _US.pack(value)


def encode_store_response(rsp: C_STORE) -> bytes | None:
    """The command set of a C-STORE-RSP exactly as pynetdicom 3.0.4 encodes it, or None when the response carries
    something this encoder leaves to pynetdicom (an offending element, a non-ASCII comment, a missing field)."""
    if rsp.MessageIDBeingRespondedTo is None or rsp.Status is None or rsp.OffendingElement is not None:
        return None
    try:
        body = b"".join((
            _text_element(0x0002, rsp.AffectedSOPClassUID, b"\0") if rsp.AffectedSOPClassUID is not None else b"",
            _us_element(0x0100, 0x8001),
            _us_element(0x0120, rsp.MessageIDBeingRespondedTo),
            _us_element(0x0800, 0x0101),  # no data set follows
            _us_element(0x0900, rsp.Status),
            _text_element(0x0902, rsp.ErrorComment, b" ") if rsp.ErrorComment is not None else b"",
            _text_element(0x1000, rsp.AffectedSOPInstanceUID, b"\0") if rsp.AffectedSOPInstanceUID is not None else b"",
        ))
    except (UnicodeEncodeError, struct.error):
        return None
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body


def _fast_store_responses(assoc: Any) -> None:
    """Send this association's C-STORE responses through ``encode_store_response``; every other message, and any
    response while someone listens to EVT_DIMSE_SENT, through pynetdicom's own ``send_msg``."""
    dimse = assoc.dimse
    original = dimse.send_msg

    def send_msg(primitive: Any, context_id: int) -> None:
        encoded = encode_store_response(primitive) if type(primitive) is C_STORE else None
        max_pdu = dimse.maximum_pdu_size
        if encoded is None or assoc.get_handlers(evt.EVT_DIMSE_SENT) or (max_pdu and len(encoded) > max_pdu - 6):
            original(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, b"\x03" + encoded))  # last command fragment
        dimse.dul.send_pdu(pdata)

    dimse.send_msg = send_msg


def _close_wake(wake: tuple[socket.socket, socket.socket] | None) -> None:
    for end in wake or ():
        end.close()


class _Handler(RequestHandler):
    """One connection: TLS handshake (if configured), then pynetdicom's association, on this thread's watch."""

    server: EdgeAssociationServer

    def handle(self) -> None:
        server = self.server
        wake: tuple[socket.socket, socket.socket] | None = None
        try:
            if server.tls is not None:
                try:
                    self.request = handshake(server.tls, self.request, server.limits.acse_timeout_s)
                except OSError as exc:
                    server.warn("tls", "DICOM TLS handshake with %s failed (%s): a plaintext client or an untrusted "
                                "certificate; connection closed", self.client_address[0], _reason(exc))
                    return
                self.request.settimeout(server.limits.network_timeout_s)
            assoc = self._create_association()
            wake = _make_event_driven(assoc)
            _fast_store_responses(assoc)
            sock = assoc.dul.socket
            sock.__class__ = GuardedSocket
            sock.max_read = server.limits.max_pdu_read
            sock.deadline_s = server.limits.network_timeout_s
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()  # the connection's slot is free only when its association has ended
        finally:
            _close_wake(wake)
            server.release(self.client_address[0])
            try:
                self.request.close()
            except OSError:
                pass


def _disable_nagle(client: socket.socket) -> None:
    """Answer each C-STORE at once: with Nagle on, a small response waits for the peer's delayed ACK (~40 ms),
    which caps a sender of small objects at ~25 instances/s."""
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or type(exc).__name__


class EdgeAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with connection limits, timeouts on accepted sockets, TLS off the accept
    thread, and an accept loop that backs off when descriptors run out."""

    request_queue_size = 128
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, limits: Limits, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self.limits = limits
        self.tls = tls
        self.warn = _RateLimitedWarning()
        self._peers: Counter[str] = Counter()
        self._peers_lock = threading.Lock()
        # addresses that have passed the AE checks: when strangers fill max_connections, these still get in
        self._trusted: dict[str, None] = {}
        self._backoff_s = 0.0
        super().__init__(*args, request_handler=_Handler, **kwargs)

    @property
    def connections(self) -> int:
        with self._peers_lock:
            return sum(self._peers.values())

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        try:
            client, address = self.socket.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # the pending connection stays queued: back off instead of spinning, then accept again
                self._backoff_s = min(max(self._backoff_s * 2, 0.05), 2.0)
                self.warn("accept", "DICOM accept failed: %s; retrying in %.2f s (raise the open-files limit, "
                          "`ulimit -n`, or lower [edge] max_connections)", errno.errorcode.get(exc.errno, "?"),
                          self._backoff_s)
                time.sleep(self._backoff_s)
            raise
        self._backoff_s = 0.0
        _disable_nagle(client)
        client.settimeout(self.limits.network_timeout_s)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        ip = client_address[0]
        with self._peers_lock:
            total = sum(self._peers.values())
            if self._peers[ip] >= self.limits.max_connections_per_peer:
                held, setting = self._peers[ip], "max_connections_per_peer"
            elif total >= self.limits.max_connections + (self.limits.max_associations if ip in self._trusted else 0):
                held, setting = total, "max_connections"
            else:
                self._peers[ip] += 1
                return True
        self.warn(setting, "DICOM connection from %s closed at accept: %d connections held, [edge] %s=%d",
                  ip, held, setting, getattr(self.limits, setting))
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except Exception:
            self.release(client_address[0])  # no thread could start: give the slot back
            raise

    def trust(self, ip: str) -> None:
        with self._peers_lock:
            self._trusted.pop(ip, None)
            self._trusted[ip] = None
            if len(self._trusted) > 4096:  # bounded: forget the least recently seen address
                del self._trusted[next(iter(self._trusted))]

    def release(self, ip: str) -> None:
        with self._peers_lock:
            self._peers[ip] -= 1
            if self._peers[ip] <= 0:
                del self._peers[ip]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("DICOM connection from %s failed before its association started", client_address[0])


def start_server(
    ae: AE,
    host: str,
    port: int,
    ingest: Callable[[Received], Outcome],
    ingest_mpps: Callable[..., Outcome] | None = None,
    *,
    limits: Limits | None = None,
    tls: ssl.SSLContext | None = None,
    spill_dir: Path | None = None,
    rejections: Rejections | None = None,
) -> EdgeAssociationServer:
    limits = limits or getattr(ae, "radpulse_limits", None) or Limits(ae_title=ae.ae_title, max_pdu=ae.maximum_pdu_size)
    configure_spill(limits, spill_dir)
    handlers = [
        (evt.EVT_C_ECHO, _on_echo),
        (evt.EVT_C_STORE, _on_store, [ingest, limits, rejections]),
        (evt.EVT_REQUESTED, _on_requested, [limits]),
    ]
    if ingest_mpps is not None:
        handlers += [
            (evt.EVT_N_CREATE, _on_mpps, ["N-CREATE", ingest_mpps]),
            (evt.EVT_N_SET, _on_mpps, ["N-SET", ingest_mpps]),
        ]
    server = ae.make_server((host, port), evt_handlers=handlers, server_class=EdgeAssociationServer,
                            limits=limits, tls=tls)
    thread = threading.Thread(target=server.serve_forever, name="dicom-accept", daemon=True)
    thread.start()
    ae._servers.append(server)
    return server
