"""Jurisdiction boundaries as pure geometry: read GeoJSON, then find which ward holds a point.

No database here. The catalogue stores what `parse_feature_collection` returns, and routing
asks a `JurisdictionIndex` where a report's location falls. Coordinates are lon/lat (WGS84).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import shape as geometry_from_geojson
from shapely.geometry.base import BaseGeometry

DEMO_JURISDICTIONS_PATH = Path(__file__).resolve().parent.parent / "catalogue" / "demo_jurisdictions.geojson"
DEMO_CITY_PATH = DEMO_JURISDICTIONS_PATH.with_name("demo_city.geojson")

# Metres in one degree of latitude on a sphere of the mean Earth radius. Over a few hundred
# metres the equirectangular approximation is off by far less than any boundary file's error.
METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180

_POLYGONAL_TYPES = ("Polygon", "MultiPolygon")


class GeoJSONError(ValueError):
    """A boundary file we cannot use as it is; the message names the offending feature."""


@dataclass(frozen=True)
class JurisdictionShape:
    code: str
    name: str
    level: str
    parent_code: str | None
    geometry_wkt: str
    # Rebuilt from geometry_wkt when omitted, so a row read back from the database needs only the WKT.
    geometry: BaseGeometry = field(default=None, repr=False, compare=False)
    # The parent's name as the file gives it: the parent becomes a jurisdiction of its own on import.
    parent_name: str | None = None

    def __post_init__(self) -> None:
        if self.geometry is None:
            object.__setattr__(self, "geometry", shapely.from_wkt(self.geometry_wkt))


@dataclass(frozen=True)
class Match:
    code: str
    name: str
    method: Literal["inside", "nearest"]
    distance_m: float


def parse_feature_collection(
    data: dict[str, Any],
    *,
    level: str,
    code_field: str,
    name_field: str,
    parent_field: str | None = None,
    parent_name_field: str | None = None,
) -> list[JurisdictionShape]:
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise GeoJSONError('expected a GeoJSON object with "type": "FeatureCollection"')
    features = data.get("features")
    if not isinstance(features, list):
        raise GeoJSONError('the FeatureCollection has no "features" list')

    shapes: list[JurisdictionShape] = []
    first_feature_by_code: dict[str, int] = {}
    for index, feature in enumerate(features):
        where = f"feature {index}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise GeoJSONError(f"{where}: not a GeoJSON Feature")
        properties = feature.get("properties") or {}
        code = _required_text(properties, code_field, where)
        name = _required_text(properties, name_field, where)
        parent_code = _optional_text(properties, parent_field)
        if parent_code == code:
            raise GeoJSONError(f"{where}: {code!r} names itself as its parent")
        parent_name = _optional_text(properties, parent_name_field) if parent_code else None
        if code in first_feature_by_code:
            raise GeoJSONError(
                f"{where}: duplicate code {code!r} (already used by feature {first_feature_by_code[code]})"
            )
        first_feature_by_code[code] = index
        geometry = _polygonal_geometry(feature.get("geometry"), where)
        shapes.append(
            JurisdictionShape(
                code=code,
                name=name,
                level=level,
                parent_code=parent_code,
                geometry_wkt=geometry.wkt,
                geometry=geometry,
                parent_name=parent_name,
            )
        )
    if not shapes:
        raise GeoJSONError("the FeatureCollection has no features")
    return shapes


def _required_text(properties: dict[str, Any], field_name: str, where: str) -> str:
    text = _as_text(properties.get(field_name))
    if text is None:
        raise GeoJSONError(f"{where}: property {field_name!r} is missing or blank")
    return text


def _optional_text(properties: dict[str, Any], field_name: str | None) -> str | None:
    return _as_text(properties.get(field_name)) if field_name else None


def _as_text(value: Any) -> str | None:
    # Shapefile exports often carry ward codes as numbers, sometimes as floats (26734.0).
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _polygonal_geometry(raw: Any, where: str) -> BaseGeometry:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in _POLYGONAL_TYPES:
        raise GeoJSONError(f"{where}: geometry must be a Polygon or MultiPolygon, not {kind!r}")
    try:
        geometry = shapely.force_2d(geometry_from_geojson(raw))
    except (ValueError, TypeError, IndexError, KeyError, shapely.errors.ShapelyError) as exc:
        raise GeoJSONError(f"{where}: unreadable coordinates ({exc})") from exc
    if geometry.is_empty:
        raise GeoJSONError(f"{where}: geometry is empty")
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not (min_lon >= -180 and max_lon <= 180 and min_lat >= -90 and max_lat <= 90):
        # The usual causes are lat/lon written in the wrong order or a projected (metre) CRS.
        raise GeoJSONError(f"{where}: coordinates are not lon/lat degrees (swapped, or a projected CRS?)")
    if not geometry.is_valid:
        geometry = _polygonal_parts(shapely.make_valid(geometry))
        if geometry.is_empty:
            raise GeoJSONError(f"{where}: geometry has no area left once repaired")
    return geometry


def _polygonal_parts(geometry: BaseGeometry) -> BaseGeometry:
    # make_valid may return lines or points where a ring collapsed; a ward is only its area.
    parts = [part for part in shapely.get_parts(geometry) if part.geom_type in _POLYGONAL_TYPES]
    return shapely.union_all(parts) if parts else shapely.Polygon()


class JurisdictionIndex:
    """Answers "which jurisdiction is this point in?" for one set of shapes (one level)."""

    def __init__(self, shapes: Iterable[JurisdictionShape]) -> None:
        self._shapes = tuple(shapes)
        codes = [shape.code for shape in self._shapes]
        if len(set(codes)) != len(codes):
            raise ValueError("jurisdiction codes must be unique within an index")
        self._tree = shapely.STRtree([shape.geometry for shape in self._shapes])
        # Overlaps go to the most specific shape; areas in square metres stay comparable across latitudes.
        self._areas_m2 = [_area_m2(shape.geometry) for shape in self._shapes]
        self._union: BaseGeometry | None = None  # every shape as one prepared geometry, made on first use

    def __len__(self) -> int:
        return len(self._shapes)

    def locate(self, lon: float, lat: float, tolerance_m: float = 150) -> Match | None:
        _check_position(lon, lat, tolerance_m)
        point = shapely.Point(lon, lat)

        # "intersects" counts the boundary as inside, so a point on a shared edge still finds a ward.
        containing = self._tree.query(point, predicate="intersects")
        if len(containing):
            best = min(containing, key=self._specificity)
            return self._match(best, "inside", 0.0)
        if tolerance_m == 0:
            return None
        return self._nearest(lon, lat, point, tolerance_m)

    def locate_many(self, positions: Sequence[tuple[float, float]], tolerance_m: float = 150) -> list[Match | None]:
        """`locate` for each (lon, lat), with one query of the tree for all of them: a batch of reports
        mostly falls inside some ward, and only the others take the tolerance search one by one."""
        for lon, lat in positions:
            _check_position(lon, lat, tolerance_m)
        if not positions:
            return []
        points = shapely.points(np.array(positions, dtype=float))
        inside: dict[int, int] = {}
        for position, shape in zip(*self._tree.query(points, predicate="intersects").tolist(), strict=True):
            if position not in inside or self._specificity(shape) < self._specificity(inside[position]):
                inside[position] = shape
        return [
            self._match(inside[number], "inside", 0.0)
            if number in inside
            else (None if tolerance_m == 0 else self._nearest(lon, lat, points[number], tolerance_m))
            for number, (lon, lat) in enumerate(positions)
        ]

    def _specificity(self, index: int) -> tuple[float, str]:
        # Overlaps go to the smallest shape; equal ones to the first code.
        return self._areas_m2[index], self._shapes[index].code

    def _nearest(self, lon: float, lat: float, point: BaseGeometry, tolerance_m: float) -> Match | None:

        # A degree of longitude is the shortest degree at this latitude, so this radius (plus a
        # margin) reaches every shape within tolerance_m; exact metre distances decide below.
        metres_per_degree_lon = METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 0.01)
        search_degrees = tolerance_m / metres_per_degree_lon * 1.1
        nearby = self._tree.query(point, predicate="dwithin", distance=search_degrees)
        best_key: tuple[float, str] | None = None
        best_index = -1
        for i in nearby:
            distance = _distance_m(lon, lat, self._shapes[i].geometry)
            # Rounded to the millimetre so float noise cannot make the tie-break depend on input order.
            key = (round(distance, 3), self._shapes[i].code)
            if distance <= tolerance_m and (best_key is None or key < best_key):
                best_key, best_index = key, int(i)
        if best_key is None:
            return None
        return self._match(best_index, "nearest", best_key[0])

    def union(self) -> BaseGeometry:
        """Every shape as one geometry, prepared: made on first use."""
        if self._union is None:
            self._union = shapely.union_all([shape.geometry for shape in self._shapes])
            shapely.prepare(self._union)
        return self._union

    def shapes_near(self, geometry: BaseGeometry) -> list[BaseGeometry]:
        """The shapes whose bounding boxes meet `geometry`'s."""
        return [self._shapes[index].geometry for index in self._tree.query(geometry)]

    def covers(self, lon: float, lat: float, tolerance_m: float = 150) -> bool:
        """True when `locate` finds a shape, without saying which: a point inside one is answered by a
        prepared union of all of them (intake asks this of every report), the rest by `locate`."""
        # intersects, as in locate: a point on a boundary is inside.
        if shapely.intersects_xy(self.union(), lon, lat):
            return True
        return self.locate(lon, lat, tolerance_m) is not None

    def _match(self, index: int, method: Literal["inside", "nearest"], distance_m: float) -> Match:
        shape = self._shapes[index]
        return Match(code=shape.code, name=shape.name, method=method, distance_m=distance_m)


def _check_position(lon: float, lat: float, tolerance_m: float) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"not a lon/lat position: ({lon}, {lat})")
    if tolerance_m < 0:
        raise ValueError("tolerance_m must not be negative")


def _to_local_metres(geometry: BaseGeometry, lon: float, lat: float) -> BaseGeometry:
    """Equirectangular projection centred on (lon, lat): accurate near the centre, which is all we ask."""
    scale = np.array([METRES_PER_DEGREE * math.cos(math.radians(lat)), METRES_PER_DEGREE])
    origin = np.array([lon, lat])
    return shapely.transform(geometry, lambda coords: (coords - origin) * scale)


def _distance_m(lon: float, lat: float, geometry: BaseGeometry) -> float:
    return float(shapely.distance(_to_local_metres(geometry, lon, lat), shapely.Point(0, 0)))


def _area_m2(geometry: BaseGeometry) -> float:
    centroid = geometry.centroid
    return float(_to_local_metres(geometry, centroid.x, centroid.y).area)
