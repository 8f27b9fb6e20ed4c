from datetime import UTC, date, datetime

import pytest

from edge_ingest.dicomtime import combine_utc, parse_age_string, parse_dt_utc, parse_offset, parse_tm


def test_site_zone_applies_when_no_offset() -> None:
    assert combine_utc("20240301", "101500", site_zone="Asia/Shanghai") == datetime(2024, 3, 1, 2, 15, tzinfo=UTC)


def test_timezone_offset_attribute_beats_site_zone() -> None:
    got = combine_utc("20240301", "101500", offset="-0500", site_zone="Asia/Shanghai")
    assert got == datetime(2024, 3, 1, 15, 15, tzinfo=UTC)


def test_dt_own_suffix_beats_attribute() -> None:
    got = parse_dt_utc("20240301101500.250000+0100", offset="+0800", site_zone="UTC")
    assert got == datetime(2024, 3, 1, 9, 15, 0, 250000, tzinfo=UTC)


def test_daylight_saving_is_per_instant() -> None:
    # London: GMT in January, BST (UTC+1) in July
    assert combine_utc("20240115", "120000", site_zone="Europe/London") == datetime(2024, 1, 15, 12, tzinfo=UTC)
    assert combine_utc("20240715", "120000", site_zone="Europe/London") == datetime(2024, 7, 15, 11, tzinfo=UTC)


def test_midnight_crossing_in_shanghai_lands_on_previous_utc_day() -> None:
    assert combine_utc("20240302", "003000", site_zone="Asia/Shanghai") == datetime(2024, 3, 1, 16, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tm", "expected"),
    [
        ("10", (10, 0, 0, 0)),
        ("1015", (10, 15, 0, 0)),
        ("101530.5", (10, 15, 30, 500000)),
        ("10:15:30", (10, 15, 30, 0)),
    ],
)
def test_tm_precisions_and_legacy_colons(tm: str, expected: tuple[int, int, int, int]) -> None:
    t = parse_tm(tm)
    assert t is not None and (t.hour, t.minute, t.second, t.microsecond) == expected


@pytest.mark.parametrize("bad", ["", "99", "1099", "abc", "25:00"])
def test_bad_times_are_none_not_errors(bad: str) -> None:
    assert parse_tm(bad) is None or (bad == "99" and parse_tm(bad) is None)


def test_bad_offset_is_ignored() -> None:
    assert parse_offset("+2500") is None and parse_offset("0800") is None and parse_offset("+0530") is not None


@pytest.mark.parametrize(("age", "years"), [("045Y", 45), ("018M", 1), ("006M", 0), ("003W", 0), ("120D", 0)])
def test_age_strings(age: str, years: int) -> None:
    assert parse_age_string(age) == years


def test_dt_with_reduced_precision() -> None:
    assert parse_dt_utc("2024", site_zone="UTC") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_dt_utc("garbage", site_zone="UTC") is None
    assert date(2024, 1, 1) == parse_dt_utc("20240101", site_zone="UTC").date()  # type: ignore[union-attr]
