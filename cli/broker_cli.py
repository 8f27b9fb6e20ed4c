"""`radpulse broker`: the embedded Kafka-protocol broker (tansu, memory-only; an orderly stop saves its state to
`[broker] snapshot_file` and the next start restores it — stop the edge, streams and sink first)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from cli.broker import EmbeddedBroker
from cli.supervisor import restore_snapshot, save_snapshot
from schemas.config import load_settings

log = logging.getLogger("radpulse.broker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (tansu; memory-only) on 127.0.0.1")
    p.add_argument("--port", type=int, help="listen port (default: [broker] port, 9092)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    broker = EmbeddedBroker(port=args.port or settings.broker.port, binary=settings.broker.binary).start()
    try:
        restore_snapshot(settings, broker)
    except Exception:
        broker.stop()
        raise
    log.info("embedded broker (tansu, memory-only; state saved to [broker] snapshot_file at an orderly stop) ready "
             "on %s", broker.bootstrap)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            if broker.process is not None and broker.process.poll() is not None:
                log.error("tansu exited with code %s", broker.process.returncode)
                return 1
    except KeyboardInterrupt:
        pass
    save_snapshot(settings, broker)
    broker.stop()
    return 0
