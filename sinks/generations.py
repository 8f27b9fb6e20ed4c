"""A late instance's new exam generation is merged into what ClickHouse holds instead of replacing it.

The streams forget a complete exam after `[streams] retain_days`; an instance that arrives later starts a new state,
a new generation whose versions outrank the old ones (``schemas.exam_version``), holding only the late objects.
Before inserting exam rows the sink therefore checks:

* a generation's first publication: is a row of an older generation stored? Then that row is the generation's
  *base*, kept in ``exam_carry`` (same columns as ``exams``, its version set to the new generation's first).
* every row of a generation with a base is merged with it (``merge``): instance and series counts from the
  ``instances`` table (distinct event ids across every generation, so a resend is counted once) and never below
  either side; the earliest start and receipt, the latest end and receipt; lists united; a dose report on either
  side counts; whatever the late generation lacks comes from the base.
* ``exam_dose`` rows of such a generation are not written while the stored dose has as many irradiation events —
  a late image must not wipe the exam's dose (nor close its alerts); a complete late report replaces a partial.

Merges are monotone (min, max, union, or), so merging again — a redelivery, a retry — gives the same row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.exam_version import GENERATION_BITS, change, generation
from sinks.clickhouse import Database
from sinks.rows import COLUMNS, EXAM_COLUMNS, Row

CARRY_TABLE = "exam_carry"
NEW_SIDE = frozenset({"exam_key", "site_id", "version", "status", "updated_at"})
EARLIEST = frozenset({"start_utc", "first_received_at", "study_datetime_utc", "pps_start_utc"})
LATEST = frozenset({"end_utc", "last_received_at", "pps_end_utc"})
UNITED = frozenset({"series_descriptions", "mr_receive_coils"})
EITHER = frozenset({"has_dose_report"})
COUNTED = {"instance_count": 0, "series_count": 1}  # column → index in InstanceFacts.counts

Key = tuple[str, str]  # (site_id, exam_key)


@dataclass(frozen=True)
class InstanceFacts:
    counts: tuple[int, int]  # distinct instances, distinct series stored for the exam


def _pick(values: Iterable[Any], fn: Any) -> Any:
    present = [v for v in values if v is not None]
    return fn(present) if present else None


def merge(base: dict[str, Any], new: dict[str, Any], facts: InstanceFacts | None) -> dict[str, Any]:
    """The row of an exam whose generation `new` continues `base` (both column → value). Pure."""
    out: dict[str, Any] = {}
    for col, value in new.items():
        old = base.get(col)
        if col in NEW_SIDE:
            out[col] = value
        elif col in EARLIEST:
            out[col] = _pick((old, value), min)
        elif col in LATEST:
            out[col] = _pick((old, value), max)
        elif col in UNITED:
            out[col] = list(dict.fromkeys([*(old or []), *(value or [])]))
        elif col in EITHER:
            out[col] = bool(old) or bool(value)
        elif col in COUNTED:
            stored = facts.counts[COUNTED[col]] if facts else 0
            out[col] = max(int(old or 0), int(value or 0), stored)
        else:
            out[col] = old if old is not None else value
    start, end = out.get("start_utc"), out.get("end_utc")
    if isinstance(start, datetime) and isinstance(end, datetime):
        out["duration_s"] = (end - start).total_seconds()
    return out


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _keys_sql(keys: Iterable[Key]) -> str:
    return ", ".join(f"({_lit(s)}, {_lit(k)})" for s, k in sorted(set(keys)))


class GenerationMerger:
    """The sink's step before inserting ``exams`` and ``exam_dose`` rows (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.merged = 0  # exam rows written as a merge of generations

    def _rows(self, table: str, keys: Iterable[Key], columns: tuple[str, ...] = EXAM_COLUMNS) -> dict[Key, dict]:
        keys = list(keys)
        if not keys:
            return {}
        res = self.db.query(f"SELECT {', '.join(columns)} FROM {table} FINAL "
                            f"WHERE (site_id, exam_key) IN ({_keys_sql(keys)})")
        out = {}
        for r in res.rows:
            d = dict(zip(columns, r, strict=True))
            out[(d["site_id"], d["exam_key"])] = d
        return out

    def _facts(self, keys: Iterable[Key]) -> dict[Key, InstanceFacts]:
        keys = list(keys)
        if not keys:
            return {}
        res = self.db.query(
            "SELECT site_id, study_pseudonym, uniqExact(event_id), uniqExactIf(series_pseudonym, "
            "series_pseudonym IS NOT NULL) FROM instances "
            f"WHERE (site_id, study_pseudonym) IN ({_keys_sql(keys)}) GROUP BY site_id, study_pseudonym")
        return {(s, k): InstanceFacts((int(n), int(series))) for s, k, n, series in res.rows}

    def exams(self, rows: list[Row]) -> list[Row]:
        """`rows` with every continued generation merged into its base; new bases saved first."""
        dicts = [dict(zip(EXAM_COLUMNS, r, strict=True)) for r in rows]
        keys = {(d["site_id"], d["exam_key"]) for d in dicts}
        carries = self._rows(CARRY_TABLE, keys)
        firsts = {(d["site_id"], d["exam_key"]) for d in dicts if change(d["version"]) == 1}
        stored = self._rows("exams", firsts)
        new_carries: list[dict[str, Any]] = []
        for d in dicts:
            key, gen = (d["site_id"], d["exam_key"]), generation(d["version"])
            carry = carries.get(key)
            if (carry is None or generation(carry["version"]) < gen) and key in stored:
                old = stored[key]
                if generation(old["version"]) < gen:
                    carry = dict(old, version=gen << GENERATION_BITS)
                    carries[key] = carry
                    new_carries.append(carry)
        if new_carries:
            self.db.insert(CARRY_TABLE, [tuple(c[col] for col in EXAM_COLUMNS) for c in new_carries], EXAM_COLUMNS)
        if not carries:
            return rows
        facts = self._facts(carries)
        out: list[Row] = []
        for row, d in zip(rows, dicts, strict=True):
            key = (d["site_id"], d["exam_key"])
            carry = carries.get(key)
            if carry is not None and generation(carry["version"]) == generation(d["version"]):
                d = merge(carry, d, facts.get(key))
                row = tuple(d[col] for col in EXAM_COLUMNS)
                self.merged += 1
            out.append(row)
        return out

    def exam_dose(self, rows: list[Row]) -> list[Row]:
        """Dose rows of a continued generation are dropped unless they hold more irradiation events than stored."""
        columns = COLUMNS["exam_dose"]
        dicts = [dict(zip(columns, r, strict=True)) for r in rows]
        keys = {(d["site_id"], d["exam_key"]) for d in dicts}
        carries = self._rows(CARRY_TABLE, keys, ("site_id", "exam_key", "version"))
        continued = {key for d in dicts if (c := carries.get(key := (d["site_id"], d["exam_key"]))) is not None
                     and generation(c["version"]) == generation(d["version"])}
        if not continued:
            return rows
        stored = self._rows("exam_dose", continued, columns)
        out: list[Row] = []
        for row, d in zip(rows, dicts, strict=True):
            key = (d["site_id"], d["exam_key"])
            old = stored.get(key)
            if (key in continued and old is not None and old["version"] < d["version"]
                    and int(old.get("event_count") or 0) >= int(d.get("event_count") or 0)):
                continue  # the stored row stays the latest, and the dose alerts raised on its version stay open
            out.append(row)
        return out
