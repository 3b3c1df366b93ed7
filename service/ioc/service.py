"""From what the caller asked to the JSON the IOC answers: defaults, scopes, the queries, the schema."""

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from service.errors import Unprocessable
from service.ioc import hotspots, queries, series
from service.ioc.schemas import AppliedFilters, Hotspots, IocFilters, Summary, TimeSeries, Window
from service.models.types import utcnow

DEFAULT_WINDOW_DAYS = 30


@dataclass(frozen=True)
class IocQuery:
    """The filters as the caller gave them; `None` means the default (the last 30 city days, until now)."""

    start: datetime | None = None
    end: datetime | None = None
    department: str | None = None
    jurisdiction: str | None = None
    category: str | None = None

    def cache_parts(self) -> dict[str, object]:
        # The default window slides with the clock: its key says "default", not an instant.
        return {
            name: ("default" if value is None else value.isoformat() if isinstance(value, datetime) else value)
            for name, value in asdict(self).items()
        }

    def applied(self) -> AppliedFilters:
        return AppliedFilters(department=self.department, jurisdiction=self.jurisdiction, category=self.category)


def database_namespace(database_url: str) -> str:
    """Cache keys of two databases sharing one Redis never meet."""
    return hashlib.sha256(database_url.encode()).hexdigest()[:12]


def default_start(end: datetime, zone: ZoneInfo) -> datetime:
    """The start of the city day DEFAULT_WINDOW_DAYS - 1 days before `end`'s: 30 whole days, today included.

    Starting at midnight keeps the window on the rollup's day boundaries (and on the time series' days).
    """
    first_day = end.astimezone(zone).date() - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    return datetime.combine(first_day, time(0), zone).astimezone(UTC)


async def resolve(session: AsyncSession, query: IocQuery, now: datetime, zone: ZoneInfo) -> IocFilters:
    end = query.end or now
    start = query.start or default_start(end, zone)
    if start >= end:
        raise Unprocessable("invalid_window", "from", "`from` must be before `to`.")
    jurisdictions = await queries.expand_jurisdiction(session, query.jurisdiction) if query.jurisdiction else None
    return IocFilters(
        start=start, end=end, department=query.department, jurisdictions=jurisdictions, category=query.category
    )


def _window(filters: IocFilters) -> Window:
    return Window(from_=filters.start, to=filters.end)


async def summary_json(
    session: AsyncSession, query: IocQuery, *, zone: ZoneInfo, sessions: async_sessionmaker | None = None
) -> bytes:
    """`sessions`, on PostgreSQL, lets the summary's reads run side by side on their own connections."""
    now = utcnow()
    filters = await resolve(session, query, now, zone)
    parallel = sessions if sessions is not None and queries.is_postgresql(session) else None
    figures = await queries.summary(session, filters, now, zone, parallel)
    body = Summary(window=_window(filters), filters=query.applied(), generated_at=now, **figures)
    return body.model_dump_json(by_alias=True).encode()


def check_bucket_count(filters: IocFilters, bucket: str) -> None:
    span = filters.end - filters.start
    count = span / timedelta(hours=1 if bucket == "hour" else 24)
    if count > series.MAX_BUCKETS:
        raise Unprocessable(
            "too_many_buckets", "bucket", f"{bucket} buckets over this window would be more than {series.MAX_BUCKETS}."
        )


async def timeseries_json(session: AsyncSession, query: IocQuery, *, metric: str, bucket: str, zone: ZoneInfo) -> bytes:
    now = utcnow()
    filters = await resolve(session, query, now, zone)
    check_bucket_count(filters, bucket)
    points = await series.timeseries(session, filters, metric=metric, bucket=bucket, now=now, zone=zone)
    body = TimeSeries(
        metric=metric, bucket=bucket, timezone=zone.key, window=_window(filters), filters=query.applied(), points=points
    )
    return body.model_dump_json(by_alias=True).encode()


async def hotspots_json(
    session: AsyncSession, query: IocQuery, *, resolution: int, limit: int, zone: ZoneInfo
) -> bytes:
    filters = await resolve(session, query, utcnow(), zone)
    total, features = await hotspots.hotspots(session, filters, resolution=resolution, limit=limit)
    body = Hotspots(
        resolution=resolution, window=_window(filters), filters=query.applied(), total_reports=total, features=features
    )
    return body.model_dump_json(by_alias=True).encode()
