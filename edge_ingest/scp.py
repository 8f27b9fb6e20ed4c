"""The pynetdicom application entity: contexts, calling-AE allow-list, and handlers. The only pynetdicom import.

Handlers translate; they don't decide: a C-STORE hands the received bytes (``request.DataSet``, still encoded in
the negotiated transfer syntax) to ``Ingestor.ingest`` and turns its outcome into a status. pynetdicom's own
logging is turned down on purpose: its standard handlers log UIDs and identifiers, which are PHI here.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep, Verification
from pynetdicom.transport import ThreadedAssociationServer

from edge_ingest.ingest import Outcome, Received, Status

log = logging.getLogger("radpulse.edge")

# Accept every storage SOP class, public or private, in whatever transfer syntax the sender proposes.
_config.UNRESTRICTED_STORAGE_SERVICE = True
# Standard event logging prints identifiers (UIDs, AE details, query keys): never at any level we run.
_config.LOG_HANDLER_LEVEL = "none"
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def make_ae(ae_title: str, allowed_calling_aes: list[str], max_pdu: int = 0) -> AE:
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    ae.maximum_associations = 32
    ae.maximum_pdu_size = max_pdu
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    if allowed_calling_aes:
        ae.require_calling_aet = list(allowed_calling_aes)
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


def _on_store(event: Any, ingest: Callable[[Received], Outcome]) -> Dataset | int:
    request = event.request
    sop_class = str(request.AffectedSOPClassUID or "")
    calling = event.assoc.requestor.ae_title
    rx = Received(
        data=request.DataSet,
        transfer_syntax_uid=str(event.context.transfer_syntax),
        sop_class_uid=sop_class,
        calling_ae=calling,
        received_at=datetime.now(UTC),
    )
    try:
        outcome = ingest(rx)
    except Exception as exc:
        log.error("C-STORE sop_class=%s from %s: internal %s; answered 0xC002", sop_class, calling, type(exc).__name__)
        return 0xC002
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


def _on_rejected(event: Any) -> None:
    log.warning("association from %s rejected", event.assoc.requestor.ae_title)


def start_server(
    ae: AE,
    host: str,
    port: int,
    ingest: Callable[[Received], Outcome],
    ingest_mpps: Callable[..., Outcome] | None = None,
) -> ThreadedAssociationServer:
    handlers = [
        (evt.EVT_C_ECHO, _on_echo),
        (evt.EVT_C_STORE, _on_store, [ingest]),
        (evt.EVT_REJECTED, _on_rejected),
    ]
    if ingest_mpps is not None:
        handlers += [
            (evt.EVT_N_CREATE, _on_mpps, ["N-CREATE", ingest_mpps]),
            (evt.EVT_N_SET, _on_mpps, ["N-SET", ingest_mpps]),
        ]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    assert server is not None
    _disable_nagle(server)
    return server


def _disable_nagle(server: ThreadedAssociationServer) -> None:
    """Answer each C-STORE at once: with Nagle on, a small response waits for the peer's delayed ACK (~40 ms),
    which caps a sender of small objects at ~25 instances/s."""
    accept = server.get_request

    def get_request() -> tuple[socket.socket, tuple[str, int]]:
        client, address = accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    server.get_request = get_request  # type: ignore[method-assign]
