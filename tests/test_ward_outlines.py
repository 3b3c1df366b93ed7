"""GET /v1/jurisdictions/outlines: the city's imported wards as a base map for staff screens."""

import shapely
from sqlmodel import select

from service.auth import api_keys
from service.models import Jurisdiction
from tests.conftest import in_app


def key_for(client, role: str) -> dict:
    async def create(session):
        return (await api_keys.create(session, name=f"{role} test", role=role)).key

    return {"X-API-Key": in_app(client, create)}


def test_outlines_are_the_imported_wards_as_geojson_with_names(client):
    viewer = key_for(client, "ioc_viewer")

    async def wards(session):
        rows = (await session.exec(select(Jurisdiction))).all()
        return {row.code: row for row in rows}

    stored = in_app(client, wards)
    response = client.get("/v1/jurisdictions/outlines", headers=viewer)
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "FeatureCollection" and body["level"] == "ward"
    ward_codes = sorted(code for code, row in stored.items() if row.level == "ward")
    assert [feature["id"] for feature in body["features"]] == ward_codes  # not the city outline
    for feature in body["features"]:
        drawn = shapely.geometry.shape(feature["geometry"])
        original = shapely.from_wkt(stored[feature["id"]].geometry_wkt)
        assert feature["properties"]["name"] == stored[feature["id"]].name
        assert drawn.is_valid and abs(drawn.area - original.area) < 0.05 * original.area
        assert drawn.contains(shapely.Point(feature["properties"]["label_point"]))
    west, south, east, north = body["bbox"]
    assert west < 106.70 < east and south < 10.78 < north

    etag = response.headers["etag"]
    again = client.get("/v1/jurisdictions/outlines", headers={**viewer, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag


def test_outlines_are_for_staff_screens_only(client, api_key):
    assert client.get("/v1/jurisdictions/outlines").status_code == 401
    forbidden = client.get("/v1/jurisdictions/outlines", headers={"X-API-Key": api_key})
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    assert client.get("/v1/jurisdictions/outlines", headers=key_for(client, "officer")).status_code == 200
