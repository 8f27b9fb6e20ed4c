"""Diagnostic reference levels: a versioned CSV table, comparisons of one exam with it, and local DRLs. Pure.

The only I/O is reading the table file given a path (and ``os.stat`` for hot reload in ``DrlWatcher``).

Table (``drl_default.csv``; lines starting with ``#`` are comments): one row per (table_id, exam_type, quantity,
phantom, per, population, percentile). A row whose ``value`` is empty is a placeholder (e.g. China WS/T 637-2018,
whose values are not confirmed here): it is validated, counted and ignored. A setting chooses the active
table ids (default ``UK-NDRL-2022``); rows of other tables are not compared.

``compare`` semantics, each for a reason:

* exceeds means ``value > DRL``: a DRL is an investigation level, and an exam exactly at it has not passed it;
* a quantity the exam lacks gives no comparison (never a zero);
* ``UNMAPPED`` or unknown exam types give none;
* CTDIvol is compared only against the CTDIvol stated for the row's phantom: a 32 cm value is about half the
  16 cm value for the same scan, so a mismatch (or an unknown phantom) gives no comparison. DLP is skipped only
  on a definite mismatch (the exam's DLP comes from one known, different phantom);
* ``per=SEQUENCE`` CTDIvol uses the exam's largest non-localizer CTDIvol (every sequence should stay below the
  level), ``per=EXAM`` the mean; DLP, DAP, DOSE_RP and FLUORO_TIME are per exam; AGD per exam is the larger
  per-breast total.

``local_drls`` follows the DRL method (ICRP 135 as summarised in the domain notes §4.1): the median per device,
then the 75th percentile of the device medians, with linear interpolation between order statistics (numpy's
default, "type 7").
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import logging
import math
import os
import statistics
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.dose import BODY32, HEAD16, ExamDose

log = logging.getLogger("radpulse.drl")

DEFAULT_DRL_PATH = Path(__file__).with_name("drl_default.csv")
DEFAULT_ACTIVE_TABLES: tuple[str, ...] = ("UK-NDRL-2022",)
UNMAPPED = "UNMAPPED"

COLUMNS = (
    "table_id",
    "exam_type",
    "quantity",
    "value",
    "unit",
    "phantom",
    "per",
    "population",
    "percentile",
    "source",
    "year",
    "note",
)
REQUIRED = COLUMNS[:-1]  # `note` may be left out
# quantity → canonical unit; spellings are compared after dropping case, spaces and · . * ^ (² reads as 2)
UNITS: dict[str, str] = {
    "CTDIVOL": "mGy",
    "DLP": "mGy·cm",
    "DAP": "Gy·cm²",
    "AGD": "mGy",
    "DOSE_RP": "mGy",
    "FLUORO_TIME": "s",
}
PER: dict[str, frozenset[str]] = {  # what `compare` can evaluate
    "CTDIVOL": frozenset({"SEQUENCE", "EXAM"}),
    "DLP": frozenset({"EXAM"}),
    "DAP": frozenset({"EXAM"}),
    "AGD": frozenset({"EXAM"}),
    "DOSE_RP": frozenset({"EXAM"}),
    "FLUORO_TIME": frozenset({"EXAM"}),
}
PHANTOMS = frozenset({HEAD16, BODY32})


class DrlError(ValueError):
    """The DRL table is unusable; the message names the file, line, column and the fix."""


def _unit_key(unit: str) -> str:
    key = unit.replace("²", "2").lower()
    for ch in " ·.*^":
        key = key.replace(ch, "")
    return key


@dataclass(frozen=True, slots=True)
class DrlRow:
    """One reference level."""

    table_id: str
    exam_type: str
    quantity: str
    value: float
    unit: str  # canonical spelling
    phantom: str | None
    per: str
    population: str
    percentile: str
    source: str
    year: int
    note: str = ""
    line: int = 0


@dataclass(frozen=True)
class DrlTable:
    """The usable rows of the active tables."""

    rows: tuple[DrlRow, ...]
    active: tuple[str, ...]
    available: tuple[str, ...]  # every table id in the file, placeholders included
    placeholders: int  # rows without a value, ignored
    path: str
    digest: str  # sha256 of the file's bytes, 12 hex

    def lookup(self, exam_type: str, quantity: str | None = None) -> tuple[DrlRow, ...]:
        return tuple(r for r in self.rows if r.exam_type == exam_type and (quantity is None or r.quantity == quantity))


@dataclass(frozen=True, slots=True)
class Comparison:
    """One exam value against one reference level."""

    quantity: str
    value: float
    drl_value: float
    ratio: float
    exceeds: bool  # value > drl_value (strictly)
    unit: str
    source: str
    table_id: str
    percentile: str
    phantom: str | None


# ------------------------------------------------------------------------------------------------ loading


def _fail(path: str, line: int, column: str | None, problem: str, fix: str) -> DrlError:
    where = f"{path}:{line}" + (f", column {column!r}" if column else "")
    return DrlError(f"{where}: {problem}; {fix}")


def load_drls(
    path: str | Path | None = None,
    *,
    active: Sequence[str] = DEFAULT_ACTIVE_TABLES,
    known_exam_types: Collection[str] | None = None,
) -> DrlTable:
    """Read and validate a DRL table; keep the rows of the `active` tables that have a value."""
    file = Path(path) if path is not None else DEFAULT_DRL_PATH
    name = str(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise DrlError(f"{name}: cannot read the DRL table ({exc.strerror}); check the path") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DrlError(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from exc

    numbered = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise DrlError(f"{name}: no header line; the first non-comment line must be: {','.join(COLUMNS)}")
    header_line, header_text = numbered[0]
    header = [h.strip().lower() for h in next(csv.reader([header_text]))]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise _fail(name, header_line, None, f"header lacks {missing}", f"the header must be {','.join(COLUMNS)}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise _fail(name, header_line, None, f"unknown columns {unknown}", f"use only {','.join(COLUMNS)}")

    rows: list[DrlRow] = []
    placeholders = 0
    tables: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    with_values: set[str] = set()
    for n, line in numbered[1:]:
        fields = next(csv.reader(io.StringIO(line)))
        if len(fields) > len(header):
            problem = f"{len(fields)} fields for {len(header)} columns"
            raise _fail(name, n, None, problem, "quote text containing commas")
        cells = {h: (fields[i].strip() if i < len(fields) else "") for i, h in enumerate(header)}
        row, has_value = _parse_row(name, n, cells, known_exam_types)
        key = (row.table_id, row.exam_type, row.quantity, row.phantom or "", row.per, row.population, row.percentile)
        if key in seen:
            raise _fail(name, n, None, f"duplicates line {seen[key]} {key}", "delete one of the two rows")
        seen[key] = n
        if row.table_id not in tables:
            tables.append(row.table_id)
        if not has_value:
            placeholders += 1
            continue
        with_values.add(row.table_id)
        if row.table_id in active:
            rows.append(row)

    for table in active:
        if table not in tables:
            raise DrlError(
                f"{name}: active DRL table {table!r} is not in the file{_close(table, tables)}; choose among {tables}"
            )
        if table not in with_values:
            raise DrlError(
                f"{name}: active DRL table {table!r} has only empty values (placeholders); "
                "fill in the values from the source document, or activate another table"
            )
    return DrlTable(
        rows=tuple(rows),
        active=tuple(active),
        available=tuple(tables),
        placeholders=placeholders,
        path=name,
        digest=hashlib.sha256(raw).hexdigest()[:12],
    )


def _close(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_row(name: str, n: int, c: dict[str, str], known_exam_types: Collection[str] | None) -> tuple[DrlRow, bool]:
    def need(col: str, fix: str) -> str:
        if not c.get(col):
            raise _fail(name, n, col, "empty", fix)
        return c[col]

    table_id = need("table_id", 'name the table, e.g. "UK-NDRL-2022"')
    exam_type = need("exam_type", "use a DRL key of the exam-type rules, e.g. CT_HEAD").upper()
    if known_exam_types is not None and exam_type not in known_exam_types:
        raise _fail(
            name,
            n,
            "exam_type",
            f"{exam_type!r} is not a known DRL key{_close(exam_type, known_exam_types)}",
            "use a drl_key from the exam-type rules",
        )
    quantity = need("quantity", f"use one of {sorted(UNITS)}").upper()
    if quantity not in UNITS:
        problem = f"{quantity!r} unknown{_close(quantity, UNITS)}"
        raise _fail(name, n, "quantity", problem, f"use one of {sorted(UNITS)}")
    canonical = UNITS[quantity]
    unit = need("unit", f"write {canonical}")
    if _unit_key(unit) != _unit_key(canonical):
        raise _fail(
            name,
            n,
            "unit",
            f"{unit!r} is not the unit for {quantity}",
            f"convert the value to {canonical} (e.g. 1 cGy·cm² = 0.01 Gy·cm²) and write {canonical}",
        )
    phantom = c.get("phantom", "").upper() or None
    if phantom is not None and (phantom not in PHANTOMS or quantity not in ("CTDIVOL", "DLP")):
        raise _fail(
            name,
            n,
            "phantom",
            f"{phantom!r} invalid for {quantity}",
            "use HEAD16 or BODY32 on CTDIVOL/DLP rows, else leave it empty",
        )
    per = need("per", "write SEQUENCE or EXAM").upper()
    if per not in PER[quantity]:
        raise _fail(name, n, "per", f"{per!r} cannot be compared for {quantity}", f"use {sorted(PER[quantity])}")
    population = need("population", "write e.g. adult").lower()
    percentile = need("percentile", "write e.g. P75").upper()
    if not (percentile.startswith("P") and percentile[1:].isdigit() and 0 < int(percentile[1:]) < 100):
        raise _fail(name, n, "percentile", f"{percentile!r} invalid", "write P75 (DRL), P50 or P25")
    source = need("source", "name the publication the value comes from")
    year_text = need("year", "write the year the level was adopted")
    if not (year_text.isdigit() and 1980 <= int(year_text) <= 2100):
        raise _fail(name, n, "year", f"{year_text!r} is not a year", "write four digits, e.g. 2022")
    has_value = bool(c.get("value"))
    value = math.nan
    if has_value:
        try:
            value = float(c["value"])
        except ValueError:
            raise _fail(name, n, "value", f"{c['value']!r} is not a number", "write e.g. 47 or 8.5") from None
        if not math.isfinite(value) or value <= 0:
            raise _fail(name, n, "value", f"{c['value']!r} must be positive", "write the level, or leave it empty")
    row = DrlRow(
        table_id=table_id,
        exam_type=exam_type,
        quantity=quantity,
        value=value,
        unit=canonical,
        phantom=phantom,
        per=per,
        population=population,
        percentile=percentile,
        source=source,
        year=int(year_text),
        note=c.get("note", ""),
        line=n,
    )
    return row, has_value


class DrlWatcher:
    """Hot reload: ``current()`` re-reads the file when its mtime (or size) changed; a bad edit keeps the last
    good table and is reported through ``last_error`` and `on_error` (default: a warning in the log)."""

    def __init__(
        self,
        path: str | Path,
        *,
        active: Sequence[str] = DEFAULT_ACTIVE_TABLES,
        known_exam_types: Collection[str] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.active = tuple(active)
        self.known_exam_types = known_exam_types
        self.on_error = on_error or (lambda msg: log.warning("DRL table not reloaded: %s", msg))
        self.last_error: str | None = None
        self.reloads = 0
        self._signature = self._stat()
        self._table = load_drls(self.path, active=self.active, known_exam_types=known_exam_types)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> DrlTable:
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                table = load_drls(self.path, active=self.active, known_exam_types=self.known_exam_types)
            except DrlError as exc:
                self.last_error = str(exc)
                self.on_error(self.last_error)
            else:
                self._table = table
                self.last_error = None
                self.reloads += 1
        return self._table


# ------------------------------------------------------------------------------------------------ comparing


def _exam_value(dose: ExamDose, row: DrlRow) -> float | None:
    q = row.quantity
    if q == "CTDIVOL":
        # with a phantom: only values stated for it (None on a mismatch); without: the exam's headline value
        return dose.ctdivol(row.phantom, mean=row.per == "EXAM")
    if q == "DLP":
        if row.phantom and dose.dlp_phantom in PHANTOMS and dose.dlp_phantom != row.phantom:
            return None
        return dose.dlp_total_mgy_cm
    if q == "DAP":
        return dose.dap_total_gy_cm2
    if q == "AGD":
        return dose.agd_max_breast_mgy
    if q == "DOSE_RP":
        return dose.dose_rp_mgy
    if q == "FLUORO_TIME":
        return dose.fluoro_time_s
    return None


def compare(
    exam_dose: ExamDose,
    exam_type: str | None,
    table: DrlTable,
    *,
    percentiles: Collection[str] = ("P75",),
    population: str | None = "adult",
) -> list[Comparison]:
    """The exam's values against every matching level (pass the exam type's DRL key; see module docstring)."""
    if not exam_type or exam_type == UNMAPPED:
        return []
    out: list[Comparison] = []
    for row in table.lookup(exam_type):
        if row.percentile not in percentiles or (population is not None and row.population != population):
            continue
        value = _exam_value(exam_dose, row)
        if value is None:
            continue
        out.append(
            Comparison(
                quantity=row.quantity,
                value=value,
                drl_value=row.value,
                ratio=value / row.value,
                exceeds=value > row.value,
                unit=row.unit,
                source=row.source,
                table_id=row.table_id,
                percentile=row.percentile,
                phantom=row.phantom,
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ local DRLs


def percentile_linear(values: Iterable[float], q: float) -> float:
    """q-th percentile (0–100) with linear interpolation between order statistics, like numpy's default."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    h = (len(xs) - 1) * q / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


