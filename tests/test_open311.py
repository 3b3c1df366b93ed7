"""Open311 GeoReport v2: what an existing 311 client (or the city's partners) relies on."""

import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from uuid import UUID

import httpx
import pytest
from PIL import Image
from sqlmodel import select

from service.auth import api_keys
from service.models import Department, Photo, Report
from service.models.types import utcnow
from service.reports.codes import new_tracking_code
from service.lifecycle import changes as lifecycle
from service.lifecycle.events import EventCode
from service.lifecycle.states import Via
from tests.conftest import in_app, run_worker
from tests.factories import BEN_THANH_MARKET, jpeg_bytes, report_body
from tests.processes import live_api

BASE = "/open311/v2"
W3C_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]


def fields(**overrides) -> dict:
    body = {
        "service_code": "street_lighting",
        "lat": str(BEN_THANH_MARKET[0]),
        "long": str(BEN_THANH_MARKET[1]),
        "description": "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay, rất tối và nguy hiểm.",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def post(client, api_key, fmt="json", files=None, headers=None, **overrides):
    body = fields(**overrides)
    if api_key:
        body["api_key"] = api_key
    return client.post(f"{BASE}/requests.{fmt}", data=body, files=files, headers=headers)


def created(client, api_key, **overrides) -> dict:
    response = post(client, api_key, **overrides)
    assert response.status_code == 201, response.text
    return response.json()[0]


def xml(response) -> ET.Element:
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)


def errors_of(response) -> list[tuple[int, str]]:
    """The spec's error list, from either format."""
    if response.headers["content-type"].startswith("text/xml"):
        root = xml(response)
        assert root.tag == "errors"
        return [(int(error.findtext("code")), error.findtext("description")) for error in root.findall("error")]
    return [(error["code"], error["description"]) for error in response.json()]


def insert_reports(client, *rows: dict) -> list[Report]:
    async def insert(session):
        reports = [
            Report(
                **{
                    "tracking_code": new_tracking_code(),
                    "description": "Ổ gà lớn giữa đường Lê Lợi, xe máy dễ té",
                    **row,
                }
            )
            for row in rows
        ]
        session.add_all(reports)
        return reports

    return in_app(client, insert)


# --- services ---------------------------------------------------------------------------------


def test_service_list_has_the_spec_fields_in_both_formats(client):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    services = client.get(f"{BASE}/services.json").json()
    assert isinstance(services, list)
    road = next(service for service in services if service["service_code"] == "road_traffic")
    assert list(road) == ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
    assert road["service_name"] == "Roads & traffic"
    assert road["metadata"] is True and road["type"] == "realtime"
    assert next(s for s in services if s["service_code"] == "street_lighting")["metadata"] is False

    root = xml(client.get(f"{BASE}/services.xml"))
    assert root.tag == "services"
    assert [element.tag for element in root] == ["service"] * len(services)
    road_xml = next(element for element in root if element.findtext("service_code") == "road_traffic")
    assert road_xml.findtext("metadata") == "true"
    assert road_xml.findtext("service_name") == "Roads & traffic"


def test_service_names_follow_accept_language(client):
    services = client.get(f"{BASE}/services.json", headers={"Accept-Language": "vi"}).json()
    assert next(s for s in services if s["service_code"] == "road_traffic")["service_name"] == "Giao thông"


def test_service_definition_lists_typed_attributes(client):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    definition = client.get(f"{BASE}/services/road_traffic.json").json()
    assert definition["service_code"] == "road_traffic"
    [hazard] = definition["attributes"]
    assert hazard == {
        "variable": True,
        "code": "hazard_size",
        "datatype": "singlevaluelist",
        "required": False,
        "datatype_description": None,
        "order": 1,
        "description": "How large is the damage (pothole, subsidence)?",
        "values": [
            {"key": "small", "name": "Small (under 30 cm)"},
            {"key": "medium", "name": "Medium (30 cm – 1 m)"},
            {"key": "large", "name": "Large (over 1 m)"},
        ],
    }
    waste = client.get(f"{BASE}/services/waste_sanitation.json").json()["attributes"][0]
    assert (waste["datatype"], waste["required"]) == ("multivaluelist", True)

    root = xml(client.get(f"{BASE}/services/drainage_flooding.xml"))
    assert root.tag == "service_definition"
    attribute = root.find("attributes/attribute")
    assert attribute.findtext("code") == "water_depth_cm"
    assert attribute.findtext("datatype") == "number"
    assert attribute.findtext("required") == "false"
    assert attribute.findtext("datatype_description") == "A number, e.g. 30"
    keys = [
        value.findtext("key")
        for value in xml(client.get(f"{BASE}/services/road_traffic.xml")).findall("attributes/attribute/values/value")
    ]
    assert keys == ["small", "medium", "large"]


def test_unknown_service_code_is_404_in_the_error_format(client):
    response = client.get(f"{BASE}/services/space_debris.xml")
    assert response.status_code == 404
    [(code, description)] = errors_of(response)
    assert code == 404 and "space_debris" in description
    response = client.get(f"{BASE}/services/space_debris.json")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert errors_of(response)[0][0] == 404


