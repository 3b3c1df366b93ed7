"""The IOC summary's queries: the same SQL on SQLite and PostgreSQL, with a faster PostgreSQL path
behind one function where PostgreSQL can do much better (percentiles).

Whole days are read from the daily rollup (service.ioc.rollup), the rest from the reports table,
always grouped in the database; Python only folds the few hundred grouped rows into the response.
"""

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import ARRAY, Float, and_, case, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from service.ioc import rollup
from service.ioc.schemas import IocFilters
from service.jurisdictions import service as jurisdiction_service
from service.models import Department, Jurisdiction, Report, ServiceCategory
from service.models.report import OPEN_STATUSES, REPORT_STATUSES

R = Report.__table__.c  # type: ignore[attr-defined]

RESOLVED_STATUSES = ("resolved", "closed")
# On hold, the SLA clock is paused (due_at moves later on resume): such a report is not overdue.
CLOCK_RUNNING_STATUSES = tuple(status for status in OPEN_STATUSES if status != "on_hold")
# (label, from days, to days): open reports by how long ago they came in.
AGE_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("<1d", 0, 1),
    ("1–3d", 1, 3),
    ("3–7d", 3, 7),
    ("7–30d", 7, 30),
    (">30d", 30, None),
)


def is_postgresql(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"  # type: ignore[union-attr]


# --- Conditions shared by every figure ------------------------------------------------------------


def scope_conditions(filters: IocFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.department:
        conditions.append(R.department_code == filters.department)
    if filters.jurisdictions:
        conditions.append(R.jurisdiction_code.in_(filters.jurisdictions))
    if filters.category:
        conditions.append(R.service_code == filters.category)
    return conditions


def window_conditions(filters: IocFilters) -> list[ColumnElement[bool]]:
    return [R.created_at >= filters.start, R.created_at < filters.end, *scope_conditions(filters)]


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """Open, the clock running, and past the due time."""
    return and_(R.status.in_(CLOCK_RUNNING_STATUSES), R.due_at.is_not(None), R.due_at < now)


def resolved_condition() -> ColumnElement[bool]:
    return and_(R.status.in_(RESOLVED_STATUSES), R.resolved_at.is_not(None))


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def expand_jurisdiction(session: AsyncSession, code: str) -> tuple[str, ...]:
    """A ward stands for itself; a parent (a district, the city) for itself and everything under it."""
    return await jurisdiction_service.expand(session, code)


# --- Percentiles: percentile_cont on PostgreSQL, the same interpolation in Python elsewhere -------------


@dataclass(frozen=True)
class DurationMeasure:
    """Seconds from `start` to `end`, over the rows where `condition` holds."""

    name: str
    start: Any
    end: Any
    condition: ColumnElement[bool]


@dataclass(frozen=True)
class DurationResult:
    count: int
    percentiles: dict[float, float | None]


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks."""
    if not sorted_values:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    position = fraction * (len(sorted_values) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    low_value, high_value = sorted_values[lower], sorted_values[upper]
    return low_value + (high_value - low_value) * (position - lower)


async def duration_percentiles(
    session: AsyncSession,
    measures: Sequence[DurationMeasure],
    where: Sequence[ColumnElement[bool]],
    fractions: Sequence[float] = (0.5, 0.9),
) -> dict[str, DurationResult]:
    """Percentiles of each measure's duration in seconds, over the rows matching `where`."""
    if is_postgresql(session):
        return await _duration_percentiles_postgresql(session, measures, where, fractions)
    return await _duration_percentiles_python(session, measures, where, fractions)


async def _duration_percentiles_postgresql(session, measures, where, fractions) -> dict[str, DurationResult]:
    wanted = cast(array([literal(float(f), Float) for f in fractions]), ARRAY(Float))
    columns = []
    for measure in measures:
        # date_part gives double precision; EXTRACT gives numeric since PostgreSQL 14, slower to sort.
        seconds = func.date_part("epoch", measure.end - measure.start)
        columns.append(func.percentile_cont(wanted).within_group(seconds).filter(measure.condition))
        columns.append(func.count().filter(measure.condition))
    row = (await session.execute(select(*columns).where(*where))).one()
    results = {}
    for index, measure in enumerate(measures):
        values, count = row[2 * index], row[2 * index + 1]
        results[measure.name] = DurationResult(
            count=count,
            percentiles={
                f: (float(v) if v is not None else None)
                for f, v in zip(fractions, values or [None] * len(fractions), strict=True)
            },
        )
    return results


async def _duration_percentiles_python(session, measures, where, fractions) -> dict[str, DurationResult]:
    results = {}
    for measure in measures:
        rows = (await session.execute(select(measure.start, measure.end).where(*where, measure.condition))).all()
        seconds = sorted((end - start).total_seconds() for start, end in rows)
        results[measure.name] = DurationResult(
            count=len(seconds), percentiles={f: percentile_cont(seconds, f) for f in fractions}
        )
    return results


# --- The summary ------------------------------------------------------------------------------------
#
# Flow figures come from the daily rollup for the whole city days inside the window, and from the
# reports table for the part-days at its edges. Everything that depends on the clock (overdue, the
# backlog's ages) and the percentiles are read live.


def split_window(
    start: datetime, end: datetime, zone: ZoneInfo
) -> tuple[tuple[date, date] | None, list[tuple[datetime, datetime]]]:
    """[start, end) as whole city days [first, end_day) for the rollup, and the part-days around them."""
    first = rollup.local_day(start, zone)
    if rollup.day_start(first, zone) < start:
        first += timedelta(days=1)
    end_day = rollup.local_day(end, zone)
    if first >= end_day:
        return None, [(start, end)]
    edges = [(start, rollup.day_start(first, zone)), (rollup.day_start(end_day, zone), end)]
    return (first, end_day), [(low, high) for low, high in edges if low < high]


def _in_ranges(ranges: list[tuple[datetime, datetime]]) -> ColumnElement[bool]:
    return or_(*[and_(R.created_at >= low, R.created_at < high) for low, high in ranges])


def _rollup_scope(filters: IocFilters) -> list[ColumnElement[bool]]:
    return rollup.scope_on_rollup(filters.department, filters.jurisdictions, filters.category)


RESPONSE_MEASURES = (
    DurationMeasure("acknowledge", R.created_at, R.acknowledged_at, R.acknowledged_at.is_not(None)),
    DurationMeasure("resolve", R.created_at, R.resolved_at, resolved_condition()),
)


def _from_values(values: np.ndarray, fractions: Sequence[float] = (0.5, 0.9)) -> DurationResult:
    if not len(values):
        return DurationResult(count=0, percentiles=dict.fromkeys(fractions))
    # numpy's default "linear" method is percentile_cont's interpolation.
    found = np.percentile(values, [100 * f for f in fractions])
    return DurationResult(count=len(values), percentiles={f: float(v) for f, v in zip(fractions, found, strict=True)})


@dataclass
class _Flow:
    """Flow rows (dimensions, then rollup.FIGURES) and response times of part of the window."""

    rows: list[Any]
    acknowledge: np.ndarray = field(default_factory=lambda: np.empty(0))
    resolve: np.ndarray = field(default_factory=lambda: np.empty(0))
    # Set when the window has no whole day: percentile_cont answered for all of it.
    percentiles: dict[str, DurationResult] | None = None


async def _whole_days(session: AsyncSession, filters: IocFilters, days: tuple[date, date]) -> _Flow:
    rows, acknowledge, resolve = await rollup.rollup_by_dimensions(session, days[0], days[1], _rollup_scope(filters))
    return _Flow(rows, acknowledge, resolve)


async def _part_days(session: AsyncSession, filters: IocFilters, edges: list[tuple[datetime, datetime]]) -> _Flow:
    where = [_in_ranges(edges), *scope_conditions(filters)]
    rows = list((await session.execute(rollup.flow_by_dimensions(where))).all())
    times = await rollup.durations_by_dimensions(session, where)
    return _Flow(
        rows,
        np.asarray([value for acknowledge, _ in times.values() for value in acknowledge], dtype="<f8"),
        np.asarray([value for _, resolve in times.values() for value in resolve], dtype="<f8"),
    )


async def _short_window(session: AsyncSession, filters: IocFilters) -> _Flow:
    """A window without a whole city day: everything from the reports table, percentile_cont included."""
    where = window_conditions(filters)
    rows = list((await session.execute(rollup.flow_by_dimensions(where))).all())
    return _Flow(rows, percentiles=await duration_percentiles(session, RESPONSE_MEASURES, where))


def _flow_parts(filters: IocFilters, zone: ZoneInfo) -> list:
    days, edges = split_window(filters.start, filters.end, zone)
    if days is None:
        return [lambda own: _short_window(own, filters)]
    return [lambda own: _whole_days(own, filters, days)] + (
        [lambda own: _part_days(own, filters, edges)] if edges else []
    )


def _response_times(parts: list[_Flow]) -> dict[str, DurationResult]:
    if len(parts) == 1 and parts[0].percentiles is not None:
        return parts[0].percentiles
    return {
        "acknowledge": _from_values(np.concatenate([part.acknowledge for part in parts])),
        "resolve": _from_values(np.concatenate([part.resolve for part in parts])),
    }


async def response_times(session: AsyncSession, filters: IocFilters, zone: ZoneInfo) -> dict[str, DurationResult]:
    """Percentiles of the seconds to acknowledge and to resolve, over the window's reports.

    Whole days come from the rollup's stored response times and part-days from the reports table;
    a window without a whole day is left entirely to `duration_percentiles` (percentile_cont).
    """
    return _response_times([await part(session) for part in _flow_parts(filters, zone)])


async def _open_rows(session: AsyncSession, filters: IocFilters, now: datetime) -> list[Any]:
    """The open reports now (the partial index holds exactly these), per (category, ward, department)."""
    overdue = overdue_condition(now)
    in_window = and_(R.created_at >= filters.start, R.created_at < filters.end)
    younger_than = [_count_if(R.created_at > now - timedelta(days=low)) for _, low, _ in AGE_BUCKETS[1:]]
    statement = (
        select(
            R.service_code,
            R.jurisdiction_code,
            R.department_code,
            func.count(),
            _count_if(overdue),
            _count_if(and_(in_window, overdue)),
            *younger_than,
        )
        .where(R.status.in_(OPEN_STATUSES), *scope_conditions(filters))
        .group_by(R.service_code, R.jurisdiction_code, R.department_code)
    )
    return list((await session.execute(statement)).all())


_NAMES_SECONDS = 60.0
_names_cache: dict[str, tuple[float, tuple]] = {}


async def _names(session: AsyncSession) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Code -> Vietnamese name of departments, categories and jurisdictions (the catalogue's own data).

    Kept a minute per process: the catalogue changes a few times a year, the summary many times a minute.
    """
    key = str(session.bind.url)  # type: ignore[union-attr]
    cached = _names_cache.get(key)
    if cached and time.monotonic() - cached[0] < _NAMES_SECONDS:
        return cached[1]

    async def pairs(code, name) -> dict[str, str]:
        return dict((await session.execute(select(code, name))).all())

    names = (
        await pairs(col(Department.code), col(Department.name_vi)),
        await pairs(col(ServiceCategory.code), col(ServiceCategory.name_vi)),
        await pairs(col(Jurisdiction.code), col(Jurisdiction.name)),
    )
    _names_cache[key] = (time.monotonic(), names)
    return names


_FIGURE_INDEX = {name: index for index, name in enumerate(rollup.FIGURES)}


class _Figures:
    """rollup.FIGURES as one vector: adding a row is one numpy add, reading is by name."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = np.zeros(len(rollup.FIGURES), dtype=np.int64)

    def __getitem__(self, name: str) -> int:
        return int(self.values[_FIGURE_INDEX[name]])


@dataclass
class _Tally:
    flow: _Figures = field(default_factory=_Figures)
    open: int = 0
    overdue: int = 0
    window_overdue: int = 0

    def pct_on_time(self) -> float | None:
        return _pct(self.flow["resolved_on_time"], self.flow["resolved_with_due"] + self.window_overdue)

    def acknowledgement(self) -> dict:
        on_time, measured = self.flow["acknowledged_on_time"], self.flow["acknowledge_measured"]
        return {
            "compliance_pct": _pct(on_time, measured),
            "on_time": on_time,
            "late": measured - on_time,
            "measured": measured,
        }


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def _breakdown(code: str | None, name: str | None, tally: _Tally) -> dict:
    return {
        "code": code,
        "name": name,
        "received": tally.flow["received"],
        "resolved": tally.flow["resolved_total"],
        "open": tally.open,
        "overdue": tally.overdue,
    }


def _department(code: str | None, name: str | None, tally: _Tally) -> dict:
    ratings = tally.flow["rating_count"]
    return {
        **_breakdown(code, name, tally),
        "on_time_pct": tally.pct_on_time(),
        "acknowledge_on_time_pct": _pct(tally.flow["acknowledged_on_time"], tally.flow["acknowledge_measured"]),
        "acknowledged_on_time": tally.flow["acknowledged_on_time"],
        "acknowledge_measured": tally.flow["acknowledge_measured"],
        "transfers": tally.flow["transfers"],
        "average_rating": round(tally.flow["rating_sum"] / ratings, 2) if ratings else None,
        "ratings": ratings,
    }


def _listed(tallies: dict[str | None, _Tally], names: dict[str, str], shape) -> list[dict]:
    out = [shape(code, names.get(code) if code else None, tally) for code, tally in tallies.items()]
    out.sort(key=lambda item: (-item["received"], -item["open"], item["code"] or "~"))
    return out


async def _gathered(session: AsyncSession, sessions: async_sessionmaker | None, parts: list) -> list:
    """Run each part(session): one after the other on `session`, or the first on `session` and each
    other on its own connection, side by side."""
    if sessions is None:
        return [await part(session) for part in parts]

    async def alone(part):
        async with sessions() as own:
            return await part(own)

    return await asyncio.gather(parts[0](session), *(alone(part) for part in parts[1:]))


async def summary(
    session: AsyncSession,
    filters: IocFilters,
    now: datetime,
    zone: ZoneInfo,
    sessions: async_sessionmaker | None = None,
) -> dict:
    """Every figure of GET /v1/ioc/summary, as a dict shaped like schemas.Summary.

    With a session factory, the reads (whole days, part-days, open reports) run side by side.
    """
    departments, categories, jurisdictions = await _names(session)
    *flows, open_rows = await _gathered(
        session, sessions, [*_flow_parts(filters, zone), lambda own: _open_rows(own, filters, now)]
    )
    flow_rows = [row for part in flows for row in part.rows]
    durations = _response_times(flows)

    total = _Tally()
    by: dict[str, dict[str | None, _Tally]] = {
        key: defaultdict(_Tally) for key in ("category", "jurisdiction", "department")
    }
    for row in flow_rows:
        codes = [code or None for code in row[:3]]  # the rollup keeps "" for none
        figures = np.array([value or 0 for value in row[3:]], dtype=np.int64)
        for tally in (total, by["category"][codes[0]], by["jurisdiction"][codes[1]], by["department"][codes[2]]):
            tally.flow.values += figures

    ages = [0] * len(AGE_BUCKETS)
    for category, jurisdiction, department, open_count, overdue, window_overdue, *younger in open_rows:
        for tally in (total, by["category"][category], by["jurisdiction"][jurisdiction], by["department"][department]):
            tally.open += int(open_count)
            tally.overdue += int(overdue or 0)
            tally.window_overdue += int(window_overdue or 0)
        cumulative = [int(value or 0) for value in younger] + [int(open_count)]
        for index, value in enumerate(cumulative):
            ages[index] += value - (cumulative[index - 1] if index else 0)

    def duration(name: str) -> dict:
        result = durations[name]
        return {
            "count": result.count,
            "median_seconds": result.percentiles[0.5],
            "p90_seconds": result.percentiles[0.9],
        }

    flow = total.flow
    measured = flow["resolved_with_due"] + total.window_overdue
    return {
        "counts": {
            "received": flow["received"],
            "awaiting_processing": flow["status_received"],
            **{status: flow[f"status_{status}"] for status in REPORT_STATUSES if status != "received"},
            "overdue": total.window_overdue,
        },
        "backlog": {
            "open": total.open,
            "overdue": total.overdue,
            "by_age": [
                {"label": label, "min_days": low, "max_days": high, "count": ages[index]}
                for index, (label, low, high) in enumerate(AGE_BUCKETS)
            ],
        },
        "sla": {
            "compliance_pct": _pct(flow["resolved_on_time"], measured),
            "on_time": flow["resolved_on_time"],
            "late": measured - flow["resolved_on_time"],
            "measured": measured,
        },
        "acknowledgement": total.acknowledgement(),
        "time_to_acknowledge": duration("acknowledge"),
        "time_to_resolve": duration("resolve"),
        "duplicate_share_pct": _pct(flow["status_duplicate"], flow["received"]),
        "by_category": _listed(by["category"], categories, _breakdown),
        "by_jurisdiction": _listed(by["jurisdiction"], jurisdictions, _breakdown),
        "departments": _listed(by["department"], departments, _department),
    }
