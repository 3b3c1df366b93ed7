"""Who may fetch a photo by its id: anyone for a public report; for a report its citizen kept private,
only that citizen (its citizen token) and whoever may read its ticket. To anyone else the photo does
not exist."""

from uuid import UUID, uuid4

from service.auth import api_keys, users
from service.models import Photo, Report
from tests.conftest import in_app, run_worker
from tests.factories import jpeg_bytes, report_body

PASSWORD = "correct horse battery"


def sign_in(client, username: str, role: str, department: str | None = None) -> dict:
    in_app(
        client, lambda s: users.create(s, username=username, password=PASSWORD, role=role, department_code=department)
    )
    response = client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def key_of(client, role: str, department: str | None = None) -> dict:
    issued = in_app(client, lambda s: api_keys.create(s, name=f"a {role}", role=role, department_code=department))
    return {"X-API-Key": issued.key}


def filed(client, api_key, *, public: bool, process: bool = True) -> dict:
    answer = client.post(
        "/v1/reports",
        data=report_body(is_public=str(public).lower()),
        files=[("photos", ("door.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    ).json()
    if process:
        run_worker(client)
    return answer


def photo_id_of(client, answer: dict) -> UUID:
    async def photo(session):
        found = await session.exec(Photo.__table__.select().where(Photo.report_id == UUID(answer["id"])))
        return found.first().id

    return in_app(client, photo)


def without_request_id(problem: dict) -> dict:
    return {name: value for name, value in problem.items() if name not in ("request_id", "instance")}


def department_of(client, answer: dict) -> str:
    department = in_app(client, lambda s: s.get(Report, UUID(answer["id"]))).department_code
    assert department is not None
    return department


def test_photos_of_a_private_report_are_served_only_to_its_citizen_and_to_who_may_read_its_ticket(client, api_key):
    answer = filed(client, api_key, public=False)
    other = filed(client, api_key, public=False)
    photo = photo_id_of(client, answer)
    department = department_of(client, answer)
    paths = (f"/v1/photos/{photo}", f"/v1/photos/{photo}/thumbnail")
    unknown = client.get(f"/v1/photos/{uuid4()}")
    assert unknown.status_code == 404

    refused = {
        "anyone": {},
        "a wrong citizen token": {"X-Citizen-Token": "not-the-token"},
        "a token that is not ASCII": {"X-Citizen-Token": "tøken".encode("latin-1")},
        "another report's citizen token": {"X-Citizen-Token": other["citizen_token"]},
        "an officer of another department": sign_in(client, "officer.sawaco", "officer", "sawaco"),
        "an IOC viewer": sign_in(client, "ioc.viewer", "ioc_viewer"),
        "another app's key": key_of(client, "citizen_app"),
        "another department's system": key_of(client, "department_system", "sawaco"),
        "a bearer token that is not one": {"Authorization": "Bearer not-a-token"},
    }
    for who, headers in refused.items():
        for path in paths:
            response = client.get(path, headers=headers)
            # The same answer as for a photo that does not exist: nothing says this one does.
            assert (response.status_code, response.json()["code"]) == (404, "photo_not_found"), (who, path)
            assert without_request_id(response.json()) == without_request_id(unknown.json()), who

    allowed = {
        "its citizen": {"X-Citizen-Token": answer["citizen_token"]},
        "an officer of its department": sign_in(client, "officer.here", "officer", department),
        "a dispatcher": sign_in(client, "dispatcher.one", "dispatcher"),
        "its department's system": key_of(client, "department_system", department),
        "the app that filed it": {"X-API-Key": api_key},
    }
    for who, headers in allowed.items():
        for path in paths:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (who, path, response.text)
            assert response.content.startswith(b"\xff\xd8")  # a JPEG
            # Served on a credential: no cache may keep it for the next caller.
            assert response.headers["cache-control"] == "no-store", who


def test_the_links_each_view_of_a_private_report_gives_work_with_that_views_credentials(client, api_key):
    answer = filed(client, api_key, public=False)
    citizen = {"X-Citizen-Token": answer["citizen_token"]}
    [seen] = client.get(f"/v1/reports/{answer['tracking_code']}", headers=citizen).json()["photos"]
    for url in (seen["url"], seen["thumbnail_url"]):
        assert client.get(url, headers=citizen).status_code == 200
        assert client.get(url).status_code == 404
    officer = sign_in(client, "officer.here", "officer", department_of(client, answer))
    [on_ticket] = client.get(f"/v1/tickets/{answer['id']}", headers=officer).json()["photos"]
    assert client.get(on_ticket["url"], headers=officer).status_code == 200
    assert client.get(on_ticket["url"]).status_code == 404


def test_a_private_reports_photo_not_processed_yet_does_not_exist_for_strangers(client, api_key):
    answer = filed(client, api_key, public=False, process=False)
    photo = photo_id_of(client, answer)
    assert client.get(f"/v1/photos/{photo}").status_code == 404
    waiting = client.get(f"/v1/photos/{photo}", headers={"X-Citizen-Token": answer["citizen_token"]})
    assert waiting.status_code == 409 and waiting.json()["code"] == "photo_not_ready"


def test_public_reports_photos_stay_public_whatever_credentials_come_along(client, api_key):
    answer = filed(client, api_key, public=True)
    photo = photo_id_of(client, answer)
    for path in (f"/v1/photos/{photo}", f"/v1/photos/{photo}/thumbnail"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=86400, immutable"
        for headers in ({"Authorization": "Bearer expired"}, {"X-API-Key": "unknown"}, {"X-Citizen-Token": "x"}):
            assert client.get(path, headers=headers).status_code == 200, (headers, path)
