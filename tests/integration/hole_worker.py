"""A streams worker that reads one record past without delivering it, as Faust does in a rebalance.

Run by ``test_holes.py``: ``python -m tests.integration.hole_worker <out file> <partition> <offset>``; settings
come from the environment. Every processed record's (partition, offset) is appended to the out file.
"""

from __future__ import annotations

import json
import os
import sys

import faust

from schemas.config import load_settings
from streams.app import create_app
from streams.worker import create_internal_topics, internal_topics


def main(out_path: str, partition: int, offset: int) -> None:
    settings = load_settings(None, env=dict(os.environ))
    sa = create_app(settings)
    app = sa.app
    out = open(out_path, "a")

    @app.agent(sa.instances, name="record-offsets")
    async def record(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            out.write(json.dumps([event.message.partition, event.message.offset]) + "\n")
            out.flush()

    consumer = app.consumer
    deliver = consumer.callback
    dropped: list[int] = []

    async def drop_once(message):  # type: ignore[no-untyped-def]
        if (message.partition, message.offset) == (partition, offset) and not dropped:
            dropped.append(offset)  # fetched and read past, never delivered to the stream
            return
        await deliver(message)

    consumer.callback = drop_once  # the fetch loop reads it when it starts
    create_internal_topics(settings, internal_topics(app))
    faust.Worker(app, loglevel="info", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
