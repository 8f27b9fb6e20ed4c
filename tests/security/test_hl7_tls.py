"""HL7 MLLP over TLS (issue 9 item 8): ``[hl7] tls_*`` settings; plaintext refused where TLS is required."""

from __future__ import annotations

import socket
import ssl

import pytest

from edge_ingest.mllp import FrameReader, MllpServer, frame
from edge_ingest.tls import server_context
from tests.security.test_hl7_listener import MESSAGE, ack_all
from tests.security.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def send(port: int, ctx: ssl.SSLContext | None) -> str:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    with sock:
        sock.sendall(frame(MESSAGE))
        reader = FrameReader()
        while chunk := sock.recv(65536):
            for item in reader.feed(chunk):
                return item.data.decode().split("\rMSA|")[1].split("|")[0]
    raise ConnectionError("closed without an answer")


def test_plaintext_refused_tls_served(pki: Pki) -> None:
    tls = server_context("hl7", str(pki.server_cert), str(pki.server_key), "", False)
    with MllpServer("127.0.0.1", 0, ack_all, tls=tls) as srv:
        with pytest.raises((ConnectionError, OSError)):
            send(srv.port, None)
        assert send(srv.port, ssl.create_default_context(cafile=str(pki.ca))) == "AA"


def test_client_certificate_required(pki: Pki) -> None:
    tls = server_context("hl7", str(pki.server_cert), str(pki.server_key), str(pki.ca), True)
    with MllpServer("127.0.0.1", 0, ack_all, tls=tls) as srv:
        for cert in (None, (pki.stranger_cert, pki.stranger_key)):
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            if cert:
                ctx.load_cert_chain(*map(str, cert))
            with pytest.raises((ConnectionError, OSError)):
                send(srv.port, ctx)
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        assert send(srv.port, ctx) == "AA"


def test_edge_node_takes_hl7_tls_settings(start_edge, pki: Pki) -> None:
    node = start_edge(hl7={"tls_cert": pki.server_cert, "tls_key": pki.server_key, "read_timeout_s": 5})
    assert node.mllp is not None
    with pytest.raises((ConnectionError, OSError)):
        send(node.mllp.port, None)
    assert send(node.mllp.port, ssl.create_default_context(cafile=str(pki.ca))) == "AA"