@dataclass(frozen=True, slots=True)
class LocalDrl:
    """A local DRL for one exam type and quantity."""

    exam_type: str
    quantity: str
    p75_of_device_medians: float
    p50: float  # median of the device medians ("achievable" level)
    n_devices: int
    n_exams: int


def local_drls(rows: Iterable[tuple[str, str, str, float | None]], min_exams: int = 10) -> list[LocalDrl]:
    """From (device_id, exam_type, quantity, value) per exam: median per device (devices with fewer than
    `min_exams` values are left out), then P75 and P50 of the device medians. Missing or non-positive values
    are skipped."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for device, exam_type, quantity, value in rows:
        if value is None or not math.isfinite(value) or value <= 0 or not exam_type or exam_type == UNMAPPED:
            continue
        groups.setdefault((exam_type, quantity), {}).setdefault(device, []).append(float(value))
    out: list[LocalDrl] = []
    for (exam_type, quantity), devices in sorted(groups.items()):
        kept = {d: v for d, v in devices.items() if len(v) >= min_exams}
        if not kept:
            continue
        medians = [statistics.median(v) for v in kept.values()]
        out.append(
            LocalDrl(
                exam_type=exam_type,
                quantity=quantity,
                p75_of_device_medians=percentile_linear(medians, 75),
                p50=percentile_linear(medians, 50),
                n_devices=len(kept),
                n_exams=sum(len(v) for v in kept.values()),
            )
        )
    return out
