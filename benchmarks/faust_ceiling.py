"""Faust's own ceiling on this machine: one agent, one table update per event, nothing else.

Run as a worker by ``benchmarks.streams`` (``python -m benchmarks.faust_ceiling <bootstrap> <topic> <app id>``) on
the same events and broker as the radpulse streams worker, so the two rates compare like for like.
"""

from __future__ import annotations

import sys

import faust


def build(bootstrap: str, topic_name: str, app_id: str, partitions: int) -> faust.App:
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", value_serializer="raw",
                    key_serializer="raw", topic_partitions=partitions, consumer_auto_offset_reset="earliest",
                    broker_commit_every=500, broker_commit_interval=1.0, web_enabled=False, topic_replication_factor=1)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
    counts = app.Table("counts", default=int, partitions=partitions,
                       schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"))

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for key, _value in stream.items():
            counts[key.decode()] += 1

    return app


if __name__ == "__main__":
    bootstrap, topic, app_id, partitions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    app = build(bootstrap, topic, app_id, partitions)
    faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()
