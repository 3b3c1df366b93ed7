"""The city's own map for drawing: the boundaries reports are placed in, simplified, as GeoJSON.

A wall or an app draws these as its base map, so it needs no tile server and nothing from outside
the city's network. Neighbouring wards are simplified together, as one polygon coverage, so an edge
they share stays shared: no gap or sliver opens between them however far the lines are thinned.
Coordinates are rounded to about a metre. Each ward carries a point well inside it for its label.

The answer changes only with an import, so each process keeps it per version of the table.
"""

import json
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.ops import polylabel
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.jurisdictions import service
from service.jurisdictions.geo import METRES_PER_DEGREE, JurisdictionShape
from service.models import Jurisdiction

# A wall shows the whole city on a few thousand pixels: a 10 m detail is under a pixel even at 4K.
SIMPLIFY_TOLERANCE_M = 10.0
COORDINATE_DECIMALS = 5  # about 1 m at the equator


def simplified(geometries: list[BaseGeometry], tolerance_m: float = SIMPLIFY_TOLERANCE_M) -> list[BaseGeometry]:
    """Thinned outlines, shared edges kept shared when the shapes form a coverage (no overlaps)."""
    if not geometries:
        return []
    tolerance = tolerance_m / METRES_PER_DEGREE
    if shapely.coverage_is_valid(shapely.GeometryCollection(geometries)):
        thinned = list(shapely.coverage_simplify(geometries, tolerance))
    else:
        # Overlapping wards (a hand-drawn file) are thinned one by one, each kept valid on its own.
        thinned = [shapely.simplify(geometry, tolerance, preserve_topology=True) for geometry in geometries]
    return [thin if not thin.is_empty else original for thin, original in zip(thinned, geometries, strict=True)]


def _rounded(geometry: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geometry, lambda coordinates: np.round(coordinates, COORDINATE_DECIMALS))


def label_point(geometry: BaseGeometry) -> tuple[float, float]:
    """Where a ward's name goes: the point farthest inside its largest part (not the centroid,
    which may fall outside a crescent-shaped ward)."""
    parts = [part for part in shapely.get_parts(geometry) if not part.is_empty]
    largest = max(parts, key=lambda part: part.area)
    tolerance = max(largest.bounds[2] - largest.bounds[0], largest.bounds[3] - largest.bounds[1]) / 100
    point = polylabel(largest, tolerance=max(tolerance, 1e-6))
    return round(point.x, COORDINATE_DECIMALS), round(point.y, COORDINATE_DECIMALS)


def outline_collection(shapes: list[JurisdictionShape], tolerance_m: float = SIMPLIFY_TOLERANCE_M) -> dict:
    """A GeoJSON FeatureCollection of the shapes, simplified, in code order, with the level and bbox."""
    ordered = sorted(shapes, key=lambda shape: shape.code)
    thinned = [_rounded(geometry) for geometry in simplified([shape.geometry for shape in ordered], tolerance_m)]
    features = [
        {
            "type": "Feature",
            "id": shape.code,
            "geometry": mapping(geometry),
            "properties": {
                "code": shape.code,
                "name": shape.name,
                "level": shape.level,
                "parent_code": shape.parent_code,
                "label_point": label_point(geometry),
            },
        }
        for shape, geometry in zip(ordered, thinned, strict=True)
    ]
    bounds = shapely.total_bounds(thinned) if thinned else None
    return {
        "type": "FeatureCollection",
        "level": ordered[0].level if ordered else None,
        "bbox": [round(float(value), COORDINATE_DECIMALS) for value in bounds] if bounds is not None else None,
        "features": features,
    }


@dataclass(frozen=True)
class _Kept:
    version: tuple
    body: bytes


# One per database: the tests run apps on two databases in one process.
_kept: dict[str, _Kept] = {}


async def outlines_json(session: AsyncSession, database_url: str) -> bytes:
    """The outlines of the level reports are placed in, as JSON bytes; rebuilt only after an import."""
    version = tuple((await session.exec(select(*service.version_columns()))).one())
    kept = _kept.get(database_url)
    if kept is not None and kept.version == version:
        return kept.body
    rows = list((await session.exec(select(Jurisdiction))).all())
    shapes = service.placed_shapes(rows)
    body = json.dumps(outline_collection(shapes), ensure_ascii=False, separators=(",", ":")).encode()
    _kept[database_url] = _Kept(version, body)
    return body
