"""The edge's pynetdicom threading (``edge_ingest/scp.py``): a C-STORE is served on the DUL thread that decoded
it, and an abort raised there (a request on a presentation context that was never accepted) ends the association
at once instead of waiting for that same thread to stop. Real associations over loopback, in this process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from io import BytesIO

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage

from edge_ingest.ingest import Outcome, Received, Status
from edge_ingest.scp import EdgeAssociationServer, make_ae, start_server
from tests.helpers import encode_dataset, make_image


@pytest.fixture()
def edge() -> Iterator[tuple[int, list[str], EdgeAssociationServer]]:
    served_on: list[str] = []

    def ingest(rx: Received) -> Outcome:
        served_on.append(threading.current_thread().name)
        return Outcome(Status.SUCCESS)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(make_ae("RADPULSE", []), "127.0.0.1", port, ingest)
    yield port, served_on, server
    server.shutdown()


def dul_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "run_reactor" in t.name]


def sender() -> AE:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 20
    return ae


def test_stores_are_served_on_the_thread_that_read_them(edge: tuple[int, list[str], EdgeAssociationServer]) -> None:
    port, served_on, _server = edge
    assoc = sender().associate("127.0.0.1", port, ae_title="RADPULSE")
    assert assoc.is_established
    statuses = [assoc.send_c_store(make_image()).Status for _ in range(3)]
    assoc.release()
    assert statuses == [0x0000] * 3
    # pynetdicom names its DUL thread after run_reactor and the association thread "AcceptorThread@…"
    assert len(served_on) == 3 and all("run_reactor" in name for name in served_on), served_on


def test_an_abort_on_the_dul_thread_ends_the_association(edge: tuple[int, list[str], EdgeAssociationServer]) -> None:
    port, served_on, server = edge
    ae = sender()
    assoc = ae.associate("127.0.0.1", port, ae_title="RADPULSE")
    assert assoc.is_established
    request = C_STORE()
    request.MessageID = 5
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = "1.2.3.4"
    request.Priority = 2
    request.DataSet = BytesIO(encode_dataset(make_image()))
    assoc.dimse.send_msg(request, 99)  # context 99 was never accepted: pynetdicom aborts the association
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted and not served_on
    # the edge's side ended too: its slot is free and no DUL thread is left waiting for itself to stop
    while (server.connections or dul_threads()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.connections == 0 and not dul_threads()
    again = ae.associate("127.0.0.1", port, ae_title="RADPULSE")
    assert again.send_c_store(make_image()).Status == 0x0000
    again.release()
