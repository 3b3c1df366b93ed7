"""Report density per H3 hexagon, with each cell's top categories, as GeoJSON.

Reports are placed at H3 resolution 9; the database groups them per res-9 cell and category (a
bounded number of rows: the city has so many cells), and Python folds those into parent cells.
"""

from collections import defaultdict
from collections.abc import Iterable

import h3
from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.ioc.queries import R, window_conditions
from service.ioc.schemas import IocFilters

TOP_CATEGORIES_PER_CELL = 3


def _ring(cell: str) -> list[tuple[float, float]]:
    """The hexagon's boundary as a closed GeoJSON ring (lon, lat)."""
    points = [(round(lng, 7), round(lat, 7)) for lat, lng in h3.cell_to_boundary(cell)]
    return [*points, points[0]]


def fold_cells(rows: Iterable[tuple[str | None, str | None, int]], resolution: int) -> dict[str, dict[str | None, int]]:
    """Counts per (parent cell, category) from counts per (res-9 cell, category)."""
    parents: dict[str | None, str | None] = {}
    folded: dict[str, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    for cell, category, count in rows:
        if cell not in parents:
            valid = cell is not None and h3.is_valid_cell(cell)
            if not valid:
                parents[cell] = None
            else:
                own = h3.get_resolution(cell)
                parents[cell] = h3.cell_to_parent(cell, resolution) if own > resolution else cell
        parent = parents[cell]
        if parent is not None:
            folded[parent][category] += int(count)
    return folded


async def hotspots(
    session: AsyncSession, filters: IocFilters, *, resolution: int, limit: int
) -> tuple[int, list[dict]]:
    """Report density per H3 cell at `resolution`: (reports placed on the map, features densest first)."""
    statement = (
        select(R.h3_cell, R.service_code, func.count())
        .where(*window_conditions(filters), R.h3_cell.is_not(None))
        .group_by(R.h3_cell, R.service_code)
    )
    folded = fold_cells((await session.execute(statement)).all(), resolution)
    cells = sorted(
        ((sum(by_category.values()), cell, by_category) for cell, by_category in folded.items()),
        key=lambda t: (-t[0], t[1]),
    )
    total = sum(count for count, _, _ in cells)
    features = []
    for count, cell, by_category in cells[:limit]:
        top = sorted(by_category.items(), key=lambda item: (-item[1], item[0] or "~"))[:TOP_CATEGORIES_PER_CELL]
        features.append(
            {
                "type": "Feature",
                "id": cell,
                "geometry": {"type": "Polygon", "coordinates": [_ring(cell)]},
                "properties": {
                    "cell": cell,
                    "resolution": h3.get_resolution(cell),
                    "count": count,
                    "top_categories": [{"code": code, "count": n} for code, n in top],
                },
            }
        )
    return total, features
