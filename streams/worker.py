"""Run the streams worker: topics created up front, a bounded stop, and an agent crash that ends the process.

Three ways a Faust worker used to sit in a state nobody could see or end:

* Faust creates changelog and internal topics itself, concurrently with the first messages; on Apache Kafka an
  agent could see a changelog topic "with 0 partitions" and crash (``PartitionsMismatch``). Every topic, changelogs
  included, is now created (and visible in metadata) before the worker starts.
* An agent that crashed left the worker running but processing nothing. Agents are supervised by a crashing
  supervisor: the process exits non-zero and its supervisor (``radpulse up``, systemd, …) restarts it.
* A stop could wait on a service's 60 s shutdown timeout (rebalancing, recovering, committing to a broker that is
  going away). After ``[streams] stop_timeout_s`` the process exits hard: what it had not committed is replayed by
  the next worker, exactly as after a SIGKILL, which the exam fold absorbs (it is idempotent per instance).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust

from schemas.config import Settings
from streams.app import StreamsApp

log = logging.getLogger("radpulse.streams")

# Table changelogs are compacted; Kafka's log cleaner never touches a partition's active segment, which by default
# rolls only after 7 days (or 1 GB), so a restarted worker re-read up to a week of every instance's exam rewrite.
# Daily segments keep what recovery reads near the retention's live records plus a day (benchmarks/recovery.py).
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "segment.ms": str(24 * 3600 * 1000)}


def internal_topics(app: faust.App) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, config) of every topic Faust would create itself: table changelogs, the assignor's."""
    out: list[tuple[str, int, dict[str, str]]] = []
    for table in app.tables.values():
        topic = table.changelog_topic
        out.append((topic.get_topic_name(), topic.partitions or app.conf.topic_partitions,
                    dict(CHANGELOG_CONFIG)))
    for agent in app.agents.values():  # internal=True topics of agents (Faust would create them late)
        topic = agent.channel
        if getattr(topic, "internal", False):
            out.append((topic.get_topic_name(), topic.partitions or app.conf.topic_partitions, {}))
    out.append((f"{app.conf.id}-__assignor-__leader", 1, {}))
    return out


def create_internal_topics(settings: Settings, topics: Iterable[tuple[str, int, dict[str, str]]],
                           timeout_s: float = 30.0) -> None:
    """Create the topics and wait until metadata lists them with every partition."""
    from streams.topics import create_topics

    create_topics(settings, topics, timeout_s)


EXIT_AFTER_CRASH = 70  # EX_SOFTWARE: a supervisor restarts the worker


class _Exit:
    code = 0


def fail_fast(fun: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """An agent that raises stops the worker (non-zero exit) instead of leaving it alive and processing nothing."""

    @functools.wraps(fun)
    async def agent(stream: Any) -> None:
        try:
            await fun(stream)
        except Exception as exc:
            log.error("streams agent %s crashed (%s: %s); stopping the worker so that its supervisor restarts it",
                      fun.__name__, type(exc).__name__, exc)
            _Exit.code = EXIT_AFTER_CRASH
            os.kill(os.getpid(), signal.SIGTERM)
            raise

    return agent


def broker_misreports_ends(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Is the broker tansu (the embedded default)? Its high watermark is wrong after multi-record batches."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.client_config())  # kept alive until the answer is in: else _DESTROY
    cluster_id = admin.describe_cluster(request_timeout=timeout_s).result(timeout_s).cluster_id
    return str(cluster_id or "").startswith("tansu")


def arm_stop_watchdog(timeout_s: float, state: object) -> threading.Timer:
    """Exit the process hard if a requested stop has not finished within `timeout_s`."""

    def _expire() -> None:
        log.warning("streams worker did not stop within %.0f s (state: %s); exiting without a clean stop — the "
                    "next worker resumes from the last committed offsets ([streams] stop_timeout_s)",
                    timeout_s, state)
        for h in logging.getLogger().handlers:
            h.flush()
        sys.stderr.flush()
        os._exit(_Exit.code)

    timer = threading.Timer(timeout_s, _expire)
    timer.daemon = True
    timer.start()
    return timer


def stalled(app: Any) -> bool:
    """Is the worker's stream flow suspended outside a table recovery? Faust suspends it for a rebalance and resumes
    it when the recovery that follows ends; when a second rebalance overtakes that recovery Faust returns without
    resuming ("Recovery rebalancing again") and a worker was seen never to consume a partition again. A source
    partition left paused counts too (changelog partitions stay paused by design), and so does a worker that never
    joins its group (the flow starts suspended)."""
    try:
        if app.tables.recovery.in_recovery:
            return False
        consumer = getattr(app, "_consumer", None)  # not app.consumer: that property would create one
        paused = [tp for tp in list(getattr(consumer, "_paused_partitions", ())) if not tp.topic.endswith("-changelog")]
        return not app.flow_control.is_active() or bool(paused)
    except (AttributeError, RuntimeError):  # not a Faust app yet; a set changed while this thread read it
        return False


def arm_stall_watchdog(app: Any, limit_s: float, on_stall: Callable[[], None], interval_s: float = 5.0,
                       clock: Callable[[], float] = time.monotonic) -> threading.Thread:
    """Call `on_stall` once the worker has been ``stalled`` for `limit_s` in a row (checked every `interval_s`
    from a thread, so a blocked event loop cannot hide it)."""

    def watch() -> None:
        since: float | None = None
        while True:
            time.sleep(interval_s)
            if not stalled(app):
                since = None
                continue
            since = clock() if since is None else since
            if clock() - since >= limit_s:
                on_stall()
                return

    thread = threading.Thread(target=watch, name="stall-watchdog", daemon=True)
    thread.start()
    return thread


def _restart_after_stall(limit_s: float) -> Callable[[], None]:
    def stop() -> None:
        log.error("streams worker stalled: no stream flow and no recovery for %.0f s; stopping so that its "
                  "supervisor restarts it (the next worker rejoins and replays from the last committed offsets; "
                  "[streams] stall_restart_s)", limit_s)
        _Exit.code = EXIT_AFTER_CRASH
        os.kill(os.getpid(), signal.SIGTERM)

    return stop


class StreamsWorker(faust.Worker):
    """A Faust worker whose stop is bounded (a watchdog armed by the stop request)."""

    def __init__(self, app: faust.App, *, stop_timeout_s: float, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.stop_timeout_s = stop_timeout_s
        self._watchdog: threading.Timer | None = None

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = arm_stop_watchdog(self.stop_timeout_s, self._state_name())

    def _state_name(self) -> str:
        app = self.app
        try:
            if app.rebalancing:
                return "rebalancing"
            if app.tables.recovery.in_recovery:
                return "recovering"
        except AttributeError:
            pass
        return "running"

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self._arm()
        super()._schedule_shutdown(signal)

    def stop_and_shutdown(self) -> None:
        self._arm()
        super().stop_and_shutdown()


def run_worker(sa: StreamsApp, *, loglevel: str) -> int:
    """Create every topic, then run the worker until it is stopped; returns the exit code."""
    create_internal_topics(sa.settings, internal_topics(sa.app))
    worker = StreamsWorker(sa.app, stop_timeout_s=sa.settings.streams.stop_timeout_s, loglevel=loglevel,
                           quiet=True, redirect_stdouts=False)
    limit = sa.settings.streams.stall_restart_s
    arm_stall_watchdog(sa.app, limit, _restart_after_stall(limit))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return _Exit.code or (exc.code if isinstance(exc.code, int) else 1)
    return _Exit.code
