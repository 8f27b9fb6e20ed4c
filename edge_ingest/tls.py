"""TLS server contexts for the DICOM and MLLP listeners, built from ``tls_*`` settings. Errors name the setting."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


class TlsConfigError(ValueError):
    """A ``tls_*`` setting is inconsistent or names a file that cannot be used."""


def server_context(section: str, cert: str, key: str, ca: str, require_client_cert: bool) -> ssl.SSLContext | None:
    """``None`` when TLS is off (no certificate); else a TLS ≥ 1.2 server context, client certificates checked
    against ``ca`` when ``require_client_cert``."""
    if not cert and not key:
        if require_client_cert or ca:
            raise TlsConfigError(f"[{section}] tls_ca/tls_require_client_cert need tls_cert and tls_key; set both")
        return None
    if not (cert and key):
        raise TlsConfigError(f"[{section}] tls_cert and tls_key must be set together (PEM files)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, path in (("tls_cert", cert), ("tls_key", key), ("tls_ca", ca)):
        if path and not Path(path).is_file():
            raise TlsConfigError(f"[{section}] {name}={path!r}: no such file; give the path of a PEM file")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"[{section}] tls_cert/tls_key: cannot load the certificate and key ({exc.__class__.__name__}: "
            f"{getattr(exc, 'reason', None) or exc}); check they are PEM and belong together"
        ) from None
    if require_client_cert:
        if not ca:
            raise TlsConfigError(f"[{section}] tls_require_client_cert = true needs tls_ca (the CA of the clients)")
        ctx.verify_mode = ssl.CERT_REQUIRED
    if ca:
        try:
            ctx.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(f"[{section}] tls_ca={ca!r}: cannot load ({exc.__class__.__name__})") from None
        if not require_client_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def handshake(ctx: ssl.SSLContext, sock: socket.socket, timeout_s: float) -> ssl.SSLSocket:
    """Server-side TLS handshake with a time limit, run on the connection's own thread (never the accept loop, where
    a silent client would block every other one). Raises ``OSError`` (``ssl.SSLError`` included) on failure."""
    sock.settimeout(timeout_s)
    tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    tls.do_handshake()
    return tls
