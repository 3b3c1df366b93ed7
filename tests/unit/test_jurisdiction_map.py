"""Which boundaries take reports: the lowest level, never a city outline left beside a city's own wards."""

import shapely

from service.jurisdictions.service import build_map
from service.models import Jurisdiction


def box(code, level, west, south, size, parent=None) -> Jurisdiction:
    geometry = shapely.box(west, south, west + size, south + size)
    return Jurisdiction(code=code, name=code, level=level, parent_code=parent, geometry_wkt=geometry.wkt)


OUTLINE = box("HCM", "city", 106.0, 10.0, 2.0)  # the demo's outline, nothing under it any more
WARDS = [box("A", "ward", 106.70, 10.70, 0.01, parent="79"), box("B", "ward", 106.712, 10.70, 0.01, parent="79")]
CITY = Jurisdiction(code="79", name="TP", level="district", geometry_wkt=None)  # named by the wards, no boundary


def test_a_gap_between_a_citys_wards_goes_to_the_nearest_ward_not_to_a_left_over_outline():
    jurisdictions = build_map([OUTLINE, CITY, *WARDS])
    match = jurisdictions.index.locate(106.7105, 10.705)  # 1 mm of a degree between A and B
    assert (match.code, match.method) == ("A", "nearest")
    assert jurisdictions.index.locate(106.5, 10.5) is None
    assert jurisdictions.ancestry("A") == ["A", "79"]


def test_the_service_area_is_every_boundary_whatever_its_level():
    jurisdictions = build_map([OUTLINE, CITY, *WARDS])
    assert jurisdictions.area.locate(106.5, 10.5, tolerance_m=0) is not None
    assert build_map([CITY]).area is None


def test_a_parent_with_its_own_boundary_never_takes_reports():
    district = box("D", "district", 106.69, 10.69, 0.05)
    wards = [box("A", "ward", 106.70, 10.70, 0.01, parent="D")]
    assert build_map([district, *wards]).index.locate(106.73, 10.73) is None
    assert build_map([district, *wards]).index.locate(106.705, 10.705).code == "A"


def test_a_point_that_is_not_on_earth_is_outside_the_service_area():
    import asyncio

    from service.jurisdictions.area import contains
    from service.settings import Settings

    settings = Settings(_env_file=None)
    # Refused before any query: no session is needed.
    for lat, lon in [(95.0, 106.7), (10.7, 200.0), (float("nan"), 106.7), (10.7, float("inf"))]:
        assert asyncio.run(contains(None, settings, lat, lon)) is False
