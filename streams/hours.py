"""Operating hours per device and weekday, and the interval arithmetic utilization needs. Pure.

Config (TOML-friendly; a missing day means closed)::

    [hours.default]
    mon = ["07:00-19:00"]          # several ranges per day are fine: ["08:00-12:00", "13:00-18:00"]
    sun = []                       # closed
    [hours.devices."CT1_FLASH"]    # key: the exam's device key (station name, else device id)
    mon = ["00:00-24:00"]          # around the clock
    fri = ["22:00-06:00"]          # crosses midnight: Friday 22:00 to Saturday 06:00

A device table overrides the default *per day*: days it does not list keep the default's ranges.
Ranges are local wall-clock times of the site's IANA zone. ``operating_intervals`` answers for one *local day*: the
day's own ranges clipped at its end, plus the part of the previous day's midnight-crossing ranges that falls on it.

Where the clock bites:
- A local day lasts 23 or 25 hours on DST changes; everything here is computed in UTC from local wall times, so a
  "00:00-24:00" day is 1380 minutes on Europe/London's spring day and 1500 on its autumn day.
- A wall time skipped by a forward jump (01:30 on London's spring day) maps to the jump itself, the first instant
  the wall clock reaches or passes it; a repeated wall time (autumn) maps to its first occurrence (PEP 495 fold=0).
- Ranges of one day may not overlap (a typo, reported with the merged range to write); a midnight-crossing range
  that overlaps the next day's ranges is simply united with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MINUTES_PER_DAY = 1440
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_EXAMPLE = '"07:00-19:00"'

Interval = tuple[datetime, datetime]  # [start, end) in UTC
Week = tuple[tuple["TimeRange", ...], ...]  # seven days, Monday first


class HoursConfigError(ValueError):
    """The operating-hours table is malformed; the message names the device, day and range, and the fix."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """One opening range in minutes after local midnight; ``end_min`` > 1440 crosses into the next day."""

    start_min: int
    end_min: int

    def __str__(self) -> str:
        end = self.end_min - MINUTES_PER_DAY if self.end_min > MINUTES_PER_DAY else self.end_min
        return f"{_hhmm(self.start_min)}-{_hhmm(end)}"


@dataclass(frozen=True, slots=True)
class OperatingHours:
    """Parsed, validated operating hours: a default week and per-device weeks (already merged with the default)."""

    default: Week
    devices: tuple[tuple[str, Week], ...] = ()

    def week(self, device: str) -> Week:
        for key, week in self.devices:
            if key == device:
                return week
        return self.default

    def ranges(self, device: str, weekday: int) -> tuple[TimeRange, ...]:
        return self.week(device)[weekday]

    def to_dict(self) -> dict[str, Any]:
        """The config form again (devices list every day), so ``parse_hours(h.to_dict()) == h``."""

        def week_dict(week: Week) -> dict[str, list[str]]:
            return {day: [str(r) for r in week[i]] for i, day in enumerate(WEEKDAYS)}

        return {"default": week_dict(self.default), "devices": {k: week_dict(w) for k, w in self.devices}}


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _where(device: str | None, day: str | None = None, index: int | None = None) -> str:
    path = "hours.default" if device is None else f'hours.devices."{device}"'
    if day is not None:
        path += f".{day}"
    if index is not None:
        path += f"[{index}]"
    return path


def parse_range(text: Any, *, where: str = "range") -> TimeRange:
    """'22:00-06:00' → TimeRange(1320, 1800). End '24:00' is midnight; an end before the start crosses midnight."""
    m = _RANGE.match(text) if isinstance(text, str) else None
    if m is None:
        raise HoursConfigError(
            f'{where} = {text!r}: expected "HH:MM-HH:MM" on the 24-hour clock (end may be 24:00), e.g. {_EXAMPLE}'
        )
    sh, sm, eh, em = (int(g) for g in m.groups())
    if sh > 23 or sm > 59 or eh > 24 or em > 59 or (eh == 24 and em != 0):
        raise HoursConfigError(
            f"{where} = {text!r}: hours run 00–23 (end may be exactly 24:00) and minutes 00–59, e.g. {_EXAMPLE}"
        )
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise HoursConfigError(
            f'{where} = {text!r}: start equals end; write "00:00-24:00" for the whole day or [] for closed'
        )
    if end < start:
        end += MINUTES_PER_DAY  # crosses midnight into the next day
    return TimeRange(start, end)


def _parse_day(value: Any, device: str | None, day: str) -> tuple[TimeRange, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise HoursConfigError(
            f'{_where(device, day)} = {value!r}: expected a list of "HH:MM-HH:MM" ranges, e.g. [{_EXAMPLE}] '
            "or [] for closed"
        )
    ranges = [parse_range(v, where=_where(device, day, i)) for i, v in enumerate(value)]
    ordered = sorted(ranges, key=lambda r: (r.start_min, r.end_min))
    for a, b in pairwise(ordered):
        if b.start_min < a.end_min:
            merged = TimeRange(a.start_min, max(a.end_min, b.end_min))
            raise HoursConfigError(f'{_where(device, day)}: ranges "{a}" and "{b}" overlap; merge them into "{merged}"')
    return tuple(ordered)


def _parse_week(table: Any, device: str | None, base: Week | None) -> Week:
    if not isinstance(table, Mapping):
        raise HoursConfigError(
            f"{_where(device)} = {table!r}: expected a table of weekdays, e.g. {{mon = [{_EXAMPLE}], sun = []}}"
        )
    for key in table:
        if key not in WEEKDAYS:
            raise HoursConfigError(f"{_where(device)}: unknown day {key!r}; use one of {', '.join(WEEKDAYS)}")
    days = []
    for i, day in enumerate(WEEKDAYS):
        if day in table:
            days.append(_parse_day(table[day], device, day))
        else:
            days.append(() if base is None else base[i])  # default: closed; device: inherit the default's day
    return tuple(days)


def parse_hours(config: Mapping[str, Any]) -> OperatingHours:
    """Validate the ``[hours]`` table. Raises ``HoursConfigError`` naming the device/day/range and the fix."""
    if not isinstance(config, Mapping):
        raise HoursConfigError(f'hours = {config!r}: expected a table with "default" and "devices"')
    for key in config:
        if key not in ("default", "devices"):
            raise HoursConfigError(f'hours: unknown key {key!r}; expected "default" and "devices"')
    default = _parse_week(config.get("default", {}), None, None)
    devices_table = config.get("devices", {})
    if not isinstance(devices_table, Mapping):
        raise HoursConfigError(
            f"hours.devices = {devices_table!r}: expected a table keyed by station name or device id, "
            f'e.g. {{"CT1" = {{mon = ["00:00-24:00"]}}}}'
        )
    devices = []
    for name, table in devices_table.items():
        if not isinstance(name, str) or not name.strip():
            raise HoursConfigError(f"hours.devices: key {name!r}: expected a station name or device id")
        devices.append((name, _parse_week(table, name, default)))
    return OperatingHours(default=default, devices=tuple(sorted(devices)))


def as_zone(tz: str | tzinfo) -> tzinfo:
    """The site's zone from an IANA name (or a tzinfo, returned as is)."""
    if not isinstance(tz, str):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HoursConfigError(f"time zone {tz!r}: expected an IANA name, e.g. Asia/Shanghai or Europe/London") from exc


