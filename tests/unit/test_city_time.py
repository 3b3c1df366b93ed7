"""The one rule for dates and times in query parameters, without a server."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from service.city_time import end_of, parse, start_of

CITY = ZoneInfo("Asia/Ho_Chi_Minh")


def test_a_bare_date_is_the_whole_city_day():
    day = parse("2026-12-01")
    assert day == date(2026, 12, 1)
    assert start_of(day, CITY) == datetime(2026, 11, 30, 17, tzinfo=UTC)
    assert end_of(day, CITY) == datetime(2026, 12, 1, 17, tzinfo=UTC)


def test_a_time_without_offset_is_the_city_clock_and_with_one_that_instant():
    assert start_of(parse("2026-12-01T08:00:00"), CITY) == datetime(2026, 12, 1, 1, tzinfo=UTC)
    assert end_of(parse("2026-12-01T08:00:00"), CITY) == datetime(2026, 12, 1, 1, tzinfo=UTC)
    assert start_of(parse("2026-12-01T08:00:00Z"), CITY) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert start_of(parse("2026-12-01T08:00:00+09:00"), CITY) == datetime(2026, 11, 30, 23, tzinfo=UTC)
    assert start_of(None, CITY) is None and end_of(None, CITY) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "today",
        "1733011200",
        "20261201",
        "2026-02-30",
        "2026-12-01T25:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31",
        "1899-12-31",
    ],
)
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        parse(text)
