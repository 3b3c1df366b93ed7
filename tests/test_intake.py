"""Submitting reports: the promises a mobile app relies on."""

import re

from sqlmodel import func, select

from service.jobs import process_report_job_id
from service.models import Photo, Report, ReportEvent
from tests.conftest import in_app, run_worker
from tests.factories import BEN_THANH_MARKET, jpeg_bytes, jpeg_with_gps, report_body

TRACKING_CODE = re.compile(r"^[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}$")


def count(client, model) -> int:
    return in_app(client, lambda s: _count(s, model))


async def _count(session, model) -> int:
    return (await session.exec(select(func.count()).select_from(model))).one()


def media_files(client) -> list:
    root = client.app.state.settings.media_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def submit(client, api_key, body=None, files=None, headers=None, **kwargs):
    all_headers = {"X-API-Key": api_key, **(headers or {})}
    if files is not None:
        return client.post("/v1/reports", data=body or report_body(), files=files, headers=all_headers, **kwargs)
    return client.post("/v1/reports", json=body if body is not None else report_body(), headers=all_headers, **kwargs)


def test_report_is_accepted_with_tracking_code_and_location_header(client, api_key):
    response = submit(client, api_key)
    assert response.status_code == 201, response.text
    created = response.json()
    assert TRACKING_CODE.match(created["tracking_code"])
    assert created["status"] == "received"
    assert response.headers["location"].endswith(f"/v1/reports/{created['tracking_code']}")
    assert len(created["citizen_token"]) >= 24

    view = client.get(f"/v1/reports/{created['tracking_code']}").json()
    assert view["status"] == "received"
    assert view["lat"] == BEN_THANH_MARKET[0]
    assert [entry["code"] for entry in view["timeline"]] == ["received"]


def test_tracking_code_lookup_forgives_case_and_missing_dash(client, api_key):
    code = submit(client, api_key).json()["tracking_code"]
    assert client.get(f"/v1/reports/{code.replace('-', '').lower()}").status_code == 200


def test_citizen_view_never_shows_reporter_personal_data(client, api_key):
    body = report_body(reporter_name="Nguyễn Văn An", reporter_phone="0903123456", reporter_email="an@example.vn")
    code = submit(client, api_key, body).json()["tracking_code"]
    page = client.get(f"/v1/reports/{code}").text
    for secret in ("Nguyễn Văn An", "0903123456", "an@example.vn", "reporter"):
        assert secret not in page


def test_report_is_handed_to_the_worker_queue_after_commit(client, api_key):
    created = submit(client, api_key).json()
    settings = client.app.state.settings
    score = client.portal.call(client.app.state.arq.zscore, settings.queue_name, process_report_job_id(created["id"]))
    assert score is not None


def test_missing_or_wrong_api_key_is_401_problem(client, api_key):
    response = client.post("/v1/reports", json=report_body())
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "unauthenticated"
    assert submit(client, "ik_deadbeef_nope").status_code == 401


def test_revoked_key_cannot_submit(client, api_key):
    from service.auth import api_keys

    in_app(client, lambda s: api_keys.revoke(s, prefix=api_key.split("_")[1]))
    assert submit(client, api_key).status_code == 401


def test_latitude_95_is_422_with_field_error(client, api_key):
    response = submit(client, api_key, report_body(lat=95))
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [error["field"] for error in problem["errors"]] == ["lat"]
    assert count(client, Report) == 0


def test_point_outside_the_service_area_is_422(client, api_key):
    response = submit(client, api_key, report_body(lat=21.0285, lon=105.8542))  # Hà Nội
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "outside_service_area"


def test_location_is_required_unless_address_or_photo_gps(client, api_key):
    response = submit(client, api_key, report_body(lat=None, lon=None))
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "location_required"
    response = submit(client, api_key, report_body(lat=None, lon=None, address="12 Lê Lợi, Phường Bến Nghé, Quận 1"))
    assert response.status_code == 201


