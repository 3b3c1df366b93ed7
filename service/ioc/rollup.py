"""The daily rollup behind the IOC summary: rebuilt from the reports table, then kept up to date.

A report counts on the city-local day it came in. Whenever reports change, their `updated_at`
moves; every few seconds `refresh` recomputes the days of the reports changed since its watermark
(less an overlap, so a transaction that committed a little late is not missed); once a day it also
recomputes the last HEAL_DAYS days, which heals anything else there (a deleted report, a transaction
slower than the overlap, a report written with an old updated_at). Recomputing a day is
idempotent (delete, insert from one GROUP BY, attach the response times), so running it twice does no harm.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import sqlmodel
from sqlalchemy import LargeBinary, and_, bindparam, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import IocDailyRollup, IocRollupState, Report
from service.models.ioc import ROLLUP_STATUSES
from service.models.types import utcnow

log = logging.getLogger(__name__)

R = Report.__table__.c  # type: ignore[attr-defined]
ROLLUP = IocDailyRollup.__table__  # type: ignore[attr-defined]
STATE_NAME = "daily"
# Longer than any transaction that writes reports: a row committed late still gets seen.
OVERLAP = timedelta(seconds=30)
HEAL_EVERY = timedelta(days=1)
HEAL_DAYS = 35
DIMENSIONS = ("service_code", "jurisdiction_code", "department_code")
DURATIONS = ("acknowledge_seconds", "resolve_seconds")
# The additive columns, in table order.
FIGURES = tuple(column.name for column in ROLLUP.columns if column.name not in ("day", *DIMENSIONS, *DURATIONS))
NONE_CODE = ""


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


@cache  # the same expressions serve every statement; building them is not free
def flow_columns() -> tuple[ColumnElement, ...]:
    """The rollup's figures, as aggregates over report rows (the same for a day, or a window's edges)."""
    from service.ioc.queries import RESOLVED_STATUSES  # the one definition of "resolved"

    resolved = R.status.in_(RESOLVED_STATUSES) & R.resolved_at.is_not(None)
    with_due = resolved & R.due_at.is_not(None)
    # Known: acknowledged, or marked by the sweep as not acknowledged in time (a sure miss).
    acknowledge_known = R.acknowledge_due_at.is_not(None) & (
        R.acknowledged_at.is_not(None) | R.acknowledge_overdue_at.is_not(None)
    )
    figures: dict[str, ColumnElement] = {
        "received": func.count(),
        **{f"status_{status}": _count_if(R.status == status) for status in ROLLUP_STATUSES},
        "resolved_total": _count_if(resolved),
        "resolved_with_due": _count_if(with_due),
        "resolved_on_time": _count_if(with_due & (R.resolved_at <= R.due_at)),
        "transfers": func.coalesce(func.sum(R.transfer_count), 0),
        "rating_sum": func.coalesce(func.sum(R.citizen_rating), 0),
        "rating_count": func.count(R.citizen_rating),
        "acknowledge_measured": _count_if(acknowledge_known),
        "acknowledged_on_time": _count_if(acknowledge_known & (R.acknowledged_at <= R.acknowledge_due_at)),
    }
    return tuple(figures[name].label(name) for name in FIGURES)


@cache
def dimension_columns() -> tuple[ColumnElement, ...]:
    return tuple(func.coalesce(R[name], NONE_CODE).label(name) for name in DIMENSIONS)


def flow_by_dimensions(where: Sequence[ColumnElement[bool]]):
    """SELECT dimensions, figures FROM reports WHERE … GROUP BY dimensions."""
    dimensions = dimension_columns()
    return select(*dimensions, *flow_columns()).where(*where).group_by(*dimensions)


def pack(values: Sequence[float]) -> bytes | None:
    return np.asarray(values, dtype="<f8").tobytes() if len(values) else None


def unpack(blobs: Iterable[bytes | None]) -> np.ndarray:
    arrays = [np.frombuffer(blob, dtype="<f8") for blob in blobs if blob]
    return np.concatenate(arrays) if arrays else np.empty(0)


async def durations_by_dimensions(
    session: AsyncSession, where: Sequence[ColumnElement[bool]]
) -> dict[tuple[str, ...], tuple[list[float], list[float]]]:
    """Seconds to acknowledge and to resolve of each report matching `where`, per dimensions.

    PostgreSQL subtracts the timestamps itself; SQLite's text timestamps are subtracted in Python.
    """
    from service.ioc.queries import RESOLVED_STATUSES, is_postgresql, resolved_condition

    out: dict[tuple[str, ...], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    some_time = or_(R.acknowledged_at.is_not(None), R.resolved_at.is_not(None))
    if is_postgresql(session):
        acknowledge = func.date_part("epoch", R.acknowledged_at - R.created_at)
        resolve = case((resolved_condition(), func.date_part("epoch", R.resolved_at - R.created_at)))
        statement = select(*dimension_columns(), acknowledge, resolve).where(*where, some_time)
        for *codes, acknowledge_seconds, resolve_seconds in (await session.execute(statement)).all():
            acknowledged, resolved = out[tuple(codes)]
            if acknowledge_seconds is not None:
                acknowledged.append(acknowledge_seconds)
            if resolve_seconds is not None:
                resolved.append(resolve_seconds)
        return out
    statement = select(*dimension_columns(), R.created_at, R.acknowledged_at, R.resolved_at, R.status).where(
        *where, some_time
    )
    for *codes, created_at, acknowledged_at, resolved_at, status in (await session.execute(statement)).all():
        acknowledged, resolved = out[tuple(codes)]
        if acknowledged_at is not None:
            acknowledged.append((acknowledged_at - created_at).total_seconds())
        if resolved_at is not None and status in RESOLVED_STATUSES:
            resolved.append((resolved_at - created_at).total_seconds())
    return out


async def recompute_day(session: AsyncSession, day: date, zone: ZoneInfo) -> None:
    start, end = day_start(day, zone), day_start(day + timedelta(days=1), zone)
    that_day = [R.created_at >= start, R.created_at < end]
    await session.execute(delete(ROLLUP).where(ROLLUP.c.day == day))
    source = flow_by_dimensions(that_day)
    rows = select(literal(day, ROLLUP.c.day.type).label("day"), *source.subquery().c)
    await session.execute(insert(ROLLUP).from_select(["day", *DIMENSIONS, *FIGURES], rows))
    durations = await durations_by_dimensions(session, that_day)
    if durations:
        key = and_(
            ROLLUP.c.day == bindparam("k_day"), *[ROLLUP.c[name] == bindparam(f"k_{name}") for name in DIMENSIONS]
        )
        statement = (
            update(ROLLUP)
            .where(key)
            .values(acknowledge_seconds=bindparam("v_acknowledge"), resolve_seconds=bindparam("v_resolve"))
        )
        await session.execute(
            statement,
            [
                {
                    "k_day": day,
                    **{f"k_{name}": code for name, code in zip(DIMENSIONS, codes, strict=True)},
                    "v_acknowledge": pack(acknowledge),
                    "v_resolve": pack(resolve),
                }
                for codes, (acknowledge, resolve) in durations.items()
            ],
        )


async def _state(session: AsyncSession) -> IocRollupState | None:
    # FOR UPDATE on PostgreSQL: two workers never refresh at once (SQLite has one writer anyway).
    statement = sqlmodel.select(IocRollupState).where(IocRollupState.name == STATE_NAME).with_for_update()
    return (await session.exec(statement)).first()


async def rebuild(session: AsyncSession, zone: ZoneInfo, now: datetime | None = None) -> int:
    """Recompute every day from scratch; returns the number of days. Flushes, never commits."""
    now = now or utcnow()
    state = await _state(session)
    await session.execute(delete(ROLLUP))
    first, last = (await session.execute(select(func.min(R.created_at), func.max(R.created_at)))).one()
    days = 0
    if first is not None:
        day, last_day = local_day(first, zone), local_day(last, zone)
        while day <= last_day:
            await recompute_day(session, day, zone)
            day += timedelta(days=1)
            days += 1
    if state is None:
        state = IocRollupState(name=STATE_NAME, watermark=now, rebuilt_at=now)
    state.watermark = state.rebuilt_at = now
    session.add(state)
    await session.flush()
    log.info("ioc rollup rebuilt: %d days", days)
    return days


async def refresh(session: AsyncSession, zone: ZoneInfo, now: datetime | None = None) -> int:
    """Bring the rollup up to date; returns the number of days recomputed. Flushes, never commits."""
    now = now or utcnow()
    state = await _state(session)
    if state is None:
        return await rebuild(session, zone, now)
    changed = await session.execute(select(R.created_at).where(R.updated_at >= state.watermark - OVERLAP).distinct())
    days = {local_day(created_at, zone) for (created_at,) in changed.all()}
    if now - state.rebuilt_at >= HEAL_EVERY:
        today = local_day(now, zone)
        days |= {today - timedelta(days=back) for back in range(HEAL_DAYS)}
        state.rebuilt_at = now
    for day in sorted(days):
        await recompute_day(session, day, zone)
    state.watermark = now
    session.add(state)
    await session.flush()
    return len(days)


async def rollup_by_dimensions(
    session: AsyncSession, first_day: date, end_day: date, scope: Sequence[ColumnElement[bool]]
) -> tuple[list, np.ndarray, np.ndarray]:
    """Figures summed over the days [first_day, end_day) per (category, ward, department), and every
    stored response time (acknowledge, resolve) of those days."""
    from service.ioc.queries import is_postgresql

    dimensions = [ROLLUP.c[name] for name in DIMENSIONS]
    sums = [func.sum(ROLLUP.c[name]).label(name) for name in FIGURES]
    where = [ROLLUP.c.day >= first_day, ROLLUP.c.day < end_day, *scope]
    if is_postgresql(session):
        # The response times concatenated by the database: a buffer per group, not one per day.
        nothing = literal(b"", LargeBinary)
        times = [func.string_agg(ROLLUP.c[name], nothing) for name in DURATIONS]
        rows = (await session.execute(select(*dimensions, *sums, *times).where(*where).group_by(*dimensions))).all()
        width = len(DIMENSIONS) + len(FIGURES)
        return [row[:width] for row in rows], unpack(row[width] for row in rows), unpack(row[width + 1] for row in rows)
    rows = (await session.execute(select(*dimensions, *sums).where(*where).group_by(*dimensions))).all()
    time_rows = (await session.execute(select(*[ROLLUP.c[name] for name in DURATIONS]).where(*where))).all()
    return list(rows), unpack(row[0] for row in time_rows), unpack(row[1] for row in time_rows)


def scope_on_rollup(department: str | None, jurisdictions: Sequence[str] | None, category: str | None) -> list:
    conditions = []
    if department:
        conditions.append(ROLLUP.c.department_code == department)
    if jurisdictions:
        conditions.append(ROLLUP.c.jurisdiction_code.in_(jurisdictions))
    if category:
        conditions.append(ROLLUP.c.service_code == category)
    return conditions
