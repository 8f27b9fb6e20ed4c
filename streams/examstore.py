"""Exam state in one Faust table: the exam, its dose state and its sealed instance-hash chunks under one key space.

Keys (pseudonyms are ``2.25.<digits>``, so ``#`` never occurs in them):

* ``<exam>``      the exam state (``ExamState.to_dict``), written last
* ``<exam>#d``    its dose state (``ExamDoseState.to_dict``)
* ``<exam>#<i>``  sealed chunk ``i`` of its instance hashes (base64), written once

All records of an exam land in the same changelog partition (the partition of the instance being processed), and
a producer keeps one partition's records in order. An exam's record is written after its dose state and chunks,
so whenever the exam record survives a crash everything it refers to survives too; an instance whose exam record
was lost is replayed (its offset was not committed) and folds again — the dose fold and chunk writes are
idempotent. Keeping the dose state in a separate table (main until this change) broke that: a SIGKILL could keep
the exam's fold and lose the dose report's.

States read back are cached with the record they came from; a record that changed underneath (recovery after a
rebalance) is read again.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator, MutableMapping
from typing import Any

from streams.dose import ExamDoseState
from streams.exams import SEEN_CHUNK, ExamState

DOSE_SUFFIX = "#d"


def is_exam_key(key: str) -> bool:
    return "#" not in key


class ExamStore:
    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self._exams: dict[str, tuple[object, ExamState]] = {}
        self._doses: dict[str, tuple[object, ExamDoseState]] = {}

    def exam(self, key: str) -> ExamState | None:
        raw = self.table.get(key)
        if not raw:
            self._exams.pop(key, None)
            return None
        hit = self._exams.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        sealed = b"".join(base64.b64decode(self.table.get(f"{key}#{i}") or "")
                          for i in range(int(raw.get("seen_sealed", 0))))
        state = ExamState.from_dict(raw, sealed)
        self._exams[key] = (raw, state)
        return state

    def dose(self, key: str) -> ExamDoseState | None:
        raw = self.table.get(key + DOSE_SUFFIX)
        if not raw:
            self._doses.pop(key, None)
            return None
        hit = self._doses.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        state = ExamDoseState.from_dict(copy.deepcopy(raw))  # folds change nested dicts: not the stored record's
        self._doses[key] = (raw, state)
        return state

    def raw(self, key: str) -> dict[str, Any] | None:
        return self.table.get(key)

    def save(self, key: str, state: ExamState, dose: ExamDoseState | None = None) -> dict[str, Any]:
        """Write the dose state (if given), seal every full chunk of the hash tail, then the exam record."""
        if dose is not None:
            raw_dose = dose.to_dict()
            self.table[key + DOSE_SUFFIX] = raw_dose
            self._doses[key] = (raw_dose, dose)
        if state.tail_hashes() >= SEEN_CHUNK:  # a batch may have added several chunks' worth
            tail = base64.b64decode(state.seen_tail)
            size = SEEN_CHUNK * 8
            while len(tail) >= size:
                self.table[f"{key}#{state.seen_sealed}"] = base64.b64encode(tail[:size]).decode("ascii")
                state.seen_sealed += 1
                tail = tail[size:]
            state.seen_tail = base64.b64encode(tail).decode("ascii")
        raw = state.to_dict()
        self.table[key] = raw
        self._exams[key] = (raw, state)
        return raw

    def mark_published(self, key: str, version: int) -> dict[str, Any] | None:
        raw = self.table.get(key)
        if not raw or raw.get("published", 0) >= version:
            return None
        new = {**raw, "published": version}
        self.table[key] = new
        hit = self._exams.get(key)
        if hit is not None and hit[0] is raw:
            hit[1].published = version
            self._exams[key] = (new, hit[1])
        return new

    def evict(self, key: str) -> None:
        """Delete the exam's records (tombstones in the changelog, which compaction then drops)."""
        raw = self.table.get(key)
        sealed = int(raw.get("seen_sealed", 0)) if raw else 0
        for k in (*(f"{key}#{i}" for i in range(sealed)), key + DOSE_SUFFIX, key):
            if k in self.table:
                del self.table[k]
        self._exams.pop(key, None)
        self._doses.pop(key, None)

    def exam_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, raw in list(self.table.items()):
            if raw and is_exam_key(key):
                yield key, raw