def test_description_length_and_unknown_fields_are_checked(client, api_key):
    assert submit(client, api_key, report_body(description="ngắn")).status_code == 422
    assert submit(client, api_key, report_body(description="x" * 5001)).status_code == 422
    response = submit(client, api_key, report_body(colour="red"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "colour"


def test_malformed_json_is_422_not_500(client, api_key):
    response = client.post(
        "/v1/reports", content=b"{not json", headers={"X-API-Key": api_key, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    response = client.post(
        "/v1/reports", content=b"[1,2]", headers={"X-API-Key": api_key, "Content-Type": "application/json"}
    )
    assert response.status_code == 422


def test_unknown_service_code_is_422(client, api_key):
    response = submit(client, api_key, report_body(service_code="space_debris"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "unknown_service_code"


def test_errors_follow_accept_language(client, api_key):
    english = submit(client, api_key, report_body(lat=95)).json()
    vietnamese = submit(client, api_key, report_body(lat=95), headers={"Accept-Language": "vi-VN,vi;q=0.9"}).json()
    assert english["title"] == "The request has invalid fields."
    assert vietnamese["title"] == "Yêu cầu có trường dữ liệu không hợp lệ."


def test_same_idempotency_key_twice_gives_one_report(client, api_key):
    headers = {"Idempotency-Key": "retry-123"}
    first = submit(client, api_key, headers=headers)
    second = submit(client, api_key, headers=headers)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json() == second.json()
    assert count(client, Report) == 1


def test_idempotency_key_longer_than_200_characters_is_422_and_files_nothing(client, api_key):
    response = submit(client, api_key, headers={"Idempotency-Key": "k" * 201})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "idempotency-key", "code": "string_too_long", "message": "String should have at most 200 characters"}
    ]
    assert submit(client, api_key, headers={"Idempotency-Key": "k" * 200}).status_code == 201
    assert count(client, Report) == 1


def test_same_idempotency_key_with_a_different_body_is_409(client, api_key):
    headers = {"Idempotency-Key": "retry-456"}
    assert submit(client, api_key, headers=headers).status_code == 201
    response = submit(
        client, api_key, report_body(description="Một phản ánh hoàn toàn khác về rác thải"), headers=headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"


def test_report_with_five_photos_round_trips(client, api_key):
    files = [
        ("photos", (f"p{i}.jpg", jpeg_bytes(color=color), "image/jpeg"))
        for i, color in enumerate(["red", "green", "blue", "white", "black"])
    ]
    response = submit(client, api_key, files=files)
    assert response.status_code == 201, response.text
    view = client.get(f"/v1/reports/{response.json()['tracking_code']}").json()
    assert len(view["photos"]) == 5
    assert count(client, Photo) == 5
    assert len(media_files(client)) == 5


def test_six_photos_are_refused_and_nothing_kept(client, api_key):
    files = [("photos", (f"p{i}.jpg", jpeg_bytes(), "image/jpeg")) for i in range(6)]
    response = submit(client, api_key, files=files)
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "too_many_photos"
    assert count(client, Report) == 0
    assert media_files(client) == []


def test_text_file_named_photo_jpg_is_415(client, api_key):
    files = [("photos", ("photo.jpg", b"just some text, not an image at all", "image/jpeg"))]
    response = submit(client, api_key, files=files)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert count(client, Report) == 0
    assert media_files(client) == []


def test_11_mb_photo_is_413_and_nothing_kept(client, api_key):
    big = jpeg_bytes() + b"\0" * (11 * 1024 * 1024)
    files = [("photos", ("big.jpg", jpeg_bytes(), "image/jpeg")), ("photos", ("huge.jpg", big, "image/jpeg"))]
    response = submit(client, api_key, files=files)
    assert response.status_code == 413
    assert count(client, Report) == 0
    assert count(client, Photo) == 0
    assert media_files(client) == []


def test_photo_gps_gives_the_location_when_none_is_sent(client, api_key):
    files = [("photos", ("gps.jpg", jpeg_with_gps(10.7769, 106.7009), "image/jpeg"))]
    body = report_body(lat=None, lon=None)
    response = submit(client, api_key, body=body, files=files)
    assert response.status_code == 201, response.text
    report = in_app(client, lambda s: s.get(Report, __import__("uuid").UUID(response.json()["id"])))
    assert report.location_source == "photo_exif"
    assert abs(report.lat - 10.7769) < 1e-3 and abs(report.lon - 106.7009) < 1e-3


def test_stored_photo_is_the_uploaded_bytes_with_their_hash(client, api_key):
    import hashlib

    upload = jpeg_with_gps(10.7769, 106.7009)
    response = submit(client, api_key, files=[("photos", ("gps.jpg", upload, "image/jpeg"))])
    assert response.status_code == 201, response.text
    photo = in_app(client, lambda s: s.exec(select(Photo))).one()
    stored = client.app.state.settings.media_dir / photo.original_key
    assert stored.read_bytes() == upload
    assert (photo.size_bytes, photo.sha256) == (len(upload), None)  # hashed by the worker, not on arrival
    assert media_files(client) == [stored]
    run_worker(client)
    photo = in_app(client, lambda s: s.exec(select(Photo))).one()
    assert photo.sha256 == hashlib.sha256(upload).hexdigest()


def test_failure_between_storing_photos_and_commit_leaves_nothing(client, api_key, monkeypatch):
    from service.webhooks import outbox

    def explode(*args, **kwargs):
        raise RuntimeError("disk full while writing the first event")

    monkeypatch.setattr(outbox, "publish", explode)  # the webhook rows, written after the INSERTs, before the commit
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)  # answer as production would
    files = [("photos", ("p.jpg", jpeg_bytes(), "image/jpeg"))]
    response = submit(client, api_key, files=files)
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "disk full" not in response.text
    assert count(client, Report) == 0
    assert count(client, ReportEvent) == 0
    assert media_files(client) == []


def test_photos_are_not_served_before_their_metadata_is_stripped(client, api_key):
    files = [("photos", ("gps.jpg", jpeg_with_gps(10.7769, 106.7009), "image/jpeg"))]
    code = submit(client, api_key, files=files).json()["tracking_code"]
    photo = client.get(f"/v1/reports/{code}").json()["photos"][0]
    assert photo["ready"] is False
    assert client.get(photo["url"].replace("http://testserver", "")).status_code == 409


def test_wrong_content_type_is_415(client, api_key):
    response = client.post(
        "/v1/reports", content=b"description=hello", headers={"X-API-Key": api_key, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_unknown_tracking_code_is_404_problem(client):
    response = client.get("/v1/reports/AAAA-BBBB")
    assert response.status_code == 404
    assert response.json()["code"] == "report_not_found"


def test_which_keys_may_file_a_report_is_the_readmes_role_table(client):
    from service.auth import api_keys

    def key(role: str, department: str | None = None) -> str:
        return in_app(
            client, lambda s: api_keys.create(s, name=f"{role} key", role=role, department_code=department)
        ).key

    # A department's own hotline files what it takes in; an app its citizens' reports.
    assert submit(client, key("department_system", "chieu-sang")).status_code == 201
    assert submit(client, key("citizen_app")).status_code == 201
    for role in ("ioc_viewer", "officer", "supervisor"):
        refused = submit(client, key(role, "chieu-sang" if role != "ioc_viewer" else None))
        assert refused.status_code == 403, (role, refused.text)
    assert count(client, Report) == 2


def test_a_v1_client_cannot_label_its_report_as_come_through_open311(client, api_key):
    for channel in ("open311", "OPEN311", "fax"):
        refused = submit(client, api_key, report_body(channel=channel))
        assert refused.status_code == 422, (channel, refused.text)
        assert refused.json()["errors"][0]["field"] == "channel"
    for channel in ("app", "web", "hotline", "zalo", "email"):  # what an app or a department system may say
        assert submit(client, api_key, report_body(channel=channel)).status_code == 201, channel
    reached = client.post(
        "/open311/v2/requests.json",
        data={"api_key": api_key, "service_code": "street_lighting", "lat": "10.7725", "long": "106.698",
              "description": "Đèn đường trước chợ bị tắt"},
    )
    assert reached.status_code in (200, 201), reached.text
    code = reached.json()[0]["service_request_id"]
    assert client.get(f"/v1/reports/{code}").json()["status"] == "received"

    async def channel_of(session):
        return (await session.exec(select(Report.channel).where(Report.tracking_code == code))).one()

    assert in_app(client, channel_of) == "open311"
