"""Finding the open report a new one repeats: same category, within a radius, in a recent window.

H3 cells narrow the search to a few index lookups; the exact distance decides. On PostgreSQL an
advisory lock per neighbourhood serialises the decision, so a burst of near-identical reports from
several workers still yields exactly one original.
"""

from dataclasses import dataclass
from datetime import timedelta

import h3
from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import Report
from service.pipeline.geo import haversine_m

# Statuses an original may have: processed and still being worked.
ORIGINAL_STATUSES = ("needs_triage", "assigned", "in_progress", "on_hold", "reopened")
LOCK_RESOLUTION = 6  # ~3 km cells: coarse enough that a 50 m neighbourhood rarely spans two


@dataclass(frozen=True)
class DuplicateMatch:
    original: Report
    distance_m: float


async def lock_neighbourhood(session: AsyncSession, cell: str) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the worker serialises processing in-process instead
    parents = sorted({h3.cell_to_parent(neighbour, LOCK_RESOLUTION) for neighbour in h3.grid_disk(cell, 1)})
    for parent in parents:  # always in the same order: no deadlocks between workers
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=int(parent, 16) & 0x7FFFFFFFFFFFFFFF)
        )


async def find_original(
    session: AsyncSession, report: Report, *, radius_m: float, window_days: float
) -> DuplicateMatch | None:
    if report.h3_cell is None or report.service_code is None or report.lat is None or report.lon is None:
        return None
    since = report.created_at - timedelta(days=window_days)
    # Nothing pending in this session (the report's own changes, its events) can change which other
    # report is the original: not flushing here leaves the job one UPDATE and one INSERT at its end.
    with session.no_autoflush:
        await lock_neighbourhood(session, report.h3_cell)
        candidates = (
            await session.exec(
                select(Report).where(
                    col(Report.h3_cell).in_(list(h3.grid_disk(report.h3_cell, 1))),
                    Report.service_code == report.service_code,
                    col(Report.status).in_(ORIGINAL_STATUSES),
                    col(Report.created_at) >= since,
                    Report.id != report.id,
                    col(Report.duplicate_of_id).is_(None),
                )
            )
        ).all()
    scored = [
        (haversine_m(report.lat, report.lon, c.lat, c.lon), c.created_at, str(c.id), c)
        for c in candidates
        if c.lat is not None and c.lon is not None
    ]
    within = sorted(item for item in scored if item[0] <= radius_m)
    if not within:
        return None
    distance, _, _, original = within[0]
    return DuplicateMatch(original=original, distance_m=round(distance, 1))
