"""What an outside probe of the intake path sent, answered as a client expects: a 4xx that says what is
wrong (never a 500), nothing stored, and every answer (a 500 included) with the security headers and
its request id."""

import json
import logging

from fastapi import FastAPI
from sqlmodel import func, select

from service.auth import api_keys
from service.models import Photo, Report
from tests.conftest import in_app
from tests.factories import report_body
from tests.test_open311 import BASE
from tests.test_open311 import fields as open311_fields
from tests.test_photo_streaming import BOUNDARY, CLOSING, fields, part, post_raw, stored_files


def reports_stored(client) -> int:
    async def run(session):
        return (await session.exec(select(func.count()).select_from(Report))).one()

    return in_app(client, run)


def test_an_empty_idempotency_key_is_refused_and_files_nothing(client, api_key):
    # Stored, an empty key would clash with every later empty one: each of those became a 500.
    for _ in range(2):
        response = client.post(
            "/v1/reports", json=report_body(), headers={"X-API-Key": api_key, "Idempotency-Key": ""}
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "idempotency-key"
    for _ in range(2):
        response = client.post(
            f"{BASE}/requests.json", data={"api_key": api_key, **open311_fields()}, headers={"Idempotency-Key": ""}
        )
        assert response.status_code == 400, response.text
    assert reports_stored(client) == 0


def test_a_form_in_a_charset_that_refuses_its_bytes_is_a_422_not_a_500(client, api_key):
    # punycode raises a bare UnicodeError on some bytes and turns others into other names: a field error.
    body = fields(description="Den duong hong roi may hom nay, rat toi") + CLOSING
    response = client.post(
        "/v1/reports",
        content=body,
        headers={"X-API-Key": api_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}; charset=punycode"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"]
    assert reports_stored(client) == 0


def test_deep_json_sent_with_a_second_content_type_is_refused_as_too_deep(client, api_key):
    # The body limits read the first Content-Type, as the route does: the depth check is not skipped.
    response = client.post(
        "/v1/reports",
        content=b"[" * 50_000,
        headers=[("X-API-Key", api_key), ("Content-Type", "application/json"), ("Content-Type", "text/plain")],
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["code"] == "json_too_deep"
    assert reports_stored(client) == 0


def test_deeply_nested_attributes_in_a_form_are_a_422(client, api_key):
    body = fields(service_code="road_traffic") + part("attributes", b"[" * 30_000) + CLOSING
    response = client.post(
        "/v1/reports",
        content=body,
        headers={"X-API-Key": api_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 422, response.text
    assert reports_stored(client) == 0


def test_a_client_hanging_up_mid_upload_is_not_an_error(client, api_key, caplog):
    def half_a_photo():
        yield fields() + part("photos", b"\xff\xd8\xff\xe0" + b"\0" * 200_000, "street.jpg")[:100_000]

    with caplog.at_level(logging.INFO):
        status, _ = post_raw(client, "/v1/reports", half_a_photo(), hang_up=True, headers={"x-api-key": api_key})
    assert status == 400  # counted as the client's doing, not a 5xx
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert stored_files(client) == []
    assert reports_stored(client) == 0 and in_app(
        client, lambda session: session.exec(select(func.count()).select_from(Photo))
    ).one() == 0


def test_an_unexpected_error_is_a_problem_answer_with_the_security_headers_and_request_id(client, caplog):
    app: FastAPI = client.app

    async def broken() -> None:
        raise RuntimeError("a defect nobody foresaw")

    app.add_api_route("/v1/broken-for-this-test", broken)
    with caplog.at_level(logging.ERROR):
        response = client.get("/v1/broken-for-this-test", headers={"X-Request-ID": "6f9619ff8b86d011b42d00c04fc964ff"})
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert response.headers["x-request-id"] == "6f9619ff8b86d011b42d00c04fc964ff"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in response.headers
    assert len([record for record in caplog.records if record.levelno >= logging.ERROR]) == 1  # logged once


def test_a_database_outage_while_filing_is_a_503_problem_with_the_security_headers_and_request_id(
    client, api_key, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from service.webhooks import outbox

    def refused(*args, **kwargs):
        raise OperationalError("INSERT INTO webhook_events", None, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(outbox, "publish", refused)  # inside the writer's transaction, before its commit
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)  # answer as production would
    response = client.post(
        "/v1/reports",
        json=report_body(),
        headers={"X-API-Key": api_key, "X-Request-ID": "6f9619ff8b86d011b42d00c04fc964ff"},
    )
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-request-id"] == "6f9619ff8b86d011b42d00c04fc964ff"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert reports_stored(client) == 0


def test_half_a_surrogate_pair_in_any_json_text_is_a_422_and_files_nothing(client, api_key):
    # No UTF-8 encodes "\ud800" alone: the fingerprint, the error message and the database all failed on it.
    lone = "\ud800"
    body = report_body(service_code="road_traffic", attributes={"hazard_size": lone})
    for headers in ({"X-API-Key": api_key}, {"X-API-Key": api_key, "Idempotency-Key": "surrogate-1"}):
        headers["Content-Type"] = "application/json"
        response = client.post("/v1/reports", content=json.dumps(body), headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "text_not_storable"
    attributes = part("attributes", json.dumps({"hazard_size": lone}).encode())
    form = fields(service_code="road_traffic") + attributes + CLOSING
    response = client.post(
        "/v1/reports",
        content=form,
        headers={"X-API-Key": api_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text
    assert reports_stored(client) == 0
    # The same on every JSON route (a staff comment here); a whole pair (an emoji) is text like any other.
    created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()
    admin = in_app(client, lambda s: api_keys.create(s, name="admin", role="admin")).key
    comment = {"body": f"Đã nhận {lone}", "visibility": "internal"}
    response = client.post(
        f"/v1/tickets/{created['id']}/comments",
        content=json.dumps(comment),
        headers={"X-API-Key": admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422 and response.json()["code"] == "text_not_storable", response.text
    comment["body"] = "Đã nhận 👍"
    response = client.post(
        f"/v1/tickets/{created['id']}/comments",
        content=json.dumps(comment),
        headers={"X-API-Key": admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


def test_a_form_in_an_unknown_charset_is_read_as_utf8(client, api_key):
    description = "Ổ gà lớn giữa đường Lê Lợi, xe máy té liên tục"
    response = client.post(
        "/v1/reports",
        content=fields(description=description) + CLOSING,
        headers={"X-API-Key": api_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}; charset=bogus-xx"},
    )
    assert response.status_code == 201, response.text
    assert client.get(f"/v1/reports/{response.json()['tracking_code']}").json()["description"] == description


def test_a_description_without_letters_or_a_coordinate_of_true_is_a_422_and_files_nothing(client, api_key):
    headers = {"X-API-Key": api_key}
    for description in ("\u200b" * 12, "." * 12, "\u200b \u200c \u2060 \ufeff ....."):
        response = client.post("/v1/reports", json=report_body(description=description), headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "description", response.text
    response = client.post("/v1/reports", json={**report_body(), "lat": True, "lon": 106.7}, headers=headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "lat", response.text
    # Sent as a form, the same checks hold.
    response = client.post(
        "/v1/reports",
        content=fields(description="\u200b" * 12) + CLOSING,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 422, response.text
    assert reports_stored(client) == 0
    # A short description in words, numbers or emoji with one digit is still a report.
    assert client.post("/v1/reports", json=report_body(description="Ổ gà 50cm!!!"), headers=headers).status_code == 201


def test_form_text_that_is_not_valid_utf8_is_refused_not_stored_garbled(client, api_key):
    not_utf8 = part("description", b"\xff\xfe Den duong hong roi may hom nay")
    body = fields(description=None) + not_utf8 + CLOSING
    response = client.post(
        "/v1/reports",
        content=body,
        headers={"X-API-Key": api_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 422 and response.json()["errors"], response.text
    # Open311's url-encoded form: a %-escape that is not UTF-8.
    form = {"api_key": api_key, **open311_fields()}
    form.pop("description")
    encoded = "&".join(f"{name}={value}" for name, value in form.items()) + "&description=%ff%fe%20Den%20duong%20hong"
    response = client.post(
        f"{BASE}/requests.json", content=encoded, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400, response.text
    assert reports_stored(client) == 0
