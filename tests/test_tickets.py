"""The staff ticket API: sign-in, roles scoped to departments, the workflow, transfers, comments, the citizen's side."""

import csv
import hashlib
import io
from datetime import timedelta
from uuid import UUID

import pytest

from service.auth import users
from service.models import Photo, Report
from service.models.types import utcnow
from tests.conftest import in_app, run_worker
from tests.factories import jpeg_bytes, report_body

PASSWORD = "correct horse battery"


def make_user(client, username, role, department=None):
    in_app(
        client, lambda s: users.create(s, username=username, password=PASSWORD, role=role, department_code=department)
    )
    response = client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def lighting_officer(client):
    return make_user(client, "officer.lighting", "officer", "chieu-sang")


@pytest.fixture
def water_officer(client):
    return make_user(client, "officer.water", "officer", "sawaco")


def file_report(client, api_key, **fields) -> dict:
    body = report_body(
        **{
            "description": "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay",
            "service_code": "street_lighting",
            **fields,
        }
    )
    created = client.post("/v1/reports", json=body, headers={"X-API-Key": api_key}).json()
    run_worker(client)
    return created


def move(client, headers, ticket, **body):
    return client.post(f"/v1/tickets/{ticket}/transitions", json=body, headers=headers)


def test_sign_in_refresh_and_me(client):
    in_app(client, lambda s: users.create(s, username="an", password=PASSWORD, role="dispatcher"))
    assert client.post("/v1/auth/token", data={"username": "an", "password": "wrong password!"}).status_code == 401
    assert client.post("/v1/auth/token", data={"username": "nobody", "password": PASSWORD}).status_code == 401
    tokens = client.post("/v1/auth/token", data={"username": "an", "password": PASSWORD}).json()
    me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert me == {"kind": "staff", "name": "an", "role": "dispatcher", "department_code": None}
    renewed = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200
    # A refresh token works once.
    assert client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert client.get("/v1/auth/me", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401


def test_officer_cannot_see_other_departments_ticket(client, api_key, lighting_officer, water_officer):
    created = file_report(client, api_key)
    assert client.get(f"/v1/tickets/{created['id']}", headers=lighting_officer).status_code == 200
    response = client.get(f"/v1/tickets/{created['id']}", headers=water_officer)
    assert response.status_code == 404
    assert response.json()["code"] == "ticket_not_found"
    assert move(client, water_officer, created["id"], to="in_progress").status_code == 404
    assert client.get("/v1/tickets", headers=water_officer).json()["items"] == []
    assert [t["tracking_code"] for t in client.get("/v1/tickets", headers=lighting_officer).json()["items"]] == [
        created["tracking_code"]
    ]


def test_ioc_viewer_and_unauthenticated_cannot_read_tickets(client, api_key):
    viewer = make_user(client, "ioc", "ioc_viewer")
    assert client.get("/v1/tickets", headers=viewer).status_code == 403
    assert client.get("/v1/tickets").status_code == 401


def test_supervisor_sees_units_under_their_department(client, api_key):
    created = file_report(client, api_key)
    construction_supervisor = make_user(
        client, "sup.xd", "supervisor", "so-xay-dung"
    )  # supervises the lighting company
    health_supervisor = make_user(client, "sup.yt", "supervisor", "so-y-te")
    assert client.get(f"/v1/tickets/{created['tracking_code']}", headers=construction_supervisor).status_code == 200
    assert client.get(f"/v1/tickets/{created['tracking_code']}", headers=health_supervisor).status_code == 404


def test_workflow_to_resolution_needs_a_public_reply(client, api_key, lighting_officer):
    ticket = file_report(client, api_key)["id"]
    started = move(client, lighting_officer, ticket, to="in_progress")
    assert started.status_code == 200
    assert started.json()["acknowledged_at"] is not None
    missing = move(client, lighting_officer, ticket, to="resolved")
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["code"] == "public_reply_required"
    done = move(client, lighting_officer, ticket, to="resolved", public_reply="Đã thay bóng đèn mới ngày 29/11.")
    assert done.json()["status"] == "resolved"
    assert done.json()["allowed_transitions"] == ["closed", "reopened"]


def test_illegal_transition_is_409_and_lists_allowed(client, api_key, lighting_officer):
    ticket = file_report(client, api_key)["id"]
    response = move(client, lighting_officer, ticket, to="closed")
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"
    assert "in_progress" in response.json()["detail"]


def test_rejecting_needs_a_reason(client, api_key, lighting_officer):
    ticket = file_report(client, api_key)["id"]
    assert move(client, lighting_officer, ticket, to="rejected").status_code == 422
    response = move(client, lighting_officer, ticket, to="rejected", reason="Đèn thuộc khu dân cư tư nhân quản lý")
    assert response.json()["rejection_reason"] == "Đèn thuộc khu dân cư tư nhân quản lý"


def test_on_hold_pauses_the_clock_until_the_citizen_answers(client, api_key, lighting_officer):
    created = file_report(client, api_key)
    ticket = created["id"]
    move(client, lighting_officer, ticket, to="in_progress")
    assert move(client, lighting_officer, ticket, to="on_hold").status_code == 422  # needs a question
    held = move(
        client, lighting_officer, ticket, to="on_hold", question="Anh/chị cho biết số trụ đèn được không?"
    ).json()
    due_before = held["due_at"]

    # The citizen took five days to answer (always some working hours, whatever today is).
    async def backdate(session):
        report = await session.get(Report, UUID(ticket))
        report.on_hold_since = utcnow() - timedelta(days=5)
        session.add(report)

    in_app(client, backdate)
    code = created["tracking_code"]
    wrong = client.post(
        f"/v1/reports/{code}/replies", json={"message": "trụ số 12"}, headers={"X-Citizen-Token": "nope"}
    )
    assert wrong.status_code == 401
    answer = client.post(
        f"/v1/reports/{code}/replies",
        data={"message": "Trụ đèn số LL-12 ạ"},
        files=[("photos", ("pole.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-Citizen-Token": created["citizen_token"]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "in_progress"
    detail = client.get(f"/v1/tickets/{ticket}", headers=lighting_officer).json()
    assert detail["due_at"] > due_before
    assert detail["on_hold_since"] is None
    assert any(photo["kind"] == "citizen_reply" for photo in detail["photos"])
    timeline = client.get(f"/v1/reports/{code}").json()["timeline"]
    assert any(entry["message"] == "Anh/chị cho biết số trụ đèn được không?" for entry in timeline)


def test_transfer_moves_the_ticket_and_counts(client, api_key, lighting_officer, water_officer):
    ticket = file_report(client, api_key)["id"]
    bad = client.post(
        f"/v1/tickets/{ticket}/transfer",
        json={"department_code": "nowhere", "reason": "không phải của tôi"},
        headers=lighting_officer,
    )
    assert bad.status_code == 422
    moved = client.post(
        f"/v1/tickets/{ticket}/transfer",
        json={"department_code": "sawaco", "reason": "Đây là trụ nước, không phải trụ đèn"},
        headers=lighting_officer,
    )
    assert moved.status_code == 200
    assert moved.json()["transfer_count"] == 1
    assert moved.json()["department_code"] == "sawaco"
    assert moved.json()["timeline"][-1]["data"]["reason"] == "Đây là trụ nước, không phải trụ đèn"
    assert client.get(f"/v1/tickets/{ticket}", headers=lighting_officer).status_code == 404
    assert client.get(f"/v1/tickets/{ticket}", headers=water_officer).status_code == 200


def test_internal_notes_never_reach_the_citizen(client, api_key, lighting_officer):
    created = file_report(client, api_key)
    ticket = created["id"]
    client.post(
        f"/v1/tickets/{ticket}/comments",
        json={"body": "Nhà thầu hẹn thứ Hai", "visibility": "internal"},
        headers=lighting_officer,
    )
    client.post(
        f"/v1/tickets/{ticket}/comments",
        json={"body": "Chúng tôi đã tiếp nhận và sẽ xử lý", "visibility": "public"},
        headers=lighting_officer,
    )
    public_page = client.get(f"/v1/reports/{created['tracking_code']}").text
    assert "Chúng tôi đã tiếp nhận" in public_page
    assert "Nhà thầu" not in public_page
    staff_view = client.get(f"/v1/tickets/{ticket}", headers=lighting_officer).json()
    assert [e["code"] for e in staff_view["timeline"]][-2:] == ["internal_note", "public_reply"]


def test_citizen_rates_and_reopens_once(client, api_key, lighting_officer):
    created = file_report(client, api_key)
    code, token = created["tracking_code"], {"X-Citizen-Token": created["citizen_token"]}
    assert (
        client.post(f"/v1/reports/{code}/rating", json={"rating": 5}, headers=token).status_code == 409
    )  # not resolved yet
    move(client, lighting_officer, created["id"], to="in_progress")
    move(client, lighting_officer, created["id"], to="resolved", public_reply="Đã sửa xong")
    assert client.post(f"/v1/reports/{code}/rating", json={"rating": 6}, headers=token).status_code == 422
    assert client.post(f"/v1/reports/{code}/rating", json={"rating": True}, headers=token).status_code == 422
    assert client.post(f"/v1/reports/{code}/rating", json={"rating": 2.0}, headers=token).status_code == 200
    rated = client.post(f"/v1/reports/{code}/rating", json={"rating": 2, "comment": "Chậm quá"}, headers=token)
    assert rated.json()["citizen_rating"] == 2
    reopened = client.post(f"/v1/reports/{code}/reopen", json={"reason": "Đèn lại tắt rồi"}, headers=token)
    assert reopened.json()["status"] == "reopened"
    move(client, lighting_officer, created["id"], to="resolved", public_reply="Đã thay cả bộ đèn")
    again = client.post(f"/v1/reports/{code}/reopen", json={"reason": "Vẫn tắt"}, headers=token)
    assert again.status_code == 409
    assert again.json()["code"] == "already_reopened"


def test_dispatcher_triages_an_unsure_ticket(client, api_key):
    dispatcher = make_user(client, "dispatch", "dispatcher")
    created = client.post(
        "/v1/reports", json=report_body(description="asdf qwer zxcv lorem ipsum dolor"), headers={"X-API-Key": api_key}
    ).json()
    run_worker(client)
    listed = client.get("/v1/tickets", params={"status": "needs_triage"}, headers=dispatcher).json()["items"]
    assert [t["id"] for t in listed] == [created["id"]]
    triaged = client.post(
        f"/v1/tickets/{created['id']}/triage", json={"service_code": "waste_sanitation"}, headers=dispatcher
    )
    assert triaged.status_code == 200
    assert triaged.json()["status"] == "assigned"
    assert triaged.json()["department_code"] == "moi-truong-do-thi"


def test_listing_filters_and_cursor_pagination(client, api_key, lighting_officer):
    codes = [
        file_report(client, api_key, description=f"Đèn đường số {n} trên đường Lê Lợi bị tắt", lat=10.7700 + n * 0.001)[
            "tracking_code"
        ]
        for n in range(5)
    ]
    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/tickets",
            params={"limit": 2, "sort": "created_at", **({"cursor": cursor} if cursor else {})},
            headers=lighting_officer,
        ).json()
        seen += [item["tracking_code"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == codes
    found = client.get("/v1/tickets", params={"q": "số 3"}, headers=lighting_officer).json()["items"]
    assert [item["tracking_code"] for item in found] == [codes[3]]
    assert client.get("/v1/tickets", params={"cursor": "garbage!"}, headers=lighting_officer).status_code == 422
    assert client.get("/v1/tickets", params={"status": "resolved"}, headers=lighting_officer).json()["items"] == []


def test_csv_export_streams_without_personal_data(client, api_key, lighting_officer):
    file_report(client, api_key, reporter_phone="0903123456", reporter_name="Trần Thị Bình")
    response = client.get("/v1/tickets/export.csv", headers=lighting_officer)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 1 and rows[0]["status"] == "assigned"
    assert "0903123456" not in response.text and "Bình" not in response.text


def test_officer_sees_reporter_contact_but_department_system_does_not(client, api_key, lighting_officer):
    from service.auth import api_keys

    created = file_report(client, api_key, reporter_phone="0903123456")
    system_key = in_app(
        client,
        lambda s: api_keys.create(s, name="lighting system", role="department_system", department_code="chieu-sang"),
    ).key
    assert (
        client.get(f"/v1/tickets/{created['id']}", headers=lighting_officer).json()["reporter"]["phone"] == "0903123456"
    )
    assert client.get(f"/v1/tickets/{created['id']}", headers={"X-API-Key": system_key}).json()["reporter"] is None


def test_after_photos_are_attached_and_processed(client, api_key, lighting_officer):
    ticket = file_report(client, api_key)["id"]
    response = client.post(
        f"/v1/tickets/{ticket}/photos",
        data={"message": "Ảnh sau khi sửa"},
        files=[("photos", ("after.jpg", after := jpeg_bytes(), "image/jpeg"))],
        headers=lighting_officer,
    )
    assert response.status_code == 201, response.text
    run_worker(client)
    photos = client.get(f"/v1/tickets/{ticket}", headers=lighting_officer).json()["photos"]
    assert [(p["kind"], p["ready"]) for p in photos] == [("after", True)]
    # Hashed by the worker, as a report's own photos are (uploads are not hashed on arrival).
    stored = in_app(client, lambda s: s.get(Photo, UUID(photos[0]["id"])))
    assert stored.sha256 == hashlib.sha256(after).hexdigest()


def test_after_photos_sent_without_a_message_still_have_words_in_the_timeline(client, api_key, lighting_officer):
    created = file_report(client, api_key)
    response = client.post(
        f"/v1/tickets/{created['id']}/photos",
        files=[("photos", ("after.jpg", jpeg_bytes(), "image/jpeg"))],
        headers=lighting_officer,
    )
    assert response.status_code == 201, response.text
    for language, words in (("vi", "Đã thêm ảnh sau khi xử lý"), ("en", "Photos of the work done were added")):
        page = client.get(f"/v1/reports/{created['tracking_code']}", headers={"Accept-Language": language}).json()
        entry = next(item for item in page["timeline"] if item["code"] == "after_photos")
        assert entry["message"] == words, language
