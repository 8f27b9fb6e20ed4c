"""DICOM DA / TM / DT values → timezone-aware UTC datetimes. Pure.

Modality clocks write local wall-clock time. The offset comes, in order of precedence, from the DT value's own
``&ZZXX`` suffix, the object's (0008,0201) TimezoneOffsetFromUTC, and finally the site's configured IANA zone
(so daylight-saving changes are honoured per instant). Unparseable values become ``None``: a bad time must not
lose the object.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

_DA = re.compile(r"^\s*(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})\s*$")
_TM = re.compile(r"^\s*(\d{2})(?::?(\d{2})(?::?(\d{2})(?:[.,](\d{1,6}))?)?)?\s*$")
_DT = re.compile(r"^\s*(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:[.,](\d{1,6}))?\s*([+\-]\d{4})?\s*$")
_OFFSET = re.compile(r"^\s*([+\-])(\d{2})(\d{2})\s*$")


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def parse_offset(value: str | None) -> timezone | None:
    """'+0800' → UTC+08:00; anything else (absent, malformed, out of range) → None."""
    if not value:
        return None
    m = _OFFSET.match(str(value))
    if not m:
        return None
    hours, minutes = int(m[2]), int(m[3])
    if hours > 14 or minutes >= 60:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if m[1] == "-" else delta)


def parse_da(value: str | None) -> date | None:
    if not value:
        return None
    m = _DA.match(str(value))
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_tm(value: str | None) -> time | None:
    if not value:
        return None
    m = _TM.match(str(value))
    if not m:
        return None
    hh, mm, ss = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    # DICOM allows second 60 (leap second); clamp instead of failing
    ss = min(ss, 59)
    micro = int((m[4] or "0").ljust(6, "0"))
    try:
        return time(hh, mm, ss, micro)
    except ValueError:
        return None


def _localize(naive: datetime, offset: tzinfo | None, site_zone: tzinfo) -> datetime:
    aware = naive.replace(tzinfo=offset or site_zone)
    return aware.astimezone(UTC)


def combine_utc(
    da: str | None, tm: str | None, *, offset: str | None = None, site_zone: str | tzinfo = "UTC"
) -> datetime | None:
    """DA + TM (local) → UTC. A date without a time gives local midnight; a time without a date gives None."""
    d = parse_da(da)
    if d is None:
        return None
    t = parse_tm(tm) if tm else time(0)
    if t is None:
        t = time(0)
    tz = zone(site_zone) if isinstance(site_zone, str) else site_zone
    return _localize(datetime.combine(d, t), parse_offset(offset), tz)


def parse_dt_utc(value: str | None, *, offset: str | None = None, site_zone: str | tzinfo = "UTC") -> datetime | None:
    """DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX, any precision) → UTC."""
    if not value:
        return None
    m = _DT.match(str(value))
    if not m:
        return None
    try:
        naive = datetime(
            int(m[1]),
            int(m[2] or 1),
            int(m[3] or 1),
            int(m[4] or 0),
            int(m[5] or 0),
            min(int(m[6] or 0), 59),
            int((m[7] or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    tz = zone(site_zone) if isinstance(site_zone, str) else site_zone
    own = parse_offset(m[8]) if m[8] else None
    return _localize(naive, own or parse_offset(offset), tz)


def age_in_years(birth: date, on: date) -> int:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return max(years, 0)


_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)


def parse_age_string(value: str | None) -> int | None:
    """PatientAge AS ('045Y', '018M', '003W', '012D') → whole years."""
    if not value:
        return None
    m = _AGE.match(str(value))
    if not m:
        return None
    n, unit = int(m[1]), m[2].upper()
    days = {"D": 1, "W": 7, "M": 30.4375, "Y": 365.25}[unit]
    return int(n) if unit == "Y" else int(n * days // 365.25)
