"""The streams worker's stall watchdog: suspended flow outside a recovery for long enough stops the worker (its
supervisor restarts it); a rebalance's recovery, or flow that resumes, does not."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from streams.worker import arm_stall_watchdog, stalled


def fake_app(active: bool, recovering: bool, paused: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: active),
                           tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=recovering)),
                           _consumer=SimpleNamespace(_paused_partitions=[SimpleNamespace(topic=t) for t in paused]))


def test_only_suspended_flow_outside_a_recovery_is_a_stall() -> None:
    assert stalled(fake_app(active=False, recovering=False))
    assert not stalled(fake_app(active=False, recovering=True))
    assert not stalled(fake_app(active=True, recovering=False))
    assert not stalled(object())  # not a Faust app yet
    assert stalled(fake_app(active=True, recovering=False, paused=("radpulse.instances",)))
    assert not stalled(fake_app(active=True, recovering=False, paused=("app-exams-changelog",)))


def test_the_watchdog_fires_after_the_limit_and_not_while_flow_runs() -> None:
    fired = threading.Event()
    arm_stall_watchdog(fake_app(active=False, recovering=False), 0.2, fired.set, interval_s=0.02)
    assert fired.wait(5)

    calm = threading.Event()
    app = fake_app(active=False, recovering=True)
    arm_stall_watchdog(app, 0.2, calm.set, interval_s=0.02)
    assert not calm.wait(0.6)
    app.tables.recovery.in_recovery = False  # the recovery ended without resuming the flow
    assert calm.wait(5)
