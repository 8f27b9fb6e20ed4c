"""`radpulse streams`: run a Faust worker (consumer group `<prefix>-streams`) assembling exams."""

from __future__ import annotations

import argparse
import logging
import os

from schemas.config import load_settings

log = logging.getLogger("radpulse.streams")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("streams", help="run a Faust worker: instances → exams (radpulse.exams)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: [kafka] bootstrap_servers)")
    p.add_argument("--web-port", type=int, help="Faust web port (default: [streams] web_port; 0 disables)")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.app import create_app
    from streams.exams_agent import ExamAgents
    from streams.kpi_agent import KpiAgents
    from streams.worker import broker_misreports_ends, run_worker

    level = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
             "debug": logging.DEBUG}[args.loglevel]
    for name in ("faust", "mode"):  # `--loglevel info` shows Faust's rebalances and recoveries (quiet by default)
        logging.getLogger(name).setLevel(level)
    env = dict(os.environ)
    if args.bootstrap:
        env["RADPULSE_KAFKA__BOOTSTRAP_SERVERS"] = args.bootstrap
    settings = load_settings(args.config, env=env)
    web_port = settings.streams.web_port if args.web_port is None else args.web_port
    from streams import app as topics_of
    from streams.topics import ensure_topics

    ensure_topics(settings, [
        topics_of.TOPIC_INSTANCES, topics_of.TOPIC_EXAMS, topics_of.TOPIC_TICKS, topics_of.TOPIC_WORKFLOW,
        topics_of.TOPIC_EXAM_DOSE, topics_of.TOPIC_DOSE_ALERTS, topics_of.TOPIC_DRL_VALUES,
        topics_of.TOPIC_DEVICE_KPIS, topics_of.TOPIC_EXAM_TIMING,
    ])
    tansu = broker_misreports_ends(settings)
    if tansu:
        log.info("embedded tansu broker: one record per produced batch, so that changelog recovery sees every record")
    sa = create_app(settings, web_port=web_port or None, single_record_batches=tansu)
    ExamAgents(sa)
    KpiAgents(sa)
    log.info(
        "streams worker (group %s) reading %s from %s", sa.app.conf.id, sa.instances.get_topic_name(),
        settings.kafka.bootstrap_servers,
    )
    return run_worker(sa, loglevel=args.loglevel)
