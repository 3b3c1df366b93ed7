"""Abuse limits, privacy of reporters, headers: a public endpoint that holds citizens' phone numbers must hold."""

import uuid
from datetime import timedelta
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import text

from service.auth import users
from service.main import create_app
from service.models import Report
from service.models.types import utcnow
from tests.conftest import in_app, run_worker, worker_context
from tests.factories import report_body


def strict_client(settings, **limits):
    tight = settings.model_copy(update={"queue_name": f"limits-{uuid.uuid4().hex[:8]}", **limits})
    return TestClient(create_app(tight))


def test_intake_per_reporter_limit_answers_429_with_retry_after(settings, client, api_key):
    with strict_client(settings, rate_limit_intake_per_reporter="2/hour") as limited:
        headers = {"X-API-Key": api_key}
        body = report_body(reporter_phone="0903 123 456")
        assert limited.post("/v1/reports", json=body, headers=headers).status_code == 201
        assert limited.post("/v1/reports", json=body, headers=headers).status_code == 201
        refused = limited.post("/v1/reports", json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        # Another reporter is not affected.
        assert limited.post("/v1/reports", json=report_body(reporter_phone="0912000111"), headers=headers).status_code == 201


def test_intake_per_address_limit(settings, client, api_key):
    with strict_client(settings, rate_limit_intake_per_address="3/minute") as limited:
        codes = [limited.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).status_code for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]


def test_brute_force_sign_in_is_throttled(settings, client):
    in_app(client, lambda s: users.create(s, username="victim", password="the real password", role="dispatcher"))
    with strict_client(settings, rate_limit_sign_in="5/15 minutes") as limited:
        codes = [limited.post("/v1/auth/token", data={"username": "victim", "password": f"guess {n}"}).status_code
                 for n in range(7)]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429, 429]
        # Even the right password waits now: the guesser must not learn it by timing out the limit.
        assert limited.post("/v1/auth/token", data={"username": "victim", "password": "the real password"}).status_code == 429


def test_reporter_contact_is_encrypted_at_rest(client, api_key):
    created = client.post("/v1/reports", json=report_body(reporter_name="Lê Thị Hoa", reporter_phone="0903999888",
                                                          reporter_email="hoa@example.vn"),
                          headers={"X-API-Key": api_key}).json()

    async def raw(session):
        row = (await session.exec(text("SELECT reporter_name, reporter_phone, reporter_email FROM reports"))).one()
        return tuple(row)

    stored = in_app(client, raw)
    assert all(value and value.startswith("gAAAA") for value in stored)  # Fernet tokens
    assert not any(secret in "".join(stored) for secret in ("Hoa", "0903999888", "example.vn"))
    report = in_app(client, lambda s: s.get(Report, UUID(created["id"])))
    assert report.reporter_phone == "0903999888"


def test_contact_data_is_erased_after_retention(client, api_key):
    from workers.lifecycle import erase_personal_data

    created = client.post("/v1/reports", json=report_body(reporter_phone="0903999888"), headers={"X-API-Key": api_key}).json()
    run_worker(client)

    async def close_long_ago(session):
        report = await session.get(Report, UUID(created["id"]))
        report.status, report.closed_at = "closed", utcnow() - timedelta(days=365)
        session.add(report)

    in_app(client, close_long_ago)
    assert client.portal.call(erase_personal_data, worker_context(client)) == 1
    report = in_app(client, lambda s: s.get(Report, UUID(created["id"])))
    assert (report.reporter_name, report.reporter_phone, report.reporter_email) == (None, None, None)


def test_resolved_ticket_closes_after_the_reopen_window(client, api_key):
    from workers.lifecycle import close_resolved_tickets

    created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()
    run_worker(client)

    async def resolve_long_ago(session):
        report = await session.get(Report, UUID(created["id"]))
        report.status, report.resolved_at = "resolved", utcnow() - timedelta(days=30)
        session.add(report)

    in_app(client, resolve_long_ago)
    assert client.portal.call(close_resolved_tickets, worker_context(client)) == 1
    assert client.get(f"/v1/reports/{created['tracking_code']}").json()["status"] == "closed"


def test_security_headers_and_cors_closed_by_default(settings, client):
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/v1/reports", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_configured_origins(settings):
    with TestClient(create_app(settings.model_copy(update={"cors_origins": ["https://app.hcmc.example"]}))) as app_client:
        preflight = app_client.options(
            "/v1/reports",
            headers={"Origin": "https://app.hcmc.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "X-API-Key"},
        )
    assert preflight.headers["access-control-allow-origin"] == "https://app.hcmc.example"


def test_sql_and_script_fragments_are_stored_as_given_and_never_executed(client, api_key):
    nasty = "'); DROP TABLE reports; -- <script>alert('x')</script> đèn hư"
    created = client.post("/v1/reports", json=report_body(description=nasty), headers={"X-API-Key": api_key})
    assert created.status_code == 201
    page = client.get(f"/v1/reports/{created.json()['tracking_code']}")
    assert page.json()["description"] == nasty
    assert page.headers["content-type"].startswith("application/json")


def test_deeply_nested_json_is_422_not_500(client, api_key):
    nested = "[" * 100 + "]" * 100
    body = '{"description": "Đèn đường hư lâu rồi", "lat": 10.77, "lon": 106.7, "title": ' + nested + "}"
    response = client.post("/v1/reports", content=body, headers={"X-API-Key": api_key, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "json_too_deep"
    deep = client.post("/v1/auth/refresh", content="[" * 100000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 422


def test_oversized_bodies_are_413_even_without_content_length(client, api_key):
    big_json = b'{"description": "' + b"x" * (300 * 1024) + b'"}'
    response = client.post("/v1/reports", content=big_json, headers={"X-API-Key": api_key, "Content-Type": "application/json"})
    assert response.status_code == 413

    def chunked():  # no Content-Length: the cap must hold while streaming
        yield b"--b\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        for _ in range(80):
            yield b"\xff" * (1024 * 1024)

    response = client.post("/v1/reports", content=chunked(),
                           headers={"X-API-Key": api_key, "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413


def test_malformed_multipart_is_4xx(client, api_key):
    response = client.post("/v1/reports", content=b"--nope\r\ngarbage",
                           headers={"X-API-Key": api_key, "Content-Type": "multipart/form-data; boundary=b"})
    assert 400 <= response.status_code < 500
    response = client.post("/v1/reports", content=b"x", headers={"X-API-Key": api_key, "Content-Type": "multipart/form-data"})
    assert 400 <= response.status_code < 500
