"""The exam agents under a chosen interleaving: a close waiting on its publication while an instance is folded.

The agents' code runs as is; only their edges are held in the test's hands: tables are dicts (a Faust table is a
mapping whose writes also go to a changelog) and topics record what is sent, with a gate that holds a send the way
a slow broker does. That makes the interleaving that lost counts on main (assemble and close each read an exam,
await a publication, then wrote back, overwriting the other's fold) reproducible on every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from schemas import codec
from schemas.config import load_settings
from schemas.events import AccumulatedDose, DoseReport, Exam, InstanceEvent
from streams.app import create_app
from streams.exams import ExamState
from streams.exams_agent import ExamAgents
from streams.examstore import ExamStore

T0 = datetime(2024, 3, 1, 1, 0, tzinfo=UTC)


class Topic:
    """Records sends; `hold()` makes the next sends wait until `release()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[bytes, bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        self.sent.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # delivered
        return done

    def get_topic_name(self) -> str:
        return self.name


class Stream:
    """An agent's input: items put by the test, in order; None ends it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, bytes] | None] = asyncio.Queue()

    async def items(self) -> AsyncIterator[tuple[bytes, bytes]]:
        while (item := await self.queue.get()) is not None:
            yield item

    async def take_events(self, max_: int, within: float) -> AsyncIterator[list[SimpleNamespace]]:
        """Faust's batches: what is queued (up to `max_`), as events of partition 0."""
        while (item := await self.queue.get()) is not None:
            batch = [item]
            while len(batch) < max_ and not self.queue.empty() and (nxt := self.queue.get_nowait()) is not None:
                batch.append(nxt)
            yield [SimpleNamespace(key=k, value=v, message=SimpleNamespace(partition=0, generation_id=0))
                   for k, v in batch]


def instance(n: int, *, modality: str = "CT", dose_report: DoseReport | None = None) -> InstanceEvent:
    sr = modality == "SR"
    return InstanceEvent(
        event_id=f"e{n}", site_id="site", edge_id="edge", received_at=T0 + timedelta(minutes=n, seconds=30),
        calling_ae="CT1", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67" if sr else "1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", instance_pseudonym=f"i{n}", study_pseudonym="study",
        series_pseudonym="s9" if sr else "s1", modality=modality, device_id="dev",
        image_type=() if sr else ("ORIGINAL", "PRIMARY"), acquisition_datetime_utc=T0 + timedelta(minutes=n),
        dose_report=dose_report,
    )


def ct_dose_report() -> DoseReport:
    return DoseReport(kind="CT", completion_flag="COMPLETE", totals=AccumulatedDose(ct_dlp_total_mgy_cm=412.5))


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        settings = load_settings(None, env={"RADPULSE_CONFIG": "/dev/null",
                                            "RADPULSE_KAFKA__TOPIC_PREFIX": "race",
                                            "RADPULSE_STREAMS__DATA_DIR": str(tmp_path)})
        sa = create_app(settings, datadir=str(tmp_path))
        self.topics = {name: Topic(name) for name in ("exams", "ticks", *sa.out)}
        self.sa = dataclasses.replace(
            sa, exam_table={}, exams=self.topics["exams"], ticks=self.topics["ticks"],
            out={name: self.topics[name] for name in sa.out},
        )
        self.agents = ExamAgents(self.sa)
        sa.app.flow_control.resume()  # as after the worker's first rebalance
        self.instances, self.ticks = Stream(), Stream()

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    def state(self) -> ExamState:
        state = self.agents.store.exam("study")
        assert state is not None
        return state

    def published(self) -> list[Exam]:
        return [codec.decode(Exam, v) for _, v in self.topics["exams"].sent]

    async def run(self, late: InstanceEvent) -> None:
        tasks = [asyncio.create_task(self.agents.assemble(self.instances)),
                 asyncio.create_task(self.agents.close(self.ticks))]
        for n in range(1, 6):
            await self.instances.queue.put((b"study", codec.encode(instance(n))))
        await self.settle()
        assert self.state().instance_count == 5
        # the device's clock has moved on: the exam is due to close
        self.agents.device_clock["dev"] = int((T0 + timedelta(days=1)).timestamp() * 1_000_000)
        exams = self.topics["exams"]
        exams.hold()
        await self.ticks.queue.put((b"study", b"tick"))
        await self.settle()
        assert exams.waiting == 1, "the close should be waiting on its publication"
        await self.instances.queue.put((b"study", codec.encode(late)))  # folded while the close waits
        await self.settle()
        exams.release()
        await self.settle()
        await self.instances.queue.put(None)
        await self.ticks.queue.put(None)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)


def test_an_instance_folded_while_a_close_publishes_is_kept(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    asyncio.run(h.run(instance(6)))
    state = h.state()
    assert state.instance_count == 6, f"the close overwrote the fold: {state.instance_count} of 6 instances"
    # the late instance reopened the exam after its completion was published, with a higher version
    versions = [(e.version, e.status, e.instance_count) for e in h.published()]
    assert versions[-1][0] == state.version and versions == sorted(versions), versions
    assert state.status == "in_progress" and (versions[-1][1], versions[-1][2]) == ("in_progress", 6), versions


def test_a_dose_report_folded_while_a_close_publishes_is_kept(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    asyncio.run(h.run(instance(6, modality="SR", dose_report=ct_dose_report())))
    state = h.state()
    assert state.has_dose_report and state.instance_count == 6, (state.has_dose_report, state.instance_count)
    dose = h.agents.store.dose("study")
    assert dose is not None and dose.reports, dose


class Changelog(dict):
    """A table that records its changelog: every write and delete, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, object]] = []

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        self.log.append((key, json.loads(json.dumps(value))))

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.log.append((key, None))


def recovered(prefix: list[tuple[str, object]]) -> dict[str, object]:
    table: dict[str, object] = {}
    for key, value in prefix:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = json.loads(json.dumps(value))  # a fresh copy: folds change what they read
    return table


def test_a_crash_after_any_changelog_record_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """SIGKILL at every point of the changelog: the table is recovered from what reached the broker, the
    instances whose offsets were not committed are replayed, and the exam still counts each instance once and
    keeps its dose report (the exam's record is written after its dose state and hash chunks)."""
    h = Harness(tmp_path)
    table = Changelog()
    h.agents.store = ExamStore(table)
    n = 300  # more than two sealed chunks of instance hashes
    events = [instance(i, modality="SR", dose_report=ct_dose_report()) if i == 150 else instance(i)
              for i in range(1, n + 1)]
    ends = []
    for e in events:
        h.agents.fold_batch([(e, -1)])
        ends.append(len(table.log))
    assert h.agents.store.exam("study").instance_count == n
    for crash in range(len(table.log) + 1):
        committed = sum(1 for end in ends if end <= crash)  # offsets commit only after the records are durable
        h.agents.store = ExamStore(recovered(table.log[:crash]))
        for e in events[committed:]:
            h.agents.fold_batch([(e, -1)])
        state, dose = h.agents.store.exam("study"), h.agents.store.dose("study")
        assert state is not None and state.instance_count == n, (crash, state and state.instance_count)
        assert state.has_dose_report and dose is not None and dose.reports, crash


def test_changelog_bytes_per_instance_do_not_grow_with_the_exam(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    table = Changelog()
    h.agents.store = ExamStore(table)
    sizes = []
    for i in range(1, 2001):
        before = len(table.log)
        h.agents.fold_batch([(instance(i), -1)])
        sizes.append(sum(len(json.dumps(v)) for _, v in table.log[before:]))
    early, late = max(sizes[100:300]), max(sizes[1800:2000])
    assert late <= early * 1.2, (early, late)  # main wrote every hash so far: 2,000 instances ≈ 22 KB each


class RecordingTable(dict):  # type: ignore[type-arg]
    """A table that records each write's key and the changelog partition it would go to."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int | None]] = []

    def __setitem__(self, key: str, value: object) -> None:
        from streams.app import _write_partition

        self.writes.append((key, _write_partition.get()))
        super().__setitem__(key, value)


def _study_instance(study: str, n: int) -> InstanceEvent:
    return dataclasses.replace(instance(n), event_id=f"{study}-e{n}", instance_pseudonym=f"{study}-i{n}",
                               study_pseudonym=study)


def test_a_batch_writes_each_exam_once_to_its_own_partition(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    table = RecordingTable()
    h.agents.store = ExamStore(table)
    batch = [(_study_instance("a", n), 2) for n in range(300)]
    batch[::60] = [(_study_instance("b", n), 1) for n in range(5)]  # interleaved, as devices send at once
    opened = h.agents.fold_batch(batch)
    assert sorted(key for key, _ in opened) == ["a", "b"]  # both new: each has one version to publish
    exam_writes = [w for w in table.writes if w[0] in ("a", "b")]
    assert sorted(exam_writes) == [("a", 2), ("b", 1)]  # one exam record each, not one per instance
    assert all(p == (1 if key.startswith("b") else 2) for key, p in table.writes)
    # 295 hashes: two sealed chunks of SEEN_CHUNK (128), the rest in the exam record's tail
    assert {key for key, _ in table.writes if key.startswith("a#") and key != "a#d"} == {"a#0", "a#1"}
    reread = ExamStore(table)
    a, b = reread.exam("a"), reread.exam("b")
    assert a is not None and b is not None
    assert (a.instance_count, b.instance_count, len(a.seen), a.tail_hashes()) == (295, 5, 295, 295 - 256)
    # the batch replayed after a crash (its offsets not committed) counts nothing twice
    h.agents.store = reread
    assert h.agents.fold_batch(batch) == []
    assert (reread.exam("a").instance_count, reread.exam("b").instance_count) == (295, 5)


def test_a_batch_buffered_before_a_rebalance_is_not_folded(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def event(generation: int) -> SimpleNamespace:
        return SimpleNamespace(key=b"study", value=codec.encode(instance(1)),
                               message=SimpleNamespace(partition=0, generation_id=generation))

    h.sa.app.consumer_generation_id = 3
    old, current = event(2), event(3)
    assert h.agents._current([old, current]) == [current]  # fetched before the last rebalance: not ours to fold
    h.sa.app.flow_control.suspend()  # a rebalance has begun: the partitions may be another worker's already
    assert h.agents._current([current]) == []
