"""Counts per hour or per city day: reports received, resolved, or whose deadline passed unmet."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel.ext.asyncio.session import AsyncSession

from service.ioc.queries import RESOLVED_STATUSES, R, is_postgresql, scope_conditions
from service.ioc.schemas import IocFilters

MAX_BUCKETS = 2000


def _metric_column_and_conditions(metric: str, now: datetime) -> tuple[Any, list[ColumnElement[bool]]]:
    if metric == "received":
        return R.created_at, []
    if metric == "resolved":
        return R.resolved_at, [R.status.in_(RESOLVED_STATUSES)]
    if metric == "overdue":
        # A deadline that passed unmet: by the due time the report was not resolved (and still counts).
        missed = or_(R.resolved_at.is_(None), R.resolved_at > R.due_at)
        return R.due_at, [R.due_at < now, R.status.not_in(("rejected", "duplicate", "on_hold")), missed]
    raise ValueError(f"unknown metric {metric!r}")


def bucket_starts(start: datetime, end: datetime, bucket: str, zone: ZoneInfo) -> list[datetime]:
    """Every bucket that overlaps [start, end), as UTC instants; day buckets are local days."""
    starts: list[datetime] = []
    if bucket == "hour":
        current = truncate(start, "hour", zone)
        while current < end:
            starts.append(current)
            current += timedelta(hours=1)
            if len(starts) > MAX_BUCKETS:
                break
        return starts
    day = start.astimezone(zone).date()
    while True:
        current = datetime.combine(day, time(0), zone).astimezone(UTC)
        if current >= end or len(starts) > MAX_BUCKETS:
            return starts
        starts.append(current)
        day += timedelta(days=1)


def truncate(moment: datetime, bucket: str, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    if bucket == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    else:
        local = datetime.combine(local.date(), time(0), zone)
    return local.astimezone(UTC)


async def bucket_counts(
    session: AsyncSession, column: Any, where: Sequence[ColumnElement[bool]], bucket: str, zone: ZoneInfo
) -> dict[datetime, int]:
    """Rows per local hour or day of `column`: date_trunc on PostgreSQL, Python on SQLite."""
    if is_postgresql(session):
        local = func.date_trunc(bucket, func.timezone(zone.key, column))
        rows = (await session.execute(select(local, func.count()).where(*where).group_by(local))).all()
        return {naive.replace(tzinfo=zone).astimezone(UTC): count for naive, count in rows}
    counts: dict[datetime, int] = defaultdict(int)
    for (moment,) in (await session.execute(select(column).where(*where))).all():
        counts[truncate(moment, bucket, zone)] += 1
    return counts


async def timeseries(
    session: AsyncSession, filters: IocFilters, *, metric: str, bucket: str, now: datetime, zone: ZoneInfo
) -> list[dict]:
    column, conditions = _metric_column_and_conditions(metric, now)
    where = [column >= filters.start, column < filters.end, *conditions, *scope_conditions(filters)]
    counts = await bucket_counts(session, column, where, bucket, zone)
    return [
        {"start": start, "count": counts.get(start, 0)}
        for start in bucket_starts(filters.start, filters.end, bucket, zone)
    ]
