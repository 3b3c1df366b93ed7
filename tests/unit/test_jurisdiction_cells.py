"""A cell's verdict on the service area is the exact test's answer for every point in the cell."""

import math
import random

import h3
import pytest
import shapely

from service.jurisdictions import cells as cells_module
from service.jurisdictions.cells import CellVerdicts
from service.jurisdictions.geo import METRES_PER_DEGREE, JurisdictionIndex, JurisdictionShape
from service.jurisdictions.service import demo_shapes
from tests.test_jurisdictions import REAL_WARDS

TOLERANCES = (0, 150, 1000)


def square_shape(code: str, lon: float, lat: float, side: float) -> JurisdictionShape:
    geometry = shapely.box(lon, lat, lon + side, lat + side)
    return JurisdictionShape(code=code, name=code, level="ward", parent_code=None, geometry_wkt=geometry.wkt)


def demo_area() -> JurisdictionIndex:
    city, wards = demo_shapes()  # every boundary, as the service area is made of
    return JurisdictionIndex([*city, *wards])


def real_wards_area() -> JurisdictionIndex:
    return JurisdictionIndex([square_shape(code, lon, lat, side) for code, _, lon, lat, side in REAL_WARDS])


def far_from_the_tropics_area() -> JurisdictionIndex:
    # Where a degree of longitude shrinks fast with latitude, and across the equator, where it does not.
    return JurisdictionIndex([square_shape("NORTH", 24.90, 60.15, 0.03), square_shape("EQUATOR", 32.50, -0.02, 0.04)])


AREAS = {"demo": demo_area, "real_wards": real_wards_area, "far_from_the_tropics": far_from_the_tropics_area}


def points_around_the_edges(area: JurisdictionIndex, count: int, seed: int) -> list[tuple[float, float]]:
    """(lon, lat) points on and near the area's boundary, out to beyond the widest tolerance."""
    draw = random.Random(seed)
    boundary = area.union().boundary
    points = []
    for _ in range(count):
        on_edge = shapely.line_interpolate_point(boundary, draw.random(), normalized=True)
        distance_m = draw.choice([0.0, draw.uniform(0, 5), draw.uniform(0, 1300)])
        bearing = draw.uniform(0, 2 * math.pi)
        metres_per_degree_lon = METRES_PER_DEGREE * math.cos(math.radians(on_edge.y))
        points.append(
            (
                on_edge.x + distance_m * math.cos(bearing) / metres_per_degree_lon,
                on_edge.y + distance_m * math.sin(bearing) / METRES_PER_DEGREE,
            )
        )
    min_lon, min_lat, max_lon, max_lat = area.union().bounds
    points += [
        (draw.uniform(min_lon - 0.03, max_lon + 0.03), draw.uniform(min_lat - 0.03, max_lat + 0.03))
        for _ in range(count // 4)
    ]
    return points


@pytest.mark.parametrize("name", sorted(AREAS))
def test_cell_verdicts_answer_as_the_exact_test_around_the_edges_of_the_map(name):
    area = AREAS[name]()
    points = points_around_the_edges(area, 2500, seed=len(name))
    for tolerance_m in TOLERANCES:
        verdicts = CellVerdicts(area, tolerance_m)
        for lon, lat in points:
            fast = verdicts.covers(lon, lat, h3.latlng_to_cell(lat, lon, 9))
            assert fast == area.covers(lon, lat, tolerance_m), (name, tolerance_m, lon, lat)
        judged = [verdict for verdict in verdicts._verdicts.values() if verdict is not None]
        assert True in judged and False in judged  # most cells answer without geometry


@pytest.mark.parametrize("name", sorted(AREAS))
def test_a_judged_cell_agrees_with_the_exact_test_up_to_its_corners_and_edges(name):
    area = AREAS[name]()
    for tolerance_m in TOLERANCES:
        verdicts = CellVerdicts(area, tolerance_m)
        for lon, lat in points_around_the_edges(area, 300, seed=7):
            verdicts.covers(lon, lat, h3.latlng_to_cell(lat, lon, 9))
        checked = 0
        for cell, verdict in verdicts._verdicts.items():
            if verdict is None:
                continue
            centre_lat, centre_lon = h3.cell_to_latlng(cell)
            corners = h3.cell_to_boundary(cell)
            # The corners, and points along each edge, drawn a hair towards the centre to stay in the cell.
            for (lat_a, lon_a), (lat_b, lon_b) in zip(corners, [*corners[1:], corners[0]], strict=True):
                for along in (0.0, 0.25, 0.5, 0.75):
                    lat = lat_a + (lat_b - lat_a) * along
                    lon = lon_a + (lon_b - lon_a) * along
                    lat, lon = lat + (centre_lat - lat) * 1e-6, lon + (centre_lon - lon) * 1e-6
                    if h3.latlng_to_cell(lat, lon, 9) != cell:
                        continue
                    assert area.covers(lon, lat, tolerance_m) == verdict, (name, tolerance_m, cell, lon, lat)
                    checked += 1
        assert checked > 1000


def test_verdicts_kept_are_bounded_and_the_cells_past_the_bound_take_the_exact_test(monkeypatch):
    monkeypatch.setattr(cells_module, "MAX_CELLS", 50)
    area = demo_area()
    verdicts = CellVerdicts(area, 150)
    for lon, lat in points_around_the_edges(area, 400, seed=3):
        assert verdicts.covers(lon, lat, h3.latlng_to_cell(lat, lon, 9)) == area.covers(lon, lat, 150)
    assert len(verdicts._verdicts) == 50


def test_cells_across_the_antimeridian_or_near_a_pole_are_left_to_the_exact_test():
    area = JurisdictionIndex([square_shape("EDGE", 179.99, -16.8, 0.02), square_shape("POLAR", 10.0, 85.0, 0.5)])
    for lon, lat in [(179.9999, -16.79), (-179.9999, -16.79), (10.25, 85.25)]:
        assert cells_module.judge(area, h3.latlng_to_cell(lat, lon, 9), 150) is None
