"""The app's catalogue: an app builds its report form from GET /v1/categories, and POST /v1/reports
checks the answers by the same rule as Open311's attribute[...] fields."""

import json
from pathlib import Path
from uuid import UUID

import yaml

from service.auth import users
from service.catalogue import service as catalogue_service
from service.models import Report
from tests.conftest import in_app, run_worker
from tests.factories import jpeg_bytes, report_body

CATALOGUE = Path(__file__).resolve().parent.parent / "service" / "catalogue" / "catalogue.yaml"
TRASH = "Rác thải chất đống bốc mùi trước chợ Bến Thành mấy ngày nay"
POTHOLE = "Ổ gà lớn giữa đường Lê Lợi trước chợ Bến Thành, xe máy dễ té"
FLOOD = "Ngập sâu sau cơn mưa chiều nay trước chợ Bến Thành"


def submit(client, api_key, **fields):
    return client.post("/v1/reports", json=report_body(**fields), headers={"X-API-Key": api_key})


def stored(client, answer) -> Report:
    return in_app(client, lambda s: s.get(Report, UUID(answer["id"])))


def field_errors(response) -> list[tuple[str, str]]:
    assert response.headers["content-type"] == "application/problem+json"
    return [(error["field"], error["code"]) for error in response.json()["errors"]]


def test_app_builds_its_form_from_categories_with_attributes(client):
    response = client.get("/v1/categories")  # no key: the catalogue is public
    assert response.status_code == 200
    catalogue = response.json()
    assert catalogue["version"].startswith("2026.")
    by_code = {category["code"]: category for category in catalogue["categories"]}
    assert list(by_code)[:2] == ["road_traffic", "street_lighting"]  # the catalogue's order
    assert (by_code["street_lighting"]["name_vi"], by_code["street_lighting"]["name_en"]) == (
        "Chiếu sáng công cộng",
        "Street lighting",
    )
    assert by_code["street_lighting"]["attributes"] == []
    [waste_type] = by_code["waste_sanitation"]["attributes"]
    assert {key: waste_type[key] for key in ("code", "datatype", "required", "variable", "order")} == {
        "code": "waste_type",
        "datatype": "multivaluelist",
        "required": True,
        "variable": True,
        "order": 1,
    }
    assert waste_type["description_vi"] == "Loại rác gì? (chọn một hoặc nhiều)"
    assert waste_type["description_en"] == "What kind of waste? (choose one or more)"
    assert waste_type["values"][0] == {"key": "household", "name_vi": "Rác sinh hoạt", "name_en": "Household waste"}
    [depth] = by_code["drainage_flooding"]["attributes"]
    assert (depth["datatype"], depth["required"], depth["values"]) == ("number", False, [])
    assert depth["datatype_description_en"] == "A number, e.g. 30"
    assert [value["key"] for value in by_code["road_traffic"]["attributes"][0]["values"]] == ["small", "medium", "large"]
    # The same catalogue as Open311's service list.
    services = client.get("/open311/v2/services.json").json()
    assert [service["service_code"] for service in services] == list(by_code)


