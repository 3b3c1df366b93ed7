"""The service area: where the city takes reports.

A point is inside when it lies within JURISDICTION_TOLERANCE_M of any imported boundary (a ward, or
a city outline); a city that has imported no boundary uses the SERVICE_AREA box instead. Intake asks
for every report, so each API process keeps the boundaries in memory and looks at most every
AREA_RECHECK_SECONDS whether an import changed them (at once after an import in this process).
With the boundaries it keeps what it learnt of whole H3 cells (service.jurisdictions.cells), so a point
in a cell known to be inside, or far outside, needs no geometry.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import h3
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.jurisdictions import service
from service.jurisdictions.cells import CellVerdicts
from service.jurisdictions.geo import JurisdictionIndex
from service.settings import Settings

AREA_RECHECK_SECONDS = 2.0
# The cells a point is judged by when the caller has none (~174 m, as reports' own h3_cell).
CELL_RESOLUTION = 9


@dataclass
class _Cached:
    version: tuple
    area: JurisdictionIndex | None
    checked_at: float
    generation: int
    cells: CellVerdicts | None = None  # of these boundaries, at the tolerance last asked for


# One per database: the tests run apps on two databases in one process.
_cache: dict[str, _Cached] = {}


async def _area(session_of: Callable[[], AsyncSession], database_url: str) -> _Cached:
    cached = _cache.get(database_url)
    now = time.monotonic()
    looking: _Cached | None = None  # the boundaries known, which the others use while this request looks
    if cached is not None and cached.generation == service.changes_in_process:
        if now - cached.checked_at < AREA_RECHECK_SECONDS:
            return cached
        # One request looks; under load every request arriving meanwhile was sending the same query.
        looking, previous, cached.checked_at = cached, cached.checked_at, now
    session = session_of()  # only now: a request whose boundaries are known opens no session for them
    try:
        version = tuple((await session.exec(select(*service.version_columns()))).one())
    except BaseException:
        if looking is not None:
            looking.checked_at = previous  # the next request looks again
        raise
    if cached is None or cached.version != version:
        cached = _Cached(version, (await service.load_map(session)).area, now, service.changes_in_process)
    cached.checked_at, cached.generation = now, service.changes_in_process
    _cache[database_url] = cached
    return cached


def on_earth(lat: float, lon: float) -> bool:
    # A photo's EXIF may carry anything; no such point is anywhere in the city.
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180


async def contains(
    session_of: Callable[[], AsyncSession], settings: Settings, lat: float, lon: float, *, cell: str | None = None
) -> bool:
    """`session_of` gives the session to read the boundaries with, when they must be read. `cell`: the
    point's H3 cell, at any resolution, when the caller has it already."""
    if not on_earth(lat, lon):
        return False
    cached = await _area(session_of, settings.database_url)
    if cached.area is None:
        min_lat, min_lon, max_lat, max_lon = settings.service_area
        return min_lat <= lat <= max_lat and min_lon <= lon <= max_lon
    cells = cached.cells
    if cells is None or cells.tolerance_m != settings.jurisdiction_tolerance_m:
        cells = cached.cells = CellVerdicts(cached.area, settings.jurisdiction_tolerance_m)
    return cells.covers(lon, lat, cell or h3.latlng_to_cell(lat, lon, CELL_RESOLUTION))