def zone_name(tz: str | tzinfo) -> str:
    return tz if isinstance(tz, str) else getattr(tz, "key", None) or str(tz)


def _wall(t: datetime, zone: tzinfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


def local_to_utc(day: date, minute: int, tz: str | tzinfo) -> datetime:
    """Local wall time ``day`` + ``minute`` (may exceed 1440) → UTC; DST gaps map to the jump, folds to fold=0."""
    zone = as_zone(tz)
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    utc = naive.replace(tzinfo=zone).astimezone(UTC)
    if _wall(utc, zone) == naive:
        return utc
    # a skipped wall time: binary-search (to the second) the first instant whose wall clock reaches it
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)  # post-jump offset: wall clock still before `naive`
    lo_s, hi_s = int(lo.timestamp()), int(utc.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) >= naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def local_day_bounds(day: date, tz: str | tzinfo) -> Interval:
    """[start, end) of a local day in UTC: 24 hours long except on DST changes."""
    return local_to_utc(day, 0, tz), local_to_utc(day, MINUTES_PER_DAY, tz)


def local_hours(day: date, tz: str | tzinfo) -> list[tuple[int, int, datetime, datetime]]:
    """The local hours of a day as (hour_local, fold, start_utc, end_utc): 23 on a spring day, 25 in autumn.

    Built from the instants whose wall clock shows HH:00 (every UTC offset is a multiple of 15 minutes), so zones
    with half-hour offsets or half-hour DST shifts get correct, if unequal, buckets.
    """
    zone = as_zone(tz)
    start, end = local_day_bounds(day, zone)
    quarter = 15 * 60
    t = datetime.fromtimestamp(-(-int(start.timestamp()) // quarter) * quarter, UTC)  # first quarter-hour ≥ start
    bounds = {start}
    while t < end:
        local = t.astimezone(zone)
        if local.minute == 0 and local.second == 0:
            bounds.add(t)
        t += timedelta(seconds=quarter)
    edges = [*sorted(bounds), end]
    out = []
    for a, b in pairwise(edges):
        local = a.astimezone(zone)
        out.append((local.hour, local.fold, a, b))
    return out


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union: overlapping or touching intervals become one, empty ones vanish."""
    out: list[Interval] = []
    for s, e in sorted(i for i in intervals if i[1] > i[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def intersect_intervals(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two sorted, disjoint interval lists (as ``merge_intervals`` returns)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract_intervals(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """``a`` minus ``b``, both sorted and disjoint."""
    out: list[Interval] = []
    j = 0
    for s, e in a:
        cur = s
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def total_seconds(intervals: Iterable[Interval]) -> float:
    return sum((e - s).total_seconds() for s, e in intervals)


def operating_intervals(hours: OperatingHours, device: str, day_local: date, tz: str | tzinfo) -> list[Interval]:
    """The device's operating time on one local day, as sorted, disjoint UTC intervals clipped to that day."""
    zone = as_zone(tz)
    day_start, day_end = local_day_bounds(day_local, zone)
    out: list[Interval] = []
    for d in (day_local - timedelta(days=1), day_local):  # the previous day's midnight-crossing ranges reach in
        for r in hours.ranges(device, d.weekday()):
            s = max(local_to_utc(d, r.start_min, zone), day_start)
            e = min(local_to_utc(d, r.end_min, zone), day_end)
            out.append((s, e))
    return merge_intervals(out)