def test_categories_are_cacheable_and_revalidate_with_their_etag(client):
    first = client.get("/v1/categories")
    assert first.headers["cache-control"] == "public, max-age=300"
    etag = first.headers["etag"]
    # Both languages in one answer: the same bytes whatever Accept-Language says.
    assert client.get("/v1/categories", headers={"Accept-Language": "en"}).content == first.content
    again = client.get("/v1/categories", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/v1/categories", headers={"If-None-Match": '"stale"'}).status_code == 200


def test_categories_etag_changes_when_the_catalogue_is_reloaded(client, tmp_path):
    before = client.get("/v1/categories")
    data = yaml.safe_load(CATALOGUE.read_text())
    data["version"] = "2099.1.1"
    data["categories"][1]["name_en"] = "Street lights"
    edited = tmp_path / "catalogue.yaml"
    edited.write_text(yaml.safe_dump(data, allow_unicode=True))

    def load(path):
        catalogue, checksum = catalogue_service.read_file(path)
        return lambda s: catalogue_service.load(s, catalogue=catalogue, checksum=checksum, source="test")

    try:
        in_app(client, load(edited))
        after = client.get("/v1/categories", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
        assert after.json()["version"].startswith("2099.1.1+")
        assert after.json()["categories"][1]["name_en"] == "Street lights"
    finally:
        in_app(client, load(CATALOGUE))  # the other tests' catalogue
    assert client.get("/v1/categories").headers["etag"] == before.headers["etag"]


def test_report_with_missing_required_attribute_is_422_naming_it(client, api_key):
    response = submit(client, api_key, description=TRASH, service_code="waste_sanitation")
    assert response.status_code == 422
    assert response.json()["code"] == "attribute_required"
    assert field_errors(response) == [("attributes.waste_type", "attribute_required")]
    assert "What kind of waste?" in response.json()["errors"][0]["message"]
    vietnamese = submit(client, api_key, description=TRASH, service_code="waste_sanitation", attributes={"waste_type": []})
    assert vietnamese.status_code == 422  # an empty answer is no answer
    answer = submit(client, api_key, description=TRASH, service_code="waste_sanitation",
                    attributes={"waste_type": ["household", "bulky"]})
    assert answer.status_code == 201, answer.text
    assert stored(client, answer.json()).attributes == {"waste_type": ["household", "bulky"]}
    # Without a category there is nothing to require: the classifier picks one later.
    assert submit(client, api_key, description=TRASH).status_code == 201


def test_report_with_wrong_attribute_value_is_422_naming_it(client, api_key):
    response = submit(client, api_key, description=POTHOLE, service_code="road_traffic", attributes={"hazard_size": "huge"})
    assert response.status_code == 422
    assert field_errors(response) == [("attributes.hazard_size", "attribute_invalid")]
    assert "'huge' is not among the allowed keys" in response.json()["errors"][0]["message"]
    response = submit(client, api_key, description=FLOOD, service_code="drainage_flooding",
                      attributes={"water_depth_cm": "knee-deep"})
    assert field_errors(response) == [("attributes.water_depth_cm", "attribute_invalid")]
    # Every problem at once, so the form is fixed in one go.
    response = submit(client, api_key, description=TRASH, service_code="waste_sanitation",
                      attributes={"waste_type": ["household", "gold"], "colour": "red"})
    assert sorted(field_errors(response)) == [
        ("attributes.colour", "unknown_attribute"),
        ("attributes.waste_type", "attribute_invalid"),
    ]
    # A JSON value of the wrong kind is a bad answer like any other (see the test below).
    response = submit(client, api_key, description=FLOOD, service_code="drainage_flooding", attributes={"water_depth_cm": True})
    assert field_errors(response) == [("attributes.water_depth_cm", "attribute_invalid")]
    # A number may come as a JSON number or as text.
    for depth in (40, "40"):
        answer = submit(client, api_key, description=FLOOD, service_code="drainage_flooding", attributes={"water_depth_cm": depth})
        assert answer.status_code == 201, answer.text
        assert stored(client, answer.json()).attributes == {"water_depth_cm": 40}


def test_attribute_answer_of_the_wrong_json_type_is_422_attribute_invalid_naming_the_attribute(client, api_key):
    wrong = [
        (FLOOD, "drainage_flooding", "water_depth_cm", True),
        (FLOOD, "drainage_flooding", "water_depth_cm", [30]),
        (FLOOD, "drainage_flooding", "water_depth_cm", {"cm": 30}),
        (POTHOLE, "road_traffic", "hazard_size", None),
        (POTHOLE, "road_traffic", "hazard_size", {"size": {"deep": ["large"]}}),
        # A single choice is one key, never a list of them.
        (POTHOLE, "road_traffic", "hazard_size", ["large"]),
        (TRASH, "waste_sanitation", "waste_type", [["household"]]),
        (TRASH, "waste_sanitation", "waste_type", ["household", None]),
        (TRASH, "waste_sanitation", "waste_type", ["household"] * 51),
    ]
    for description, service_code, code, answer in wrong:
        response = submit(client, api_key, description=description, service_code=service_code, attributes={code: answer})
        assert response.status_code == 422, (code, answer, response.text)
        assert response.json()["code"] == "attribute_invalid", (code, answer)
        assert field_errors(response) == [(f"attributes.{code}", "attribute_invalid")], (code, answer)
        # Named as the app sent it, without the schema's internals (constrained-str, int, float).
        assert "constrained" not in response.text and f"{code}." not in response.text
    answer = submit(client, api_key, description=POTHOLE, service_code="road_traffic", attributes={"hazard_size": "large"})
    assert answer.status_code == 201 and stored(client, answer.json()).attributes == {"hazard_size": "large"}


def test_report_with_unknown_attribute_code_is_422_naming_it(client, api_key):
    response = submit(client, api_key, description=POTHOLE, service_code="road_traffic",
                      attributes={"hazard_size": "large", "colour": "red"})
    assert response.status_code == 422
    assert field_errors(response) == [("attributes.colour", "unknown_attribute")]
    response = submit(client, api_key, description=POTHOLE, attributes={"hazard_size": "large"})
    assert response.status_code == 422
    assert field_errors(response) == [("attributes", "validation_error")]
    assert in_app(client, lambda s: s.get(Report, UUID(int=0))) is None


def test_attribute_errors_follow_accept_language(client, api_key):
    response = client.post("/v1/reports", json=report_body(description=TRASH, service_code="waste_sanitation"),
                           headers={"X-API-Key": api_key, "Accept-Language": "vi"})
    assert response.json()["errors"][0]["message"] == "Thiếu thông tin bắt buộc của lĩnh vực này."


def test_multipart_report_carries_attributes_as_json_text(client, api_key):
    fields = {key: str(value) for key, value in report_body(description=TRASH, service_code="waste_sanitation").items()}
    response = client.post(
        "/v1/reports",
        data={**fields, "attributes": json.dumps({"waste_type": ["construction"]})},
        files=[("photos", ("trash.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    )
    assert response.status_code == 201, response.text
    assert stored(client, response.json()).attributes == {"waste_type": ["construction"]}
    response = client.post("/v1/reports", data={**fields, "attributes": "{not json"}, headers={"X-API-Key": api_key},
                           files=[("photos", ("trash.jpg", jpeg_bytes(), "image/jpeg"))])
    assert response.status_code == 422
    assert field_errors(response) == [("attributes", "value_error")]
    response = submit(client, api_key, description=TRASH, service_code="waste_sanitation", attributes="")
    assert field_errors(response) == [("attributes", "value_error")]


def test_answers_are_shown_on_the_ticket_for_staff_and_in_open311(client, api_key):
    answer = submit(client, api_key, description=TRASH, service_code="waste_sanitation",
                    attributes={"waste_type": ["household", "bulky"]}).json()
    run_worker(client)
    in_app(client, lambda s: users.create(s, username="dispatcher.an", password="correct horse battery", role="dispatcher"))
    token = client.post("/v1/auth/token", data={"username": "dispatcher.an", "password": "correct horse battery"}).json()
    staff = {"Authorization": f"Bearer {token['access_token']}", "Accept-Language": "vi"}
    ticket = client.get(f"/v1/tickets/{answer['id']}", headers=staff).json()
    assert ticket["attributes"] == [
        {
            "code": "waste_type",
            "question": "Loại rác gì? (chọn một hoặc nhiều)",
            "value": ["household", "bulky"],
            "value_names": ["Rác sinh hoạt", "Đồ cồng kềnh (nệm, tủ…)"],
        }
    ]
    english = client.get(f"/v1/tickets/{answer['id']}", headers={**staff, "Accept-Language": "en"}).json()
    assert english["attributes"][0]["question"] == "What kind of waste? (choose one or more)"
    # The app that filed it reads its answers back too.
    assert client.get(f"/v1/tickets/{answer['id']}", headers={"X-API-Key": api_key}).json()["attributes"] == ticket["attributes"]
    [request] = client.get(f"/open311/v2/requests/{answer['tracking_code']}.json?extensions=true").json()
    assert request["extended_attributes"]["attributes"] == [{"code": "waste_type", "value": ["household", "bulky"]}]
