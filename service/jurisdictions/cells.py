"""Whole H3 cells known to lie in the service area or out of it, so most points skip the exact test.

Intake asks of every report whether its point is in the service area (`JurisdictionIndex.covers`).
Most cells of a city lie wholly inside its area, or wholly away from it, with room to spare: such a
cell's verdict is worked out once, from its hexagon, and then answers every point that falls in it.
Only cells across the area's edge (its tolerance band) leave their points to the exact test.

A verdict is given only where the exact test cannot answer otherwise for any point of the cell:
- H3 cells are hexagons whose edges are great-circle arcs, not the straight lines drawn between their
  corners in lon/lat; the hexagon is widened by MARGIN_M so it holds every point H3 puts in the cell.
- The exact test measures metres in a projection centred on the point; here the projection is centred
  on the cell, so the tolerance is cut (or stretched) by the most the two can differ inside the cell.
- Buffers draw their round ends with chords, inside the true circle: a buffer that must hold every
  point within a distance is drawn a little wider; one that must hold only such points is not.
Pure geometry, no I/O.
"""

import math

import h3
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from service.jurisdictions.geo import METRES_PER_DEGREE, JurisdictionIndex

# Verdicts kept per area (about 10 MB at most): a large province has some tens of thousands of cells at
# resolution 9. A cell met after that takes the exact test for every point, as every cell did before.
MAX_CELLS = 100_000
# Metres around each hexagon: far more than its arcs stray from its chords (millimetres at ~174 m cells)
# or than the rounding of the projections and of GEOS.
MARGIN_M = 1.0
# Nearer the poles a cell's lon/lat picture is too stretched to argue about: the exact test there.
MAX_LATITUDE = 80.0
# Cells larger than this (coarse resolutions) are not worth judging.
MAX_CELL_EDGE_M = 10_000.0

_UNKNOWN = object()


class CellVerdicts:
    """`covers` of one area and tolerance, answered per cell where the whole cell agrees."""

    def __init__(self, area: JurisdictionIndex, tolerance_m: float) -> None:
        self.area, self.tolerance_m = area, tolerance_m
        self._verdicts: dict[str, bool | None] = {}

    def covers(self, lon: float, lat: float, cell: str) -> bool:
        """`cell`: the H3 cell (any resolution) that holds (lon, lat)."""
        verdict = self._verdicts.get(cell, _UNKNOWN)
        if verdict is _UNKNOWN and len(self._verdicts) < MAX_CELLS:
            verdict = self._verdicts[cell] = judge(self.area, cell, self.tolerance_m)
        if verdict is True or verdict is False:
            return verdict
        return self.area.covers(lon, lat, self.tolerance_m)


def judge(area: JurisdictionIndex, cell: str, tolerance_m: float) -> bool | None:
    """True when every point of the cell lies within `tolerance_m` of `area` (or in it), False when none
    does, None when the cell has points of both kinds, or may have."""
    corners = h3.cell_to_boundary(cell)  # (lat, lon) pairs
    lats = [lat for lat, _ in corners]
    lons = [lon for _, lon in corners]
    if h3.is_pentagon(cell) or max(map(abs, lats)) > MAX_LATITUDE or max(lons) - min(lons) > 1:
        return None  # the antimeridian runs through it, or it is too odd a shape to reason about
    centre_lat, centre_lon = h3.cell_to_latlng(cell)
    centre_cos = math.cos(math.radians(centre_lat))
    # How far the exact test's metres (scaled by the cosine of the point's latitude) may differ from
    # these (of the centre's), over the cell's latitudes widened a little for its bulging edges.
    south, north = min(lats) - 0.01, max(lats) + 0.01
    cosines = [math.cos(math.radians(south)), math.cos(math.radians(north))]
    most = 1.0 if south <= 0 <= north else max(cosines)
    stretch = max(1.0, most / centre_cos)  # exact metres are at most this many of ours
    shrink = min(1.0, min(cosines) / centre_cos)  # and at least this many

    # Metres east and north of the centre, and back: the same affine map both ways.
    scale = np.array([METRES_PER_DEGREE * centre_cos, METRES_PER_DEGREE])
    centre = np.array([centre_lon, centre_lat])
    hexagon = shapely.Polygon((np.array([lons, lats]).T - centre) * scale).buffer(MARGIN_M)
    if hexagon.length > 6 * MAX_CELL_EDGE_M:
        return None
    union = area.union()  # prepared: the two questions below cost a look-up, not a pass over every boundary

    def in_degrees(local: BaseGeometry) -> BaseGeometry:
        return shapely.transform(local, lambda coords: coords / scale + centre)

    if shapely.covers(union, in_degrees(hexagon)):
        return True
    # Round ends drawn with chords fall short of the circle by under 1 % (8 segments a quarter): widened
    # by that, the region holds every point within the tolerance of the cell, measured the exact test's way.
    reach = in_degrees(hexagon.buffer(tolerance_m / shrink * 1.01 + MARGIN_M))
    if not shapely.intersects(union, reach):
        return False
    within = tolerance_m / stretch - MARGIN_M
    if within <= 0:
        return None
    # Every point of the cell within the tolerance of some boundary: only boundaries that reach the cell
    # matter, each cut down to the window the tolerance spans.
    window = shapely.box(*reach.bounds)
    near = shapely.union_all([shapely.intersection(shape, window) for shape in area.shapes_near(window)])
    local = shapely.transform(near, lambda coords: (coords - centre) * scale)
    return True if shapely.covers(local.buffer(within), hexagon) else None
