"""The baseline: a pynetdicom SCP that accepts every storage class and answers success, doing nothing else.

By default it disables Nagle on every accepted socket exactly as the radpulse edge does
(``edge_ingest/scp.py::_disable_nagle``), so the comparison measures the edge's work and not a TCP setting.
``--nagle`` leaves Nagle on: what a default pynetdicom SCP gives.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading

from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer


def disable_nagle(server: ThreadedAssociationServer) -> None:
    """The edge's technique: wrap ``get_request`` so every accepted socket gets TCP_NODELAY."""
    accept = server.get_request

    def get_request() -> tuple[socket.socket, tuple[str, int]]:
        client, address = accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    server.get_request = get_request  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nagle", action="store_true", help="leave Nagle on (pynetdicom's default)")
    args = parser.parse_args()
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    ae = AE(ae_title="RADPULSE")
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = 0
    handlers = [(evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_C_ECHO, lambda event: 0x0000)]
    server = ae.start_server(("127.0.0.1", args.port), block=False, evt_handlers=handlers)
    assert server is not None
    if not args.nagle:
        disable_nagle(server)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
