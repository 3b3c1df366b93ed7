"""Dates and times in query strings: one rule for the whole API.

- With an offset (`2026-12-01T08:00:00Z`, `...+07:00`) a value is that instant.
- Without one (`2026-12-01T08:00:00`) it is a wall-clock time in the city (SLA_TIMEZONE): staff type
  the times they see on their own clocks.
- A bare date (`2026-12-01`) means the whole day in the city. As a lower bound (`created_from`,
  `from`, `start_date`, `since`) it is the day's first instant; as an upper bound (`created_to`, `to`,
  `end_date`) it includes the whole day, so `created_from=2026-12-01&created_to=2026-12-01` is that
  one day.

Routes declare such a parameter as `CityTime` (the raw value, validated: anything else is a 422) and
turn it into an aware UTC datetime with `start_of` or `end_of` and the city's zone (`CityZone`).
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, overload
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from pydantic import PlainValidator, TypeAdapter, WithJsonSchema

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# ISO 8601's extended form only: a bare number would otherwise pass as Unix seconds (20261120 → 1970).
_DATE_AND_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ].+")
_DATETIME = TypeAdapter(datetime)
# Far enough on both sides for any filter, and clear of the calendar's ends after shifting zones and
# adding the default windows (Python's datetime stops at year 9999).
EARLIEST, LATEST = datetime(1900, 1, 1), datetime(9000, 12, 31)

LOWER_BOUND_HELP = (
    "A date or datetime (ISO 8601). Without an offset it is city time (SLA_TIMEZONE); "
    "a bare date means the first instant of that day in the city."
)
UPPER_BOUND_HELP = (
    "A date or datetime (ISO 8601). Without an offset it is city time (SLA_TIMEZONE); "
    "a bare date includes that whole day in the city."
)


def parse(value: object) -> date | datetime:
    """A bare `date`, or a `datetime` (naive when no offset was given); ValueError for anything else."""
    if isinstance(value, date):  # datetime is a date too
        parsed = value
    else:
        text = str(value).strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                parsed = date.fromisoformat(text)
            elif _DATE_AND_TIME.fullmatch(text):
                parsed = _DATETIME.validate_python(text)
            else:
                raise ValueError(text)
        except ValueError as exc:
            raise ValueError(
                "expected a date (2026-12-01) or a datetime (2026-12-01T08:00:00, with or without an offset)"
            ) from exc
    moment = parsed if isinstance(parsed, datetime) else datetime.combine(parsed, time())
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError as exc:
            raise ValueError(f"must fall between {EARLIEST.year} and {LATEST.year}") from exc
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"must fall between {EARLIEST.year} and {LATEST.year}")
    return parsed


CityTime = Annotated[
    date | datetime,
    PlainValidator(parse),
    WithJsonSchema({"type": "string", "examples": ["2026-12-01", "2026-12-01T08:00:00", "2026-12-01T01:00:00Z"]}),
]


@overload
def start_of(value: date | datetime, zone: ZoneInfo) -> datetime: ...
@overload
def start_of(value: None, zone: ZoneInfo) -> None: ...
def start_of(value: date | datetime | None, zone: ZoneInfo) -> datetime | None:
    """As a lower bound: the instant itself, or a bare date's first instant in the city; in UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)


@overload
def end_of(value: date | datetime, zone: ZoneInfo) -> datetime: ...
@overload
def end_of(value: None, zone: ZoneInfo) -> None: ...
def end_of(value: date | datetime | None, zone: ZoneInfo) -> datetime | None:
    """As an exclusive upper bound: the instant itself, or the first instant after a bare date's day."""
    if value is not None and not isinstance(value, datetime):
        value = value + timedelta(days=1)
    return start_of(value, zone)


def city_zone(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.sla_timezone)


async def _request_city_zone(request: Request) -> ZoneInfo:
    # A dependency declared `def` would run in a worker thread on every request.
    return city_zone(request)


CityZone = Annotated[ZoneInfo, Depends(_request_city_zone)]
