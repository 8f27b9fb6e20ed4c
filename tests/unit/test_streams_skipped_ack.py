"""A message Faust's stream skips during a rebalance is not acknowledged, so no offset commit passes it unprocessed.

Faust's stream skips a message it pulls while flow control is suspended (a rebalance began) or that was fetched in
an earlier consumer generation, and then acknowledges it. With two workers and a SIGKILL on Apache Kafka the
instance right after the one being published when the survivor's rebalance began was committed unprocessed
(130 of 132 counted). Real Faust objects (app, consumer, messages), no broker needed: nothing is fetched.
"""

from __future__ import annotations

import os
from pathlib import Path

from faust.transport.consumer import ConsumerMessage

from schemas.config import load_settings
from streams.app import create_app


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(None, env={"RADPULSE_CONFIG": os.devnull, "RADPULSE_KAFKA__TOPIC_PREFIX": "ack",
                                        "RADPULSE_STREAMS__DATA_DIR": str(tmp_path)})
    sa = create_app(settings, datadir=str(tmp_path))
    topic = sa.instances.get_topic_name()
    sa.app.topics.acking_topics.add(topic)  # as the conductor does once the agents subscribe
    return sa.app, topic


def _message(topic: str, offset: int, generation: int) -> ConsumerMessage:
    return ConsumerMessage(topic, 0, offset, 0.0, 0, [], b"study", b"instance", None, generation_id=generation)


def test_a_processed_message_is_acknowledged(tmp_path: Path) -> None:
    app, topic = _app(tmp_path)
    app.consumer_generation_id = 3
    app.flow_control.resume()
    assert _message(topic, 5, 3).ack(app.consumer)
    assert [offsets for offsets in app.consumer._acked.values()] == [[5]]


def test_a_message_from_an_earlier_generation_is_not_acknowledged(tmp_path: Path) -> None:
    app, topic = _app(tmp_path)
    app.consumer_generation_id = 3
    app.flow_control.resume()
    assert not _message(topic, 6, 2).ack(app.consumer)
    assert not any(app.consumer._acked.values())


def test_a_message_pulled_while_a_rebalance_is_under_way_is_not_acknowledged(tmp_path: Path) -> None:
    app, topic = _app(tmp_path)
    app.consumer_generation_id = 3
    app.flow_control.suspend()
    assert not _message(topic, 7, 3).ack(app.consumer)
    assert not any(app.consumer._acked.values())
    app.flow_control.resume()  # the same offset, read again after the rebalance's seek, is acknowledged
    assert _message(topic, 7, 3).ack(app.consumer)
    assert [offsets for offsets in app.consumer._acked.values()] == [[7]]


def test_no_commit_passes_an_offset_that_was_never_acknowledged(tmp_path: Path) -> None:
    # Faust alone answers 10 here: its check lets a commit pass one unacknowledged offset at the committed position
    app, topic = _app(tmp_path)
    app.consumer_generation_id = 1
    app.flow_control.resume()
    consumer = app.consumer
    tp = _message(topic, 7, 1).tp
    consumer._committed_offset[tp] = 7  # the next offset to read, after a commit up to 6
    for offset in (8, 9):
        assert _message(topic, offset, 1).ack(consumer)
    assert consumer._new_offset(tp) is None
    assert _message(topic, 7, 1).ack(consumer)
    assert consumer._new_offset(tp) == 10
