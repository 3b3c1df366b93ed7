"""Finding the open report a new one repeats: same category, within a radius, in a recent window.

H3 cells narrow the search to a few index lookups; the exact distance decides. A batch of reports
asks once: it locks every neighbourhood it touches, reads every candidate original around them in one
query, then decides report by report in the order they came, each report that becomes an original
joining the candidates of those after it. On PostgreSQL the advisory lock per neighbourhood
serialises the decision across workers, so a burst of near-identical reports, in one batch or in
several, still yields exactly one original.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import h3
from sqlalchemy import select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import Report, ReportRow
from service.pipeline.geo import haversine_m

# Statuses an original may have: processed and still being worked.
ORIGINAL_STATUSES = ("needs_triage", "assigned", "in_progress", "on_hold", "reopened")
LOCK_RESOLUTION = 6  # ~3 km cells: coarse enough that a 50 m neighbourhood rarely spans two


@dataclass(frozen=True)
class Original:
    """What a duplicate needs to know of the report it repeats."""

    id: UUID
    tracking_code: str
    department_code: str | None
    service_code: str
    h3_cell: str
    lat: float
    lon: float
    created_at: datetime


@dataclass(frozen=True)
class DuplicateMatch:
    original: Original
    distance_m: float


def searchable(report: ReportRow) -> bool:
    return None not in (report.h3_cell, report.service_code, report.lat, report.lon)


def lock_keys(cells: Iterable[str]) -> list[int]:
    """The advisory lock keys of these cells' neighbourhoods, in the one order every worker takes them."""
    parents = {h3.cell_to_parent(neighbour, LOCK_RESOLUTION) for cell in cells for neighbour in h3.grid_disk(cell, 1)}
    return sorted(int(parent, 16) & 0x7FFFFFFFFFFFFFFF for parent in parents)


async def lock_neighbourhoods(session: AsyncSession, cells: Iterable[str]) -> None:
    """Until the transaction ends, no other worker decides duplicates around these cells."""
    keys = lock_keys(cells)
    if not keys or session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the worker serialises processing in-process instead
    # One statement, the keys in ascending order (unnest keeps the array's): no deadlocks between workers.
    await session.execute(
        text("SELECT count(pg_advisory_xact_lock(key)) FROM unnest(CAST(:keys AS BIGINT[])) AS key").bindparams(
            keys=keys
        )
    )


class Finder:
    """The candidate originals around a batch, by cell; pure once loaded."""

    def __init__(self, candidates: Iterable[Original], *, radius_m: float, window_days: float):
        self.radius_m, self.window = radius_m, timedelta(days=window_days)
        self._by_cell: dict[str, list[Original]] = defaultdict(list)
        self._disks: dict[str, list[str]] = {}  # a cell and its neighbours: a batch's reports share cells
        for candidate in candidates:
            self.add(candidate)

    def add(self, original: Original) -> None:
        self._by_cell[original.h3_cell].append(original)

    def _disk(self, cell: str) -> list[str]:
        if cell not in self._disks:
            self._disks[cell] = h3.grid_disk(cell, 1)
        return self._disks[cell]

    def find(self, report: ReportRow) -> DuplicateMatch | None:
        assert report.h3_cell and report.lat is not None and report.lon is not None
        since = report.created_at - self.window
        scored = [
            (
                haversine_m(report.lat, report.lon, candidate.lat, candidate.lon),
                candidate.created_at,
                str(candidate.id),
                candidate,
            )
            for cell in self._disk(report.h3_cell)
            for candidate in self._by_cell.get(cell, ())
            if candidate.service_code == report.service_code
            and candidate.created_at >= since
            and candidate.id != report.id
        ]
        within = sorted(item for item in scored if item[0] <= self.radius_m)
        if not within:
            return None
        distance, _, _, original = within[0]
        return DuplicateMatch(original=original, distance_m=round(distance, 1))


async def load_finder(
    session: AsyncSession, reports: list[ReportRow], *, radius_m: float, window_days: float
) -> Finder:
    """Lock the reports' neighbourhoods, then read the open originals around them (one query)."""
    cells = {report.h3_cell for report in reports if report.h3_cell}
    if not cells:
        return Finder([], radius_m=radius_m, window_days=window_days)
    await lock_neighbourhoods(session, cells)
    since = min(report.created_at for report in reports) - timedelta(days=window_days)
    around = sorted({neighbour for cell in cells for neighbour in h3.grid_disk(cell, 1)})
    # Nothing pending in this session (the batch's own changes, their events) can change which other
    # report is an original: not flushing here leaves the batch its writes at its end.
    with session.no_autoflush:
        rows = (
            await session.execute(
                select(
                    *(
                        col(column)
                        for column in (
                            Report.id,
                            Report.tracking_code,
                            Report.department_code,
                            Report.service_code,
                            Report.h3_cell,
                            Report.lat,
                            Report.lon,
                            Report.created_at,
                        )
                    )
                ).where(
                    col(Report.h3_cell).in_(around),
                    col(Report.service_code).in_(sorted({str(report.service_code) for report in reports})),
                    col(Report.status).in_(ORIGINAL_STATUSES),
                    col(Report.created_at) >= since,
                    col(Report.duplicate_of_id).is_(None),
                    col(Report.lat).is_not(None),
                    col(Report.lon).is_not(None),
                )
            )
        ).all()
    return Finder((Original(*row) for row in rows), radius_m=radius_m, window_days=window_days)
