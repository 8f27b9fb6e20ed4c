"""`radpulse edge` (the DICOM node) and `radpulse reveal` (accession token → accession number, at the hospital)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from schemas.config import load_settings

log = logging.getLogger("radpulse.edge")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edge", help="run the DICOM node: C-ECHO/C-STORE in, de-identified Avro events to Kafka")
    p.add_argument("--port", type=int, help="DICOM port (default: [edge] port, 11112)")
    p.add_argument("--ae-title", help="AE title (default: [edge] ae_title, RADPULSE)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: [kafka] bootstrap_servers)")
    p.set_defaults(func=run_edge)

    r = sub.add_parser("reveal", help="decrypt an accession token with this edge's key (hospital reviewers only)")
    r.add_argument("token", nargs="+", help="one or more rpa1.… tokens")
    r.set_defaults(func=run_reveal)


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    if getattr(args, "port", None) is not None:
        env["RADPULSE_EDGE__PORT"] = str(args.port)
    if getattr(args, "ae_title", None):
        env["RADPULSE_EDGE__AE_TITLE"] = args.ae_title
    if getattr(args, "bootstrap", None):
        env["RADPULSE_KAFKA__BOOTSTRAP_SERVERS"] = args.bootstrap
    return env


def run_edge(args: argparse.Namespace) -> int:
    import os

    from edge_ingest.node import EdgeNode

    settings = load_settings(args.config, env={**os.environ, **_overrides(args)})
    for line in settings.masked_lines():
        log.info("settings %s", line)
    node = EdgeNode(settings)
    node.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    log.info("stopping edge: waiting up to 10 s for Kafka to take the spool")
    node.delivery.wait_drained(10)
    node.stop()
    return 0


def run_reveal(args: argparse.Namespace) -> int:
    from edge_ingest.keys import KeyFileError, load_keys
    from edge_ingest.pseudonyms import TokenError, decrypt_accession

    settings = load_settings(args.config)
    try:
        keys = load_keys(settings.edge.data_dir, create=False)  # reveal never creates a key
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for token in args.token:
        try:
            print(f"{token}\t{decrypt_accession(keys, token)}")
        except TokenError as exc:
            print(f"{token}\terror: {exc}", file=sys.stderr)
            status = 1
    return status
