"""Ward outlines thinned for drawing: neighbours still meet, every name has a place inside its ward."""

import math

import shapely

from service.jurisdictions.geo import JurisdictionShape
from service.jurisdictions.outlines import label_point, outline_collection, simplified
from service.jurisdictions.service import placed_shapes
from service.models import Jurisdiction


def wiggly_edge(steps: int = 400) -> list[tuple[float, float]]:
    """A boundary along a canal: 400 points a few metres apart, north to south at about lon 106.70."""
    return [(106.70 + 0.0004 * math.sin(i / 9), 10.80 - 0.02 * i / steps) for i in range(steps + 1)]


def shape(code: str, geometry) -> JurisdictionShape:
    return JurisdictionShape(
        code=code, name=f"Phường {code}", level="ward", parent_code="HCM", geometry_wkt=geometry.wkt
    )


def neighbours() -> list[JurisdictionShape]:
    edge = wiggly_edge()
    west = shapely.Polygon([(106.68, 10.80), *edge, (106.68, 10.78)])
    east = shapely.Polygon([*edge, (106.72, 10.78), (106.72, 10.80)])
    return [shape("WEST", west), shape("EAST", east)]


def test_neighbouring_wards_keep_their_shared_edge_when_simplified():
    wards = neighbours()
    thinned = simplified([ward.geometry for ward in wards])
    assert sum(len(geometry.exterior.coords) for geometry in thinned) < 0.25 * sum(
        len(ward.geometry.exterior.coords) for ward in wards
    )
    west, east = thinned
    assert west.intersection(east).area < 1e-12  # no overlap
    assert shapely.union_all(thinned).geom_type == "Polygon"  # no gap: still one piece
    assert abs(shapely.union_all(thinned).area - (west.area + east.area)) < 1e-12


def test_a_crescent_shaped_ward_gets_its_label_inside_not_at_its_centroid():
    outer = shapely.Point(106.70, 10.80).buffer(0.01)
    crescent = outer.difference(shapely.Point(106.704, 10.80).buffer(0.009))
    assert not crescent.contains(crescent.centroid)
    assert crescent.contains(shapely.Point(label_point(crescent)))


def test_outlines_are_geojson_of_the_level_reports_are_placed_in():
    city = Jurisdiction(code="HCM", name="TP", level="city", geometry_wkt=shapely.box(106.6, 10.7, 106.8, 10.9).wkt)
    rows = [city] + [
        Jurisdiction(code=w.code, name=w.name, level="ward", parent_code="HCM", geometry_wkt=w.geometry_wkt)
        for w in neighbours()
    ]
    collection = outline_collection(placed_shapes(rows))
    assert collection["type"] == "FeatureCollection" and collection["level"] == "ward"
    assert [feature["id"] for feature in collection["features"]] == ["EAST", "WEST"]
    west = collection["features"][1]
    assert west["properties"]["name"] == "Phường WEST" and west["geometry"]["type"] == "Polygon"
    assert shapely.geometry.shape(west["geometry"]).contains(shapely.Point(west["properties"]["label_point"]))
    lon_west, lat_south, lon_east, lat_north = collection["bbox"]
    assert (lon_west, lat_south, lon_east, lat_north) == (106.68, 10.78, 106.72, 10.8)
    assert all(
        len(str(value).split(".")[1]) <= 5
        for feature in collection["features"]
        for value in shapely.get_coordinates(shapely.geometry.shape(feature["geometry"])).ravel()
    )
    assert outline_collection([]) == {"type": "FeatureCollection", "level": None, "bbox": None, "features": []}