def test_jurisdiction_is_optional_and_unknown_ones_are_404(client):
    assert client.get(f"{BASE}/services.json", params={"jurisdiction_id": "hochiminhcity.gov.vn"}).status_code == 200
    assert client.get(f"{BASE}/services.json", params={"jurisdiction_id": ""}).status_code == 200
    response = client.get(f"{BASE}/services.json", params={"jurisdiction_id": "sfgov.org"})
    assert response.status_code == 404
    assert "sfgov.org" in errors_of(response)[0][1]
    assert client.get(f"{BASE}/requests.xml", params={"jurisdiction_id": "sfgov.org"}).status_code == 404


def test_unknown_format_and_resource_are_404_errors(client):
    response = client.get(f"{BASE}/services.csv")
    assert response.status_code == 404
    assert errors_of(response)[0][0] == 404
    response = client.get(f"{BASE}/potholes.json")
    assert response.status_code == 404
    assert errors_of(response)[0][0] == 404


def test_discovery_names_the_v2_endpoint_and_both_formats(client):
    document = client.get(f"{BASE}/discovery.json").json()
    [endpoint] = document["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    assert document["changeset"] and document["contact"] and document["key_service"]
    root = xml(client.get(f"{BASE}/discovery.xml"))
    assert root.tag == "discovery"
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == ["text/xml", "application/json"]


# --- POST requests ----------------------------------------------------------------------------


def test_urlencoded_post_creates_a_request_that_reads_back(client, api_key):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    response = post(client, api_key, account_id="acc-42", email="an@example.vn")
    assert response.status_code == 201, response.text
    [answer] = response.json()
    assert list(answer) == ["service_request_id", "service_notice", "account_id", "token"]
    code = answer["service_request_id"]
    assert code in answer["service_notice"]
    assert answer["account_id"] == "acc-42"
    assert response.headers["location"] == f"http://testserver{BASE}/requests/{code}.json"

    [request] = client.get(f"{BASE}/requests/{code}.json").json()
    assert list(request) == REQUEST_FIELDS
    assert request["service_request_id"] == code
    assert request["status"] == "open"
    assert request["service_code"] == "street_lighting"
    assert request["service_name"] == "Street lighting"
    assert (request["lat"], request["long"]) == BEN_THANH_MARKET
    assert request["address_id"] is None and request["zipcode"] is None
    assert request["status_notes"] == "Report received"  # one language per answer, as service_name
    assert re.match(W3C_UTC, request["requested_datetime"]) and re.match(W3C_UTC, request["updated_datetime"])

    report = in_app(client, lambda s: s.get(Report, UUID(answer["token"])))
    assert report.channel == "open311" and report.tracking_code == code

    root = xml(client.get(f"{BASE}/requests/{code.replace('-', '').lower()}.xml"))
    assert root.tag == "service_requests"
    [element] = root.findall("request")
    assert [child.tag for child in element] == REQUEST_FIELDS
    assert element.findtext("service_request_id") == code
    assert element.findtext("address_id") == ""  # an empty element


def test_xml_post_answers_in_xml(client, api_key):
    response = post(client, api_key, fmt="xml", address_string="12 Lê Lợi, Bến Nghé, Quận 1", lat=None, long=None)
    assert response.status_code == 201
    root = xml(response)
    assert root.tag == "service_requests"
    assert root.find("request/service_request_id").text
    assert root.find("request/account_id").text is None


def test_post_takes_the_spec_answers_to_processing_like_v1(client, api_key):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    answer = created(
        client, api_key, service_code="water_supply", description="Ống nước bể phun nước lênh láng trước chợ Bến Thành"
    )
    run_worker(client)
    [request] = client.get(f"{BASE}/requests/{answer['service_request_id']}.json").json()
    assert request["service_code"] == "water_supply"
    assert request["agency_responsible"] == "Saigon Water Corporation (SAWACO)"
    assert request["expected_datetime"] is not None
    assert "Saigon Water Corporation" in request["service_notice"]


def test_missing_or_wrong_api_key_is_403(client, api_key):
    response = post(client, None, fmt="xml")
    assert response.status_code == 403
    assert errors_of(response)[0][0] == 403
    response = post(client, "ik_deadbeef_wrong")
    assert response.status_code == 403
    assert "api_key" in errors_of(response)[0][1]
    # The header works too.
    assert post(client, None, headers={"X-API-Key": api_key}).status_code == 201


def test_invalid_fields_are_400_named_as_in_the_spec(client, api_key):
    response = post(client, api_key, description="dài " * 2000)
    assert response.status_code == 400
    assert errors_of(response)[0][1].startswith("description:")
    response = post(client, api_key, long="east")
    assert response.status_code == 400
    assert errors_of(response)[0][1].startswith("long:")
    response = post(client, api_key, service_code=None)
    assert response.status_code == 400
    assert "service_code" in errors_of(response)[0][1]
    response = post(client, api_key, lat=None, long=None)
    assert response.status_code == 400
    assert "location" in errors_of(response)[0][1]
    response = post(client, api_key, lat="21.0285", long="105.8542")  # Hà Nội
    assert response.status_code == 400
    assert errors_of(response)[0][1].startswith("lat:")
    response = post(client, api_key, service_code="space_debris")
    assert response.status_code == 404


def test_json_or_other_bodies_are_refused(client, api_key):
    response = client.post(f"{BASE}/requests.json", json={"api_key": api_key, **fields()})
    assert response.status_code == 415
    assert errors_of(response)[0][0] == 415


def test_required_attribute_is_enforced(client, api_key):
    trash = "Rác thải chất đống bốc mùi trước chợ Bến Thành mấy ngày nay"
    response = post(client, api_key, service_code="waste_sanitation", description=trash)
    assert response.status_code == 400
    [(code, description)] = errors_of(response)
    assert code == 400 and description.startswith("attribute[waste_type]: is required")
    assert in_app(client, lambda s: s.get(Report, UUID(int=0))) is None

    answer = created(
        client,
        api_key,
        service_code="waste_sanitation",
        description=trash,
        **{"attribute[waste_type][]": ["household", "bulky"]},
    )
    report = in_app(client, lambda s: s.get(Report, UUID(answer["token"])))
    assert report.attributes == {"waste_type": ["household", "bulky"]}
    [request] = client.get(f"{BASE}/requests/{answer['service_request_id']}.json?extensions=true").json()
    assert request["extended_attributes"]["attributes"] == [{"code": "waste_type", "value": ["household", "bulky"]}]


def test_attribute_values_are_checked_against_the_definition(client, api_key):
    pothole = "Ổ gà lớn giữa đường Lê Lợi, xe máy dễ té"
    response = post(
        client, api_key, service_code="road_traffic", description=pothole, **{"attribute[hazard_size]": "huge"}
    )
    assert response.status_code == 400
    assert "huge" in errors_of(response)[0][1]
    flood = "Ngập sâu sau cơn mưa chiều nay trước chợ Bến Thành"
    response = post(
        client,
        api_key,
        service_code="drainage_flooding",
        description=flood,
        **{"attribute[water_depth_cm]": "knee-deep"},
        fmt="xml",
    )
    assert response.status_code == 400
    assert "not a number" in errors_of(response)[0][1]
    answer = created(
        client, api_key, service_code="drainage_flooding", description=flood, **{"attribute[water_depth_cm]": "40"}
    )
    assert in_app(client, lambda s: s.get(Report, UUID(answer["token"]))).attributes == {"water_depth_cm": 40}
    # Optional ones may be left out.
    created(client, api_key, service_code="road_traffic", description=pothole)


def test_multipart_post_with_a_media_photo(client, api_key):
    response = post(client, api_key, files={"media": ("pothole.jpg", jpeg_bytes(), "image/jpeg")})
    assert response.status_code == 201, response.text
    code = response.json()[0]["service_request_id"]
    assert client.get(f"{BASE}/requests/{code}.json").json()[0]["media_url"] is None  # not processed yet
    run_worker(client)
    [request] = client.get(f"{BASE}/requests/{code}.json?extensions=true").json()
    assert request["media_url"].startswith("http://testserver/v1/photos/")
    assert request["extended_attributes"]["photos"][0]["media_url"] == request["media_url"]
    assert request["extended_attributes"]["channel"] == "open311"
    assert request["extended_attributes"]["tracking_code"] == code
    photo = client.get(request["media_url"].removeprefix("http://testserver"))
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"


def test_media_gets_the_same_photo_rules_as_v1(client, api_key):
    response = post(client, api_key, files={"media": ("notes.txt", b"not an image at all, just text", "image/jpeg")})
    assert response.status_code == 415
    too_big = jpeg_bytes() + b"\0" * client.app.state.settings.max_photo_bytes
    response = post(client, api_key, fmt="xml", files={"media": ("big.jpg", too_big, "image/jpeg")})
    assert response.status_code == 413
    assert errors_of(response)[0][0] == 413
    assert in_app(client, lambda s: _count(s, Photo)) == 0
    media = client.app.state.settings.media_dir
    assert not media.exists() or not [path for path in media.rglob("*") if path.is_file()]


async def _count(session, model) -> int:
    return len((await session.exec(select(model))).all())


def test_media_url_is_accepted_and_checked(client, api_key):
    assert post(client, api_key, media_url="https://example.org/pothole.jpg").status_code == 201
    response = post(client, api_key, media_url="javascript:alert(1)")
    assert response.status_code == 400
    assert errors_of(response)[0][1].startswith("media_url:")


# --- to the letter of GeoReport v2 --------------------------------------------------------------


def test_open311_request_without_description_is_accepted(client, api_key):
    answer = created(client, api_key, description=None)
    report = in_app(client, lambda s: s.get(Report, UUID(answer["token"])))
    assert report.description == ""
    [request] = client.get(f"{BASE}/requests/{answer['service_request_id']}.json").json()
    assert request["description"] is None and request["service_code"] == "street_lighting"
    listed = xml(client.get(f"{BASE}/requests/{answer['service_request_id']}.xml"))
    assert listed.find("request/description").text is None  # <description/>
    # Nothing for the classifier to read: the citizen's own category decides, as with a description.
    run_worker(client)
    assert in_app(client, lambda s: s.get(Report, report.id)).status == "assigned"
    # A short one is a description like any other (the spec sets no minimum).
    assert post(client, api_key, description="Tối om").status_code == 201


def test_open311_request_for_other_without_description_waits_for_triage(client, api_key):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    answer = created(client, api_key, service_code="other", description=None)
    run_worker(client)
    report = in_app(client, lambda s: s.get(Report, UUID(answer["token"])))
    assert report.status == "needs_triage" and report.department_code == "dispatch-1022"
    [request] = client.get(f"{BASE}/requests/{answer['service_request_id']}.json").json()
    assert (request["status"], request["service_code"], request["service_name"]) == ("open", "other", "Other")


def test_open311_request_waiting_for_triage_has_a_service_code_and_name(client):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    [waiting] = insert_reports(client, {"status": "needs_triage", "department_code": "dispatch-1022"})
    [request] = client.get(f"{BASE}/requests/{waiting.tracking_code}.json").json()
    assert (request["service_code"], request["service_name"]) == ("other", "Other")
    in_vietnamese = xml(client.get(f"{BASE}/requests/{waiting.tracking_code}.xml", headers={"Accept-Language": "vi"}))
    assert in_vietnamese.findtext("request/service_code") == "other"
    assert in_vietnamese.findtext("request/service_name") == "Khác"
    # Listed under the service it shows.
    listed = client.get(f"{BASE}/requests.json", params={"service_code": "other"}).json()
    assert [r["service_request_id"] for r in listed] == [waiting.tracking_code]


def test_open311_unknown_attribute_is_ignored(client, api_key):
    pothole = "Ổ gà lớn giữa đường Lê Lợi, xe máy dễ té"
    answer = created(client, api_key, service_code="road_traffic", description=pothole,
                     **{"attribute[hazard_size]": "large", "attribute[colour]": "red", "attribute[x][]": ["1", "2"]})
    report = in_app(client, lambda s: s.get(Report, UUID(answer["token"])))
    assert report.attributes == {"hazard_size": "large"}
    # Known ones are still checked, and required ones still enforced.
    response = post(client, api_key, service_code="road_traffic", **{"attribute[hazard_size]": "huge", "attribute[colour]": "red"})
    assert response.status_code == 400 and "huge" in errors_of(response)[0][1]
    response = post(client, api_key, service_code="waste_sanitation", **{"attribute[colour]": "red"}, fmt="xml")
    assert response.status_code == 400 and errors_of(response)[0][1].startswith("attribute[waste_type]: is required")


def test_open311_datetime_answer_without_offset_is_city_time():
    from zoneinfo import ZoneInfo

    from service.catalogue.attributes import check_answers

    seen = [{"code": "seen_at", "datatype": "datetime", "required": True, "order": 1, "description_en": "When?"}]
    city = ZoneInfo("Asia/Ho_Chi_Minh")
    assert check_answers(seen, {"seen_at": "2026-11-29T20:15:00"}, zone=city) == {"seen_at": "2026-11-29T13:15:00+00:00"}
    assert check_answers(seen, {"seen_at": "2026-11-29T20:15:00Z"}, zone=city) == {"seen_at": "2026-11-29T20:15:00+00:00"}
    assert check_answers(seen, {"seen_at": "2026-11-29"}, zone=city) == {"seen_at": "2026-11-29"}  # a day stays a day


def test_open311_media_url_points_at_the_photo(client, api_key, settings, tmp_path):
    photo = jpeg_bytes(width=120, height=90, color="red")
    with live_api(settings, tmp_path) as base:
        endpoint = f"{base}{BASE}"
        filed = httpx.post(f"{endpoint}/requests.json", data={"api_key": api_key, **fields()},
                           files={"media": ("pothole.jpg", photo, "image/jpeg")})
        assert filed.status_code == 201, filed.text
        code = filed.json()[0]["service_request_id"]
        run_worker(client)
        [request] = httpx.get(f"{endpoint}/requests/{code}.json").json()
        from_xml = xml(httpx.get(f"{endpoint}/requests/{code}.xml")).findtext("request/media_url")
        listed = httpx.get(f"{endpoint}/requests.json").json()
        assert request["media_url"] == from_xml == listed[0]["media_url"]
        assert request["media_url"].startswith(f"{base}/v1/photos/")
        # Exactly the URL given, by a client with no key, no token, no cookie.
        fetched = httpx.get(request["media_url"])
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg"
    shown = Image.open(io.BytesIO(fetched.content))
    assert shown.size == (120, 90) and shown.getpixel((60, 45))[0] > 200  # the red photo, re-encoded
    assert not shown.getexif()


def test_open311_405_is_in_open311_error_format_json_and_xml(client):
    response = client.delete(f"{BASE}/services.json")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    [(code, description)] = errors_of(response)
    assert code == 405 and "GET" in description
    assert response.headers["allow"] == "GET, HEAD"
    response = client.put(f"{BASE}/requests.xml", data={"service_code": "road_traffic"})
    assert response.status_code == 405
    assert errors_of(response)[0][0] == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_open311_post_to_a_get_only_resource_is_405_with_its_allow_not_404(client):
    for path in (
        "discovery.json",
        "services.json",
        "services.xml",
        "services/road_traffic.json",
        "requests/HCM-0000-0000.json",
        "tokens/x.xml",
    ):
        response = client.post(f"{BASE}/{path}", data={"service_code": "road_traffic"})
        assert response.status_code == 405, path
        assert response.headers["allow"] == "GET, HEAD", path
        fmt = "application/json" if path.endswith(".json") else "text/xml"
        assert response.headers["content-type"].startswith(fmt), path
        [(code, description)] = errors_of(response)
        assert code == 405 and "GET" in description, path
    # An unknown resource stays a 404 for either method; POST requests.json is still a request.
    for method in ("GET", "POST"):
        response = client.request(method, f"{BASE}/nothing_here.json")
        assert response.status_code == 404 and "allow" not in response.headers
    assert client.post(f"{BASE}/requests.json", data={"service_code": "road_traffic"}).status_code == 403


def test_open311_429_is_in_open311_error_format_json_and_xml(client):
    slow = in_app(client, lambda s: api_keys.create(s, name="slow partner", rate_limit="1/minute")).key
    assert post(client, slow).status_code == 201
    for fmt in ("json", "xml"):
        limited = post(client, slow, fmt=fmt)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert errors_of(limited)[0][0] == 429


def test_open311_every_error_outside_its_routes_is_in_its_format(client, monkeypatch):
    # 404: a path under /open311/ that is no resource, in the format its name asks for (XML otherwise).
    for path, content_type in (("/open311/v3/services.json", "application/json"), ("/open311/", "text/xml")):
        response = client.get(path)
        assert response.status_code == 404 and response.headers["content-type"].startswith(content_type)
        assert errors_of(response)[0][0] == 404
    # 422 and 413 from the body limits, before any route: the spec's 400 and our 413.
    deep = "[" * 100 + "]" * 100
    response = client.post(f"{BASE}/requests.json", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and errors_of(response)[0][0] == 400
    big = client.post(f"{BASE}/requests.xml", content=b"x" * 300_000, headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and errors_of(big)[0][0] == 413
    # 500 from any route under /open311/, not only the GeoReport ones.
    async def crash():
        raise RuntimeError("boom")

    client.app.add_api_route("/open311/crash.json", crash)
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)  # answer as production would
    response = client.get("/open311/crash.json")
    assert response.status_code == 500
    [(code, description)] = errors_of(response)
    assert code == 500 and "boom" not in description


def test_idempotency_key_makes_retries_safe(client, api_key):
    headers = {"Idempotency-Key": "open311-retry-1"}
    first = post(client, api_key, headers=headers)
    again = post(client, api_key, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]
    changed = post(client, api_key, headers=headers, description="Một phản ánh khác hẳn, về chuyện khác hoàn toàn")
    assert changed.status_code == 409
    assert in_app(client, lambda s: _count(s, Report)) == 1


def test_reporter_details_are_kept_but_never_shown(client, api_key):
    answer = created(
        client,
        api_key,
        first_name="Văn An",
        last_name="Nguyễn",
        email="an@example.vn",
        phone="0903123456",
        device_id="device-123",
    )
    report = in_app(client, lambda s: s.get(Report, UUID(answer["token"])))
    assert (report.reporter_name, report.reporter_email, report.reporter_phone) == (
        "Văn An Nguyễn",
        "an@example.vn",
        "0903123456",
    )
    code = answer["service_request_id"]
    for url in (
        f"{BASE}/requests/{code}.json?extensions=true",
        f"{BASE}/requests/{code}.xml?extensions=true",
        f"{BASE}/requests.json?extensions=true",
        f"{BASE}/requests.xml",
    ):
        text = client.get(url).text
        assert code in text
        for secret in ("Văn An", "Nguyễn", "an@example.vn", "0903123456", "device-123"):
            assert secret not in text


# --- GET requests -----------------------------------------------------------------------------


def test_private_report_is_never_listed(client, api_key):
    response = client.post("/v1/reports", json=report_body(is_public=False), headers={"X-API-Key": api_key})
    private = response.json()["tracking_code"]
    public = created(client, api_key)["service_request_id"]
    listed = [r["service_request_id"] for r in client.get(f"{BASE}/requests.json").json()]
    assert listed == [public]
    by_id = client.get(f"{BASE}/requests.json", params={"service_request_id": f"{private},{public}"}).json()
    assert [r["service_request_id"] for r in by_id] == [public]
    assert private not in client.get(f"{BASE}/requests.xml").text


SECRET_TEXT = "Nhà số 14 Nguyễn Trãi đổ rác thải sang sân nhà tôi mỗi đêm, xin đừng cho họ biết ai báo"
SECRET_ADDRESS = "16 Nguyễn Trãi, phường Bến Thành, Quận 1"
SECRET_REPLY = "Đã làm việc với hộ số 14 Nguyễn Trãi"


def test_private_report_read_by_its_code_shows_only_what_v1_shows_without_the_citizen_token(client, api_key):
    answer = client.post(
        "/v1/reports",
        data=report_body(
            description=SECRET_TEXT,
            address=SECRET_ADDRESS,
            is_public="false",
            service_code="waste_sanitation",
            attributes=json.dumps({"waste_type": ["household", "bulky"]}),
            reporter_name="Trần Thị Bình",
            reporter_phone="0909876543",
        ),
        files=[("photos", ("yard.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    ).json()
    run_worker(client)

    async def reply(session):
        report = await session.get(Report, UUID(answer["id"]))
        await lifecycle.note(session, report, EventCode.PUBLIC_REPLY, message=SECRET_REPLY, public=True)

    in_app(client, reply)
    code = answer["tracking_code"]
    v1 = client.get(f"/v1/reports/{code}", headers={"Accept-Language": "vi"}).json()
    assert v1["details_withheld"] is True and v1["department"] is not None

    [request] = client.get(f"{BASE}/requests/{code}.json?extensions=true").json()
    assert request["service_request_id"] == code and request["status"] == "open"
    # Its progress shows, as on /v1: the service, the agency, the dates.
    assert request["service_code"] == "waste_sanitation" and request["agency_responsible"] == v1["department"]["name"]
    assert request["requested_datetime"] and request["updated_datetime"]
    # What the citizen wrote and where does not, nor its photos and answers, nor what a person replied.
    assert [request[name] for name in ("description", "address", "lat", "long", "media_url")] == [None] * 5
    assert request["status_notes"] != SECRET_REPLY
    extended = request["extended_attributes"]
    assert extended["details_withheld"] is True and extended["photos"] == [] and extended["attributes"] == []
    for url in (
        f"{BASE}/requests/{code}.json",
        f"{BASE}/requests/{code}.json?extensions=true",
        f"{BASE}/requests/{code}.xml",
        f"{BASE}/requests/{code}.xml?extensions=true",
    ):
        response = client.get(url, headers={"Accept-Language": "en"})
        assert response.status_code == 200 and code in response.text
        for secret in ("Nguyễn Trãi", "nhà tôi", "/v1/photos/", "household", "Trần Thị Bình", "0909876543", "10.77"):
            assert secret not in response.text, (url, secret)
    root = xml(client.get(f"{BASE}/requests/{code}.xml?extensions=true"))
    assert root.findtext("request/description") == "" and root.findtext("request/lat") == ""  # empty elements
    assert root.findtext("request/extended_attributes/details_withheld") == "true"


def test_public_report_read_by_its_code_shows_its_details_photos_and_answers(client, api_key):
    answer = client.post(
        "/v1/reports",
        data=report_body(
            description=SECRET_TEXT,
            address=SECRET_ADDRESS,
            service_code="waste_sanitation",
            attributes=json.dumps({"waste_type": ["household"]}),
        ),
        files=[("photos", ("yard.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    ).json()
    run_worker(client)
    [request] = client.get(f"{BASE}/requests/{answer['tracking_code']}.json?extensions=true").json()
    assert request["description"] == SECRET_TEXT and request["address"] == SECRET_ADDRESS
    assert request["lat"] == BEN_THANH_MARKET[0] and request["media_url"].startswith("http://testserver/v1/photos/")
    extended = request["extended_attributes"]
    assert extended["details_withheld"] is False and len(extended["photos"]) == 1
    assert extended["attributes"] == [{"code": "waste_type", "value": ["household"]}]


def test_default_window_is_90_days_and_at_most_1000(client):
    now = utcnow()
    insert_reports(client, *({"created_at": now - timedelta(minutes=i)} for i in range(1003)))
    [old] = insert_reports(client, {"created_at": now - timedelta(days=100)})

    page = client.get(f"{BASE}/requests.json").json()
    assert len(page) == 1000
    assert page[0]["requested_datetime"] >= page[-1]["requested_datetime"]
    assert len(client.get(f"{BASE}/requests.json", params={"page": 2}).json()) == 3
    assert len(client.get(f"{BASE}/requests.json", params={"page_size": 10, "page": 3}).json()) == 10
    assert client.get(f"{BASE}/requests.json", params={"page_size": 1001}).status_code == 400
    assert len(xml(client.get(f"{BASE}/requests.xml", params={"page_size": 5}))) == 5

    window = {
        "start_date": (now - timedelta(days=101)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_date": (now - timedelta(days=99)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    }
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json", params=window).json()] == [
        old.tracking_code
    ]
    too_long = {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}
    response = client.get(f"{BASE}/requests.json", params=too_long)
    assert response.status_code == 400
    assert "90 days" in errors_of(response)[0][1]
    response = client.get(f"{BASE}/requests.xml", params={"start_date": "last tuesday"})
    assert response.status_code == 400
    assert errors_of(response)[0][1].startswith("start_date")
    # An id overrides the window.
    by_id = client.get(f"{BASE}/requests.json", params={"service_request_id": old.tracking_code}).json()
    assert [r["service_request_id"] for r in by_id] == [old.tracking_code]


def test_status_is_open_or_closed_with_notes_from_the_public_reply(client):
    client.headers["Accept-Language"] = "en"  # the English names; Vietnamese is the default
    due = utcnow() + timedelta(days=3)
    open_, resolved, rejected = insert_reports(
        client,
        {"status": "in_progress", "service_code": "street_lighting", "department_code": "chieu-sang", "due_at": due},
        {"status": "resolved", "service_code": "street_lighting", "department_code": "chieu-sang"},
        {"status": "rejected", "service_code": "other", "department_code": "dispatch-1022"},
    )

    async def events(session):
        await lifecycle.note(session, resolved, EventCode.PUBLIC_REPLY, message="Đã thay bóng đèn mới.", public=True)
        await lifecycle.note(session, resolved, EventCode.INTERNAL_NOTE, message="Kho hết bóng, lấy từ quận 3.")
        await lifecycle.change(session, resolved, via=Via.STAFF, status="closed")
        await lifecycle.change(session, rejected, via=Via.SUPERVISOR, status="reopened")
        await lifecycle.change(session, rejected, via=Via.STAFF, status="rejected", message="Không thuộc thẩm quyền")

    in_app(client, events)
    by_code = {r["service_request_id"]: r for r in client.get(f"{BASE}/requests.json").json()}
    assert by_code[open_.tracking_code]["status"] == "open"
    assert by_code[open_.tracking_code]["agency_responsible"] == "Public Lighting Company"
    assert by_code[open_.tracking_code]["expected_datetime"] == due.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "Public Lighting Company" in by_code[open_.tracking_code]["service_notice"]
    assert by_code[resolved.tracking_code]["status"] == "closed"
    assert by_code[resolved.tracking_code]["status_notes"] == "Đã thay bóng đèn mới."
    assert by_code[rejected.tracking_code]["status_notes"] == "Rejected: Không thuộc thẩm quyền"
    vietnamese = {
        r["service_request_id"]: r
        for r in client.get(f"{BASE}/requests.json", headers={"Accept-Language": "vi"}).json()
    }
    assert vietnamese[rejected.tracking_code]["status_notes"] == "Không thụ lý: Không thuộc thẩm quyền"
    assert "Kho hết bóng" not in client.get(f"{BASE}/requests.xml").text

    closed = client.get(f"{BASE}/requests.json", params={"status": "closed"}).json()
    assert {r["service_request_id"] for r in closed} == {resolved.tracking_code, rejected.tracking_code}
    lighting = client.get(f"{BASE}/requests.json", params={"service_code": "street_lighting,water_supply"}).json()
    assert {r["service_request_id"] for r in lighting} == {open_.tracking_code, resolved.tracking_code}
    assert client.get(f"{BASE}/requests.json", params={"status": "pending"}).status_code == 400

    department = in_app(client, lambda s: s.get(Department, "chieu-sang"))
    vietnamese = client.get(f"{BASE}/requests/{open_.tracking_code}.json", headers={"Accept-Language": "vi"}).json()[0]
    assert vietnamese["agency_responsible"] == department.name_vi


def test_one_open311_answer_speaks_one_language_vietnamese_by_default_english_when_asked(client):
    due = utcnow() + timedelta(days=3)
    [report] = insert_reports(
        client,
        {"status": "assigned", "service_code": "street_lighting", "department_code": "chieu-sang", "due_at": due},
    )
    in_app(client, lambda s: lifecycle.change(s, report, via=Via.STAFF, status="in_progress"))
    department = in_app(client, lambda s: s.get(Department, "chieu-sang"))
    path = f"{BASE}/requests/{report.tracking_code}.json"
    for headers, vietnamese in (({}, True), ({"Accept-Language": "en"}, False), ({"Accept-Language": "vi"}, True)):
        [request] = client.get(path, headers=headers).json()
        assert request["service_name"] == ("Chiếu sáng công cộng" if vietnamese else "Street lighting"), headers
        assert request["agency_responsible"] == (department.name_vi if vietnamese else department.name_en), headers
        assert request["status_notes"] == ("Đang xử lý" if vietnamese else "In progress"), headers
        assert ("dự kiến xử lý" if vietnamese else "expects to resolve") in request["service_notice"], headers
        [listed] = client.get(f"{BASE}/requests.json", headers=headers).json()
        assert listed["status_notes"] == request["status_notes"] and listed["service_name"] == request["service_name"]


def test_open311_lat_or_long_that_is_not_a_finite_number_says_so(client, api_key):
    for field, value in (("lat", "NaN"), ("long", "nan"), ("lat", "inf"), ("long", "-Infinity")):
        response = post(client, api_key, **{field: value})
        assert response.status_code == 400, (field, value)
        [(code, description)] = errors_of(response)
        assert field in description and "finite number" in description, description
        assert "less than" not in description and "greater than" not in description


def test_xml_escapes_markup_and_drops_characters_xml_cannot_carry(client):
    description = 'Biển báo ghi "<b>Cấm</b> & đỗ" bị bẻ cong\x07, nguy hiểm'
    [report] = insert_reports(client, {"description": description, "address": "Lê Lợi <Quận 1>"})
    root = xml(client.get(f"{BASE}/requests/{report.tracking_code}.xml"))
    assert root.findtext("request/description") == 'Biển báo ghi "<b>Cấm</b> & đỗ" bị bẻ cong, nguy hiểm'
    assert root.findtext("request/address") == "Lê Lợi <Quận 1>"
    assert client.get(f"{BASE}/requests/{report.tracking_code}.json").json()[0]["description"] == description


def test_unknown_request_and_token_are_404(client, api_key):
    response = client.get(f"{BASE}/requests/ZZZZ-ZZZZ.xml")
    assert response.status_code == 404
    assert errors_of(response)[0][0] == 404
    assert client.get(f"{BASE}/tokens/not-a-token.json").status_code == 404


def test_token_gives_the_service_request_id(client, api_key):
    answer = created(client, api_key)
    [found] = client.get(f"{BASE}/tokens/{answer['token']}.json").json()
    assert found == {"service_request_id": answer["service_request_id"], "token": answer["token"]}
    root = xml(client.get(f"{BASE}/tokens/{answer['token']}.xml"))
    assert root.findtext("request/service_request_id") == answer["service_request_id"]


# --- a real GeoReport v2 client against a real server ----------------------------------------


@pytest.fixture
def live_server(client, settings, tmp_path):
    """`intake serve` on a loopback port, configured through the environment, on the test DB."""
    with live_api(settings, tmp_path) as base:
        yield base


def test_georeport_client_reads_what_was_filed_on_a_live_server(live_server, api_key):
    from georeport import GeoReport  # the GeoReport v2 client from PyPI (it reads; it cannot post)

    endpoint = f"{live_server}/open311/v2"
    as_json = GeoReport(endpoint, jurisdiction="hochiminhcity.gov.vn")
    as_xml = GeoReport(endpoint, jurisdiction="hochiminhcity.gov.vn", output_format="xml")

    assert "road_traffic" in [service["service_code"] for service in as_json.get_service_list()]
    assert "road_traffic" in [service["service_code"] for service in as_xml.get_service_list()]
    assert as_json.get_service_definition("road_traffic")["attributes"][0]["code"] == "hazard_size"
    assert as_xml.get_service_definition("road_traffic")["attributes"]["attribute"]["code"] == "hazard_size"

    response = httpx.post(
        f"{endpoint}/requests.xml",
        data={
            "api_key": api_key,
            "jurisdiction_id": "hochiminhcity.gov.vn",
            "service_code": "road_traffic",
            "lat": "10.7725",
            "long": "106.6980",
            "attribute[hazard_size]": "large",
            "description": "Ổ gà lớn giữa đường Lê Lợi trước chợ Bến Thành, xe máy dễ té",
        },
    )
    assert response.status_code == 201, response.text
    code = ET.fromstring(response.content).findtext("request/service_request_id")

    from_json = as_json.get_service_request(code)
    from_xml = as_xml.get_service_request(code)
    assert from_json["service_request_id"] == from_xml["service_request_id"] == code
    assert from_json["service_code"] == from_xml["service_code"] == "road_traffic"
    assert from_json["status"] == from_xml["status"] == "open"
    assert float(from_xml["lat"]) == from_json["lat"] == 10.7725
    assert from_xml["requested_datetime"] == from_json["requested_datetime"]
    listed = as_json.get_service_requests(service_request_id=code, status="open")
    assert [request["service_request_id"] for request in listed] == [code]
    assert as_xml.get_service_requests(service_code="road_traffic")["service_request_id"] == code


# --- the pure rules behind attributes ---------------------------------------------------------


def test_catalogue_refuses_list_attributes_without_values_and_duplicate_codes():
    from pydantic import ValidationError

    from service.catalogue.schemas import CategoryEntry

    base = {"code": "x", "name_vi": "X", "name_en": "X"}
    question = {"code": "kind", "description_vi": "Loại?", "description_en": "Kind?"}
    with pytest.raises(ValidationError, match="values are given exactly"):
        CategoryEntry.model_validate({**base, "attributes": [{**question, "datatype": "singlevaluelist"}]})
    with pytest.raises(ValidationError, match="codes must be unique"):
        CategoryEntry.model_validate({**base, "attributes": [{**question, "datatype": "text"}] * 2})
    entry = CategoryEntry.model_validate(
        {**base, "attributes": [{**question, "datatype": "text"}, {**question, "code": "when", "datatype": "datetime"}]}
    )
    assert [attribute.order for attribute in entry.attributes] == [1, 2]


def test_answers_are_normalised_and_all_problems_reported_at_once():
    from zoneinfo import ZoneInfo

    from service.catalogue.attributes import InvalidAttributes, check_answers

    definitions = [
        {"code": "seen_at", "datatype": "datetime", "required": True, "order": 1, "description_en": "When?"},
        {"code": "note", "datatype": "string", "required": False, "order": 2, "description_en": "Note"},
        {"code": "depth", "datatype": "number", "required": True, "order": 3, "description_en": "How deep?"},
    ]
    city = ZoneInfo("Asia/Ho_Chi_Minh")
    assert check_answers(definitions, {"seen_at": "2026-11-29T20:15:00+07:00", "depth": "12.5", "note": ""}, zone=city) == {
        "seen_at": "2026-11-29T13:15:00+00:00",
        "depth": 12.5,
    }
    with pytest.raises(InvalidAttributes) as caught:
        check_answers(definitions, {"seen_at": "yesterday", "note": "line one\nline two"}, zone=city)
    assert [(p.code, p.attribute) for p in caught.value.problems] == [
        ("attribute_invalid", "seen_at"),
        ("attribute_invalid", "note"),
        ("attribute_required", "depth"),
    ]
