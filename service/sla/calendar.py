"""Working time for SLA deadlines: which moments count, adding and measuring working hours.

Public holidays come from the maintained `holidays` package (country "VN"). What it
provides, checked against holidays 0.109:

- Tết: five statutory days off (Labour Code 2019, art. 112): lunar New Year's Eve and
  mùng 1-4. A statutory day that falls on Saturday moves to the working day before, one
  on Sunday to the working day after ("29 Tết", "Mùng năm/sáu Tết"), so in 2027
  (Tết = Sat 6/2) the break is Thu 4/2 - Wed 10/2.
- Giỗ Tổ Hùng Vương (10/3 lunar), 30/4, 1/5, 1/1; a weekend date gets a Monday off.
- Quốc khánh: 2/9 plus, since 2021, the day before or after it: 3/9 when 2/9 is a
  Monday, Thursday or Sunday, otherwise 1/9 (Thu 2/9/2027 -> Fri 3/9 off too).
- Ngày Văn hóa Việt Nam, 24/11, from 2026.
- Swapped days the government announced and the package recorded, both halves: the
  weekday off (e.g. Fri 2/5/2025, Mon 31/8/2026) and the Saturday worked in exchange
  (Sat 26/4/2025, Sat 22/8/2026, exposed as `weekend_workdays`).
Swaps announced after the installed release (a longer Tết paid for by a Saturday, a
city-level day off) are unknown to it: put the days off in `extra_holidays` and the
Saturdays worked in `extra_working_dates`, which override the package.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

DEFAULT_WORKING_PERIODS: tuple[tuple[time, time], ...] = (
    (time(7, 30), time(11, 30)),
    (time(13, 0), time(17, 0)),
)
# A calendar with no working day for a whole year is misconfigured; stop instead of
# searching forever for the next working moment.
_MAX_IDLE_DAYS = 366


@functools.lru_cache(maxsize=64)
def _statutory_days(country: str, year: int) -> tuple[frozenset[date], frozenset[date]]:
    """(days off, weekend days worked) that the `holidays` package records for one year."""
    # A make-up Saturday may be recorded under the next year's swap (27/12/2014 pays for
    # 2/1/2015), so load that year too and keep only this year's dates.
    table = holidays.country_holidays(country, years=(year, year + 1))
    days_off = frozenset(day for day in table if day.year == year)
    worked = frozenset(day for day in getattr(table, "weekend_workdays", ()) if day.year == year)
    return days_off, worked


def _as_date(value: date | str) -> date:
    # YAML gives dates for unquoted 2027-02-11 and strings for quoted ones; accept both.
    return value if isinstance(value, date) else date.fromisoformat(value)


def _as_time(value: time | str) -> time:
    return value if isinstance(value, time) else time.fromisoformat(value)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


@dataclass(frozen=True)
class WorkingCalendar:
    """Office hours of the receiving departments; every method is pure.

    Fields accept what a YAML settings file gives (ISO strings, lists) and are
    normalised to immutable values, so one calendar can be shared across requests.
    """

    timezone: str = "Asia/Ho_Chi_Minh"
    working_weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    working_periods: tuple[tuple[time, time], ...] = DEFAULT_WORKING_PERIODS
    extra_holidays: frozenset[date] = frozenset()  # e.g. compensatory days off
    extra_working_dates: frozenset[date] = frozenset()  # e.g. make-up Saturdays
    holiday_country: str | None = "VN"  # None: no statutory holidays at all

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # fail on a misspelt zone now, not at the first deadline
        weekdays = frozenset(int(day) for day in self.working_weekdays)
        if not weekdays <= set(range(7)):
            raise ValueError(f"working_weekdays must be 0 (Monday) to 6, got {sorted(weekdays)}")
        periods = tuple(sorted((_as_time(start), _as_time(end)) for start, end in self.working_periods))
        for (start, end), following in zip(periods, (*periods[1:], (time.max, time.max)), strict=True):
            if not start < end <= following[0]:
                raise ValueError(f"working periods must be ordered and not overlap: {periods}")
        extra_holidays = frozenset(map(_as_date, self.extra_holidays))
        extra_working = frozenset(map(_as_date, self.extra_working_dates))
        if clash := extra_holidays & extra_working:
            raise ValueError(f"dates both holiday and working day: {sorted(clash)}")
        object.__setattr__(self, "working_weekdays", weekdays)
        object.__setattr__(self, "working_periods", periods)
        object.__setattr__(self, "extra_holidays", extra_holidays)
        object.__setattr__(self, "extra_working_dates", extra_working)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def working_hours_per_day(self) -> float:
        """Length of a full working day, used to turn "5 working days" into hours."""
        seconds = sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start)).total_seconds()
            for start, end in self.working_periods
        )
        return seconds / 3600

    def is_working_day(self, day: date) -> bool:
        # Configured dates win over everything: they record decisions taken after the
        # library was released.
        if day in self.extra_working_dates:
            return True
        if day in self.extra_holidays:
            return False
        if self.holiday_country is None:
            return day.weekday() in self.working_weekdays
        days_off, weekend_days_worked = _statutory_days(self.holiday_country, day.year)
        if day in days_off:
            return False
        return day.weekday() in self.working_weekdays or day in weekend_days_worked

    def is_working_time(self, moment: datetime) -> bool:
        _require_aware(moment, "moment")
        local = moment.astimezone(self.zone)
        if not self.is_working_day(local.date()):
            return False
        return any(start <= local.time() < end for start, end in self.working_periods)

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The UTC moment `hours` of working time after `start`.

        A start outside working time counts from the next working moment; a deadline that
        uses up a period exactly lands on its end (Friday 17:00, not Monday 07:30).
        """
        _require_aware(start, "start")
        if not math.isfinite(hours) or hours < 0:
            raise ValueError(f"hours must be a finite number >= 0, got {hours}")
        remaining = timedelta(hours=hours)
        start = start.astimezone(UTC)
        for period_start, period_end in self._intervals_from(start):
            if period_end <= start:
                continue
            begin = max(period_start, start)
            if remaining <= period_end - begin:
                return begin + remaining
            remaining -= period_end - begin
        raise AssertionError("unreachable: _intervals_from never ends")

    def next_working_moment(self, moment: datetime) -> datetime:
        return self.add_working_hours(moment, 0)

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours in [start, end); negative when end is before start."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end < start:
            return -self.working_hours_between(end, start)
        total = timedelta()
        for period_start, period_end in self._intervals_from(start.astimezone(UTC)):
            if period_start >= end:
                break
            overlap = min(period_end, end) - max(period_start, start)
            total += max(overlap, timedelta())
        return total.total_seconds() / 3600

    def _periods_on(self, day: date) -> Iterable[tuple[datetime, datetime]]:
        return _periods_on(self, day)

    def _intervals_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working periods in UTC, day by day from the local day containing `moment`."""
        day = moment.astimezone(self.zone).date()
        idle_days = 0
        while True:
            periods = self._periods_on(day)
            idle_days = 0 if periods else idle_days + 1
            if idle_days > _MAX_IDLE_DAYS:
                raise ValueError(f"no working time in the {_MAX_IDLE_DAYS} days before {day}")
            yield from periods
            day += timedelta(days=1)


@functools.lru_cache(maxsize=4096)
def _periods_on(calendar: WorkingCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """A day's working periods in UTC: the same few days come up for every deadline set this week."""
    if not calendar.is_working_day(day):
        return ()
    zone = calendar.zone
    return tuple(
        (
            datetime.combine(day, start, zone).astimezone(UTC),
            datetime.combine(day, end, zone).astimezone(UTC),
        )
        for start, end in calendar.working_periods
    )
