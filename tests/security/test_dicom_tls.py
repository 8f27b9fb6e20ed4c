"""DICOM over TLS (issue 9 item 8): with ``[edge] tls_cert``/``tls_key`` a plaintext association is refused and a
TLS one works; with ``tls_require_client_cert`` only clients with a certificate from ``tls_ca`` get in."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from edge_ingest.tls import TlsConfigError, server_context
from tests.helpers import make_image
from tests.security.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def associate(port: int, tls: ssl.SSLContext | None = None):
    ae = AE(ae_title="CT1")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="RADPULSE",
                        tls_args=(tls, "localhost") if tls is not None else None)


def test_plaintext_refused_tls_served(start_edge, pki: Pki) -> None:
    node = start_edge(edge={"tls_cert": pki.server_cert, "tls_key": pki.server_key})
    plain = associate(node.port)
    assert not plain.is_established
    assoc = associate(node.port, client_context(pki))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assert assoc.send_c_store(make_image()).Status == 0x0000
    assoc.release()
    # a failed handshake frees its slot
    assert node._server.connections <= 1


def test_client_certificate_required(start_edge, pki: Pki) -> None:
    node = start_edge(edge={"tls_cert": pki.server_cert, "tls_key": pki.server_key, "tls_ca": pki.ca,
                            "tls_require_client_cert": True})
    assert not associate(node.port, client_context(pki)).is_established
    assert not associate(node.port, client_context(pki, pki.stranger_cert, pki.stranger_key)).is_established
    assoc = associate(node.port, client_context(pki, pki.client_cert, pki.client_key))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_tls_settings_errors_name_the_setting(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match=r"\[edge\] tls_cert and tls_key"):
        server_context("edge", str(pki.server_cert), "", "", False)
    with pytest.raises(TlsConfigError, match=r"\[hl7\] tls_require_client_cert = true needs tls_ca"):
        server_context("hl7", str(pki.server_cert), str(pki.server_key), "", True)
    with pytest.raises(TlsConfigError, match=r"\[edge\] tls_key=.*no such file"):
        server_context("edge", str(pki.server_cert), str(tmp_path / "missing.key"), "", False)
    with pytest.raises(TlsConfigError, match="belong together"):
        server_context("edge", str(pki.server_cert), str(pki.client_key), "", False)


def test_silent_client_cannot_stall_the_tls_listener(start_edge, pki: Pki) -> None:
    """A client that never sends its ClientHello holds only its own connection, and only for acse_timeout_s."""
    from tests.security.test_dicom_access import connect, seconds_until_closed

    node = start_edge(edge={"tls_cert": pki.server_cert, "tls_key": pki.server_key, "acse_timeout_s": 1})
    silent = [connect(node.port, "127.0.0.2") for _ in range(5)]
    assoc = associate(node.port, client_context(pki))  # served while the silent ones wait for their handshakes
    assert assoc.is_established
    assoc.release()
    assert all(seconds_until_closed(sock, within_s=10) < 10 for sock in silent)
    for sock in silent:
        sock.close()
