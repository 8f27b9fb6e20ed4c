"""streams.holes: which offsets count as a hole, when the repair acts, and what it seeks (no broker: a fake consumer
with Faust's bookkeeping fields; the real worker and broker are in tests/integration/test_holes.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from streams.holes import ATTEMPTS, HoleRepair, first_unprocessed


@pytest.mark.parametrize(("acked", "committed", "start", "hole"), [
    ([], 7, 0, None),  # nothing processed since the commit
    ([7, 8, 9], 7, 0, None),
    ([8, 9], 7, 0, 7),  # Faust alone commits 10 here
    ([1, 2], None, 0, 0),  # nothing committed yet: reading began at the log start
    ([5, 6], None, 5, None),  # retention deleted 0-4
    ([6], 2, 5, 5),  # committed before the log start: the hole is the log start
])
def test_first_unprocessed(acked: list[int], committed: int | None, start: int, hole: int | None) -> None:
    assert first_unprocessed(acked, committed, start) == hole


@dataclass
class FakeConsumer:
    tps: list[str]
    acked: dict[str, list[int]]
    committed: dict[str, int | None]
    starts: dict[str, int] = field(default_factory=dict)
    flow_active: bool = True
    seeks: list[tuple[str, int]] = field(default_factory=list)
    flow: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._acked = defaultdict(list, self.acked)
        self._acked_index = defaultdict(set, {tp: set(v) for tp, v in self.acked.items()})
        self._committed_offset = defaultdict(lambda: None, self.committed)

    def assignment(self) -> set[str]:
        return set(self.tps) | {"exams-changelog-0"}

    def _is_changelog_tp(self, tp: str) -> bool:
        return tp.endswith("changelog-0")

    async def earliest_offsets(self, *tps: str) -> dict[str, int]:
        return {tp: self.starts.get(tp, 0) for tp in tps}

    def stop_flow(self) -> None:
        self.flow.append("stop")
        self.flow_active = False

    def resume_flow(self) -> None:
        self.flow.append("resume")
        self.flow_active = True

    async def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))


class FakeApp:
    def __init__(self, consumer: FakeConsumer) -> None:
        self._consumer = consumer
        self.rebalancing = False
        self.consumer_generation_id = 4
        self.tables = type("T", (), {"recovery": type("R", (), {"in_recovery": False})()})()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _repair(consumer: FakeConsumer) -> tuple[HoleRepair, Clock, FakeApp]:
    clock = Clock()
    app = FakeApp(consumer)
    return HoleRepair(app, grace_s=5.0, settle_s=0.0, clock=clock), clock, app


def test_a_hole_is_read_again_after_the_grace_period_from_every_partitions_first_unprocessed_offset() -> None:
    consumer = FakeConsumer(["in-0", "in-1"], {"in-0": [8, 9], "in-1": [3]}, {"in-0": 7, "in-1": 3})
    repair, clock, _ = _repair(consumer)
    asyncio.run(repair.run())
    assert consumer.seeks == []  # just seen: it may still be on its way to the stream
    assert repair.commit_blocked(consumer, "in-0") and not repair.commit_blocked(consumer, "in-1")
    clock.t += 5.0
    asyncio.run(repair.run())
    # the partition without a hole goes back to its commit too: a delivery the stopped flow cut short is read again
    assert sorted(consumer.seeks) == [("in-0", 7), ("in-1", 3)]
    assert consumer.flow == ["stop", "resume"] and repair.repairs == 1


def test_a_hole_that_moves_on_restarts_the_grace_period() -> None:
    consumer = FakeConsumer(["in-0"], {"in-0": [8]}, {"in-0": 7})
    repair, clock, _ = _repair(consumer)
    asyncio.run(repair.run())
    clock.t += 3.0
    consumer._acked["in-0"] = [12]
    consumer._committed_offset["in-0"] = 10  # the commit went on (7 arrived), and a new hole opened at 10
    asyncio.run(repair.run())
    clock.t += 3.0
    asyncio.run(repair.run())
    assert consumer.seeks == []
    clock.t += 2.0
    asyncio.run(repair.run())
    assert consumer.seeks == [("in-0", 10)]


def test_nothing_is_touched_while_a_rebalance_or_recovery_owns_the_flow() -> None:
    consumer = FakeConsumer(["in-0"], {"in-0": [8]}, {"in-0": 7})
    repair, clock, app = _repair(consumer)
    asyncio.run(repair.run())
    clock.t += 10
    app.rebalancing = True
    asyncio.run(repair.run())
    app.rebalancing = False
    app.tables.recovery.in_recovery = True
    asyncio.run(repair.run())
    app.tables.recovery.in_recovery = False
    consumer.flow_active = False
    asyncio.run(repair.run())
    assert consumer.seeks == [] and consumer.flow == []


def test_a_rebalance_during_the_repair_keeps_the_flow_stopped_for_its_own_seek() -> None:
    consumer = FakeConsumer(["in-0"], {"in-0": [8]}, {"in-0": 7})
    repair, clock, app = _repair(consumer)
    asyncio.run(repair.run())
    clock.t += 5
    real_stop = consumer.stop_flow

    def stop_then_rebalance() -> None:
        real_stop()
        app.consumer_generation_id += 1  # the group rebalanced while the fetch settled

    consumer.stop_flow = stop_then_rebalance  # type: ignore[method-assign]
    asyncio.run(repair.run())
    assert consumer.seeks == [] and consumer.flow == ["stop"]


def test_a_commit_before_the_log_start_moves_to_it_without_a_seek() -> None:
    consumer = FakeConsumer(["in-0"], {"in-0": [500, 501]}, {"in-0": 100}, starts={"in-0": 500})
    repair, clock, _ = _repair(consumer)
    asyncio.run(repair.run())
    clock.t += 5
    asyncio.run(repair.run())
    assert consumer.seeks == [] and consumer._committed_offset["in-0"] == 500
    assert not repair.commit_blocked(consumer, "in-0")


def test_an_offset_that_never_arrives_counts_as_processed_after_the_attempts() -> None:
    consumer = FakeConsumer(["in-0"], {"in-0": [9, 10]}, {"in-0": 7})  # 7 and 8 compacted away
    repair, clock, _ = _repair(consumer)
    asyncio.run(repair.run())
    for _ in range(ATTEMPTS):
        clock.t += 5
        asyncio.run(repair.run())
    assert consumer.seeks == [("in-0", 7)] * ATTEMPTS
    clock.t += 5
    asyncio.run(repair.run())
    assert consumer._acked["in-0"] == [7, 8, 9, 10] and not repair.commit_blocked(consumer, "in-0")
