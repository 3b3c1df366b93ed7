"""A city's own map: import --replace, list, delete; parents as jurisdictions; the service area from the map.

These run the `intake` command as a city's IT team would, against the test database, then file
reports through the API and process them with a real worker.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from service.catalogue import service as catalogue_service
from service.jurisdictions import area as service_area
from service.jurisdictions import service as jurisdiction_service
from service.models import Jurisdiction, Report
from tests.conftest import ROOT, in_app, run_worker
from tests.factories import report_body

# Squares (lon, lat of the south-west corner, side in degrees) standing in for a city's real wards.
# "26734" lies over the demo's Bến Thành and Sài Gòn wards, so a point there shows whose map wins.
REAL_WARDS = [
    ("26734", "Phường Sài Gòn (thật)", 106.690, 10.765, 0.020),
    ("26740", "Phường Tân Định", 106.670, 10.765, 0.020),
    ("26743", "Phường Đa Kao", 106.690, 10.785, 0.020),
]
BEN_THANH_MARKET = (10.7725, 106.6980)  # in the demo's BEN-THANH and in "26734"


def square(lon: float, lat: float, side: float) -> dict:
    ring = [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def ward_file(tmp_path: Path, wards=REAL_WARDS, *, parent: str = "79", parent_name: str = "TP. Hồ Chí Minh") -> Path:
    features = [
        {
            "type": "Feature",
            "properties": {"ma": code, "ten": name, "tinh": parent, "ten_tinh": parent_name},
            "geometry": square(lon, lat, side),
        }
        for code, name, lon, lat, side in wards
    ]
    path = tmp_path / "wards.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    return path


def intake(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "LOG_JSON": "false"}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def import_real_wards(settings, path: Path) -> subprocess.CompletedProcess:
    done = intake(
        settings,
        "jurisdictions",
        "import",
        str(path),
        "--replace",
        "--level",
        "ward",
        "--code-field",
        "ma",
        "--name-field",
        "ten",
        "--parent-field",
        "tinh",
        "--parent-name-field",
        "ten_tinh",
        "--parent-level",
        "city",
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def city_map(client, settings):
    """Leaves the demo map and catalogue as every other test expects them, whatever the test did."""
    yield
    from sqlmodel import delete

    async def restore(session):
        await session.exec(delete(Jurisdiction))
        await jurisdiction_service.import_demo(session)
        catalogue, checksum = catalogue_service.read_file(ROOT / "service/catalogue/catalogue.yaml")
        await catalogue_service.load(session, catalogue=catalogue, checksum=checksum, source="tests")

    in_app(client, restore)


def codes(client) -> dict[str, Jurisdiction]:
    return {row.code: row for row in in_app(client, lambda s: s.exec(select(Jurisdiction))).all()}


def submit(client, api_key, lat, lon, **fields):
    return client.post("/v1/reports", json=report_body(lat=lat, lon=lon, **fields), headers={"X-API-Key": api_key})


def processed(client, created) -> Report:
    run_worker(client)
    from uuid import UUID

    return in_app(client, lambda s: s.get(Report, UUID(created["id"])))


# --- 1. jurisdictions a city manages ---------------------------------------------------------------


def test_import_replace_makes_the_file_the_whole_ward_level_and_every_point_resolves_to_its_ward(
    client, settings, api_key, city_map, tmp_path
):
    before = submit(client, api_key, *BEN_THANH_MARKET)
    assert processed(client, before.json()).jurisdiction_code == "BEN-THANH"

    done = import_real_wards(settings, ward_file(tmp_path))
    assert "3 created" in done.stdout and "BEN-THANH" in done.stdout  # the removed demo wards are named

    rows = codes(client)
    assert {code for code, row in rows.items() if row.level == "ward"} == {"26734", "26740", "26743"}
    assert rows["79"].name == "TP. Hồ Chí Minh" and rows["79"].level == "city" and rows["79"].geometry_wkt is None
    # Points inside, and in the demo's old wards, now land in the city's own wards.
    opera_house = (10.7766, 106.7031)  # in the demo's SAI-GON
    for lat, lon, ward in [(*opera_house, "26734"), (10.775, 106.680, "26740"), (10.795, 106.700, "26743")]:
        created = submit(client, api_key, lat, lon)
        assert created.status_code == 201, created.text
        assert processed(client, created.json()).jurisdiction_code == ward
    # A report keeps the code it recorded.
    assert processed(client, before.json()).jurisdiction_code == "BEN-THANH"


def test_demo_map_is_loaded_only_into_a_database_without_one(client, settings, city_map, tmp_path):
    import_real_wards(settings, ward_file(tmp_path))
    done = intake(settings, "jurisdictions", "demo")
    assert done.returncode == 0, done.stderr
    assert "not imported" in done.stdout
    assert "BEN-THANH" not in codes(client) and "26734" in codes(client)


def test_replace_warns_about_routing_rules_left_naming_removed_wards(client, settings, city_map, tmp_path):
    done = import_real_wards(settings, ward_file(tmp_path))
    assert "urban_order @ BEN-THANH → ubnd-phuong-ben-thanh" in done.stderr


def test_list_shows_every_jurisdiction_with_its_parent_and_delete_removes_one(client, settings, city_map, tmp_path):
    import_real_wards(settings, ward_file(tmp_path))
    listed = intake(settings, "jurisdictions", "list").stdout.splitlines()
    assert "26734\tward\t79\tboundary\t0 under\tPhường Sài Gòn (thật)" in listed
    assert "79\tcity\t-\tno boundary\t3 under\tTP. Hồ Chí Minh" in listed

    refused = intake(settings, "jurisdictions", "delete", "79")
    assert refused.returncode == 1 and "3 jurisdiction(s) under it" in refused.stderr
    assert intake(settings, "jurisdictions", "delete", "26743").returncode == 0
    assert "26743" not in codes(client)
    missing = intake(settings, "jurisdictions", "delete", "NOPE")
    assert missing.returncode == 1 and "no jurisdiction 'NOPE'" in missing.stderr

    # The last ward gone, the city known only through its wards goes too.
    for code in ("26734", "26740"):
        assert intake(settings, "jurisdictions", "delete", code).returncode == 0
    assert "79" not in codes(client)


def test_failed_import_changes_nothing(client, settings, city_map, tmp_path):
    bad = ward_file(tmp_path)
    data = json.loads(bad.read_text())
    data["features"].append(
        {
            "type": "Feature",
            "properties": {"ma": "X", "ten": "X"},
            "geometry": {"type": "Point", "coordinates": [106.7, 10.8]},
        }
    )
    bad.write_text(json.dumps(data))
    done = intake(
        settings, "jurisdictions", "import", str(bad), "--replace", "--code-field", "ma", "--name-field", "ten"
    )
    assert done.returncode == 2 and "feature 3" in done.stderr
    assert "BEN-THANH" in codes(client) and "26734" not in codes(client)


# --- 3. catalogue checks at load ---------------------------------------------------------------------


def test_catalogue_naming_unknown_jurisdiction_department_or_category_is_refused_with_its_lines(
    client, settings, tmp_path
):
    text = (ROOT / "service/catalogue/catalogue.yaml").read_text()
    broken = text.replace(
        "  - {category: urban_order, jurisdiction: SAI-GON, department: ubnd-phuong-sai-gon}",
        "  - {category: urban_order, jurisdiction: Q1, department: ubnd-phuong-sai-gon}\n"
        "  - {category: potholes, department: ubnd-quan-1}",
    )
    path = tmp_path / "catalogue.yaml"
    path.write_text(broken)
    lines = broken.splitlines()
    line_of = {
        needle: lines.index(next(line for line in lines if needle in line)) + 1
        for needle in ("jurisdiction: Q1", "category: potholes")
    }
    current = in_app(client, catalogue_service.current_version)

    for args in (("catalogue", "load", "--check", str(path)), ("catalogue", "load", str(path))):
        done = intake(settings, *args)
        assert done.returncode == 2
        assert (
            f"line {line_of['jurisdiction: Q1']}: routing_rules[0].jurisdiction: unknown jurisdiction 'Q1'"
            in done.stderr
        )
        assert (
            f"line {line_of['category: potholes']}: routing_rules[1].category: unknown category 'potholes'"
            in done.stderr
        )
        assert (
            f"line {line_of['category: potholes']}: routing_rules[1].department: unknown department 'ubnd-quan-1'"
            in done.stderr
        )
    assert in_app(client, catalogue_service.current_version) == current


def test_catalogue_check_of_a_good_file_loads_nothing(client, settings, tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(
        (ROOT / "service/catalogue/catalogue.yaml").read_text().replace('version: "2026.12.1"', 'version: "2099.1"')
    )
    current = in_app(client, catalogue_service.current_version)
    done = intake(settings, "catalogue", "load", "--check", str(path))
    assert done.returncode == 0 and "no problems" in done.stdout
    assert in_app(client, catalogue_service.current_version) == current


def test_make_run_keeps_a_citys_own_catalogue(client, settings, city_map, tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text(
        (ROOT / "service/catalogue/catalogue.yaml").read_text().replace('version: "2026.12.1"', 'version: "city.1"')
    )
    assert intake(settings, "catalogue", "load", str(own)).returncode == 0
    done = intake(settings, "catalogue", "load", "service/catalogue/catalogue.yaml", "--keep-own")
    assert done.returncode == 0 and "is not loaded" in done.stdout
    assert in_app(client, catalogue_service.current_version).startswith("city.1+")


# --- 4. the service area from the map ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("place", "lat", "lon"),
    [
        ("Thủ Dầu Một", 10.9804, 106.6519),
        ("Vũng Tàu", 10.3460, 107.0843),
        ("Côn Đảo", 8.6820, 106.6090),
        ("Củ Chi", 11.0000, 106.5000),
        ("Cần Giờ", 10.4110, 106.9540),
        ("Bà Rịa", 10.4960, 107.1680),
    ],
)
def test_demo_city_takes_reports_from_all_of_todays_hcmc(client, api_key, place, lat, lon):
    assert submit(client, api_key, lat, lon).status_code == 201, place


@pytest.mark.parametrize(
    ("place", "lat", "lon"),
    [("Hà Nội", 21.0285, 105.8542), ("Biên Hòa, Đồng Nai", 10.9574, 106.8427), ("Tân An, Tây Ninh", 10.5350, 106.4100)],
)
def test_demo_city_refuses_reports_from_elsewhere(client, api_key, place, lat, lon):
    response = submit(client, api_key, lat, lon)
    assert response.status_code == 422, place
    assert response.json()["errors"][0]["code"] == "outside_service_area"


def test_city_with_its_own_wards_takes_reports_only_near_them(client, settings, api_key, city_map, tmp_path):
    import_real_wards(settings, ward_file(tmp_path))
    assert intake(settings, "jurisdictions", "delete", "HCM").returncode == 0  # the demo's city outline
    # The API process saw the old map moments ago; it promises to see another process's change this soon.
    time.sleep(service_area.AREA_RECHECK_SECONDS)
    assert submit(client, api_key, *BEN_THANH_MARKET).status_code == 201
    # 100 m east of the last ward: inside the tolerance (150 m).
    assert submit(client, api_key, 10.775, 106.710 + 0.0009).status_code == 201
    # Thủ Đức is in the box, but far from every ward this city imported.
    far = submit(client, api_key, 10.8500, 106.7700)
    assert far.status_code == 422 and far.json()["errors"][0]["code"] == "outside_service_area"


def test_city_without_boundaries_uses_the_service_area_box(client, api_key, city_map):
    from sqlmodel import delete

    async def forget_the_map(session):
        await session.exec(delete(Jurisdiction))
        jurisdiction_service._changed()

    in_app(client, forget_the_map)
    assert submit(client, api_key, 10.9804, 106.6519).status_code == 201  # Thủ Dầu Một, in the default box
    assert submit(client, api_key, 21.0285, 105.8542).status_code == 422


# --- 2. the hierarchy as data ------------------------------------------------------------------------


def test_ticket_and_ioc_filters_on_the_city_cover_its_wards(client, api_key):
    from tests.test_ioc import clear_cache, key_for, summary

    inside = submit(client, api_key, *BEN_THANH_MARKET, service_code="street_lighting")
    run_worker(client)
    headers = key_for(client, "admin")
    listed = client.get("/v1/tickets", params={"jurisdiction": "HCM"}, headers=headers).json()
    assert [item["tracking_code"] for item in listed["items"]] == [inside.json()["tracking_code"]]
    assert client.get("/v1/tickets", params={"jurisdiction": "XUAN-HOA"}, headers=headers).json()["items"] == []
    clear_cache(client)
    assert summary(client, headers, jurisdiction="HCM")["counts"]["received"] == 1
    assert summary(client, headers, jurisdiction="XUAN-HOA")["counts"]["received"] == 0


def test_three_level_city_routes_by_district_and_filters_by_city(client, settings, api_key, city_map, tmp_path):
    """A city → district → ward map, built from two files: districts naming the city, wards naming their district."""
    districts = [
        {
            "type": "Feature",
            "properties": {"code": "D1", "name": "Quận Một", "city": "C", "city_name": "Thành phố C"},
            "geometry": square(106.670, 10.765, 0.040),
        }
    ]
    district_path = tmp_path / "districts.geojson"
    district_path.write_text(json.dumps({"type": "FeatureCollection", "features": districts}))
    done = intake(
        settings,
        "jurisdictions",
        "import",
        str(district_path),
        "--level",
        "district",
        "--parent-field",
        "city",
        "--parent-name-field",
        "city_name",
        "--parent-level",
        "city",
    )
    assert done.returncode == 0, done.stderr
    wards = tmp_path / "w"
    wards.mkdir()
    path = ward_file(wards, parent="D1", parent_name="Quận Một")
    done = intake(
        settings,
        "jurisdictions",
        "import",
        str(path),
        "--replace",
        "--code-field",
        "ma",
        "--name-field",
        "ten",
        "--parent-field",
        "tinh",
        "--parent-name-field",
        "ten_tinh",
    )
    assert done.returncode == 0, done.stderr
    assert codes(client)["D1"].parent_code == "C"

    catalogue = (
        (ROOT / "service/catalogue/catalogue.yaml").read_text().replace('version: "2026.12.1"', 'version: "three.1"')
    )
    start = catalogue.index("routing_rules:\n") + len("routing_rules:\n")
    end = catalogue.index("  - {category: road_traffic")
    catalogue = (
        catalogue[:start] + "  - {category: urban_order, jurisdiction: D1, department: so-xay-dung}\n"
        "  - {category: street_lighting, jurisdiction: C, department: so-xay-dung}\n" + catalogue[end:]
    )
    own = tmp_path / "three.yaml"
    own.write_text(catalogue)
    done = intake(settings, "catalogue", "load", str(own))
    assert done.returncode == 0, done.stderr

    sidewalk = submit(client, api_key, *BEN_THANH_MARKET, service_code="urban_order")
    lamp = submit(client, api_key, *BEN_THANH_MARKET, service_code="street_lighting")
    assert processed(client, sidewalk.json()).department_code == "so-xay-dung"
    report = processed(client, lamp.json())
    assert (report.jurisdiction_code, report.department_code) == ("26734", "so-xay-dung")

    from tests.test_ioc import key_for

    listed = client.get("/v1/tickets", params={"jurisdiction": "C"}, headers=key_for(client, "admin")).json()
    assert len(listed["items"]) == 2
