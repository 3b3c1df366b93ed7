"""Abuse limits, privacy of reporters, headers: a public endpoint that holds citizens' phone numbers must hold."""

import json
from datetime import timedelta
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import text

from service.auth import users
from service.main import create_app
from service.models import Report
from service.models.types import utcnow
from tests.conftest import in_app, limits_app, run_worker, worker_context
from tests.factories import jpeg_bytes, report_body


def test_intake_per_reporter_limit_answers_429_with_retry_after(settings, client, api_key):
    with limits_app(settings, rate_limit_intake_per_reporter="2/hour") as limited:
        headers = {"X-API-Key": api_key}
        body = report_body(reporter_phone="0903 123 456")
        assert limited.post("/v1/reports", json=body, headers=headers).status_code == 201
        assert limited.post("/v1/reports", json=body, headers=headers).status_code == 201
        refused = limited.post("/v1/reports", json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        # Another reporter is not affected.
        assert (
            limited.post("/v1/reports", json=report_body(reporter_phone="0912000111"), headers=headers).status_code
            == 201
        )


def test_one_phone_written_in_many_ways_counts_as_one_reporter(settings, client, api_key):
    with limits_app(settings, rate_limit_intake_per_reporter="3/hour") as limited:
        headers = {"X-API-Key": api_key}

        def file(phone: str) -> int:
            return limited.post("/v1/reports", json=report_body(reporter_phone=phone), headers=headers).status_code

        assert [file(phone) for phone in ("0903 123 457", "+84903123457", "84 903.123.457")] == [201] * 3
        assert [file(phone) for phone in ("+84 903 123 457", "0903-123-457", "0084903123457")] == [429] * 3
        assert file("0903 123 458") == 201  # the next number is another reporter


def test_intake_per_address_limit(settings, client, api_key):
    with limits_app(settings, rate_limit_intake_per_address="3/minute") as limited:
        codes = [
            limited.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).status_code
            for _ in range(5)
        ]
    assert codes == [201, 201, 201, 429, 429]


def test_brute_force_sign_in_is_throttled(settings, client):
    in_app(client, lambda s: users.create(s, username="victim", password="the real password", role="dispatcher"))
    with limits_app(settings, rate_limit_sign_in="5/15 minutes") as limited:
        codes = [
            limited.post("/v1/auth/token", data={"username": "victim", "password": f"guess {n}"}).status_code
            for n in range(7)
        ]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429, 429]
        # Even the right password waits now: the guesser must not learn it by timing out the limit.
        assert (
            limited.post("/v1/auth/token", data={"username": "victim", "password": "the real password"}).status_code
            == 429
        )


def test_reporter_contact_is_encrypted_at_rest(client, api_key):
    created = client.post(
        "/v1/reports",
        json=report_body(reporter_name="Lê Thị Hoa", reporter_phone="0903999888", reporter_email="hoa@example.vn"),
        headers={"X-API-Key": api_key},
    ).json()

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

    created = client.post(
        "/v1/reports", json=report_body(reporter_phone="0903999888"), headers={"X-API-Key": api_key}
    ).json()
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
    preflight = client.options(
        "/v1/reports", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_configured_origins(settings):
    with TestClient(
        create_app(settings.model_copy(update={"cors_origins": ["https://app.hcmc.example"]}))
    ) as app_client:
        preflight = app_client.options(
            "/v1/reports",
            headers={
                "Origin": "https://app.hcmc.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key",
            },
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
    response = client.post(
        "/v1/reports", content=body, headers={"X-API-Key": api_key, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "json_too_deep"
    deep = client.post("/v1/auth/refresh", content="[" * 100000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 422


def test_oversized_bodies_are_413_even_without_content_length(client, api_key):
    big_json = b'{"description": "' + b"x" * (300 * 1024) + b'"}'
    response = client.post(
        "/v1/reports", content=big_json, headers={"X-API-Key": api_key, "Content-Type": "application/json"}
    )
    assert response.status_code == 413

    def chunked():  # no Content-Length: the cap must hold while streaming
        yield b'--b\r\nContent-Disposition: form-data; name="photos"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        for _ in range(80):
            yield b"\xff" * (1024 * 1024)

    response = client.post(
        "/v1/reports",
        content=chunked(),
        headers={"X-API-Key": api_key, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 413


def test_malformed_multipart_is_4xx(client, api_key):
    response = client.post(
        "/v1/reports",
        content=b"--nope\r\ngarbage",
        headers={"X-API-Key": api_key, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert 400 <= response.status_code < 500
    response = client.post(
        "/v1/reports", content=b"x", headers={"X-API-Key": api_key, "Content-Type": "multipart/form-data"}
    )
    assert 400 <= response.status_code < 500


# --- photos that declare more pixels than anyone should decode ---------------------------------------


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid all-black 1-bit PNG: about 110 KB on the wire, 900 megapixels once decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed row
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def stored_files(settings) -> list:
    return [path for path in settings.media_dir.rglob("*") if path.is_file()] if settings.media_dir.exists() else []


async def _count_rows(session, model) -> int:
    from sqlmodel import func, select

    return (await session.exec(select(func.count()).select_from(model))).one()


def test_decompression_bomb_is_refused_at_intake_and_nothing_is_kept(settings, client, api_key):
    from service.models import Photo

    bomb = png_bomb()
    assert len(bomb) < 200_000
    response = client.post(
        "/v1/reports",
        data=report_body(),
        files=[("photos", ("bomb.png", bomb, "image/png"))],
        headers={"X-API-Key": api_key},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "photo_dimensions_too_large"
    assert "30000x30000" in response.json()["detail"] or "900000000" in response.json()["detail"]
    # The same photo through Open311's `media`.
    open311 = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": api_key,
            "service_code": "street_lighting",
            "lat": "10.7725",
            "long": "106.698",
            "description": "Đèn đường hư trước chợ Bến Thành",
        },
        files=[("media", ("bomb.png", bomb, "image/png"))],
    )
    assert open311.status_code == 413
    assert in_app(client, lambda s: _count_rows(s, Report)) == 0
    assert in_app(client, lambda s: _count_rows(s, Photo)) == 0
    assert stored_files(settings) == []


def test_pixel_limit_comes_from_settings(settings, client, api_key):
    with limits_app(settings, max_photo_pixels=1000) as limited:  # the 64x48 test photo has 3072
        refused = limited.post(
            "/v1/reports",
            data=report_body(),
            files=[("photos", ("a.jpg", jpeg_bytes(), "image/jpeg"))],
            headers={"X-API-Key": api_key},
        )
    assert (refused.status_code, refused.json()["code"]) == (413, "photo_dimensions_too_large")
    accepted = client.post(
        "/v1/reports",
        data=report_body(),
        files=[("photos", ("a.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    )
    assert accepted.status_code == 201


# --- reporters' contact details: kept for the staff who call back, shown to nobody else ------------------

REPORTER = {"reporter_name": "Trần Văn Bảo", "reporter_phone": "0911222333", "reporter_email": "bao.tran@example.vn"}
CONTACT_TRACES = ("Trần Văn Bảo", "Tr\\u1ea7n", "0911222333", "911222333", "bao.tran@example.vn", "bao.tran")


def assert_no_contact(text: str, where: str) -> None:
    for trace in CONTACT_TRACES:
        assert trace not in text, f"{trace!r} appears in {where}"


def key_for(client, role: str, department: str | None = None) -> dict:
    from service.auth import api_keys

    key = in_app(client, lambda s: api_keys.create(s, name=f"{role} key", role=role, department_code=department)).key
    return {"X-API-Key": key}


def staff_token(client, username: str, role: str, department: str | None = None) -> dict:
    in_app(
        client,
        lambda s: users.create(
            s, username=username, password="a long staff password", role=role, department_code=department
        ),
    )
    tokens = client.post("/v1/auth/token", data={"username": username, "password": "a long staff password"}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_reporter_contact_never_appears_in_public_or_shared_output(settings, client, api_key, monkeypatch):
    from sqlmodel import select

    from service.models import WebhookEvent

    # A loopback target that refuses connections: each event is tried once and given up at once.
    monkeypatch.setattr(settings, "webhook_allowed_hosts", ["127.0.0.1"])
    monkeypatch.setattr(settings, "webhook_retry_schedule_seconds", [])
    app = {"X-API-Key": api_key}
    subscription = client.post(
        "/v1/webhooks/subscriptions", json={"url": "http://127.0.0.1:9/hooks"}, headers=app
    ).json()
    created = client.post("/v1/reports", json=report_body(**REPORTER), headers=app).json()
    opened = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": api_key,
            "service_code": "street_lighting",
            "lat": "10.7745",
            "long": "106.7010",
            "description": "Đèn đường tắt cả tuần",
            "first_name": "Văn Bảo",
            "last_name": "Trần",
            "phone": REPORTER["reporter_phone"],
            "email": REPORTER["reporter_email"],
        },
    ).json()[0]
    run_worker(client)
    code, open311_code = created["tracking_code"], opened["service_request_id"]
    admin = staff_token(client, "privacy-admin", "admin")
    client.post(f"/v1/tickets/{code}/comments", json={"body": "Đã tiếp nhận", "visibility": "public"}, headers=admin)

    public = [f"/v1/reports/{code}", f"/v1/reports/{open311_code}"] + [
        f"/open311/v2/{resource}.{fmt}{query}"
        for fmt in ("json", "xml")
        for resource, query in (
            ("requests", "?extensions=true"),
            (f"requests/{code}", "?extensions=true"),
            (f"requests/{open311_code}", "?extensions=true"),
            ("services", ""),
            (f"tokens/{opened['token']}", ""),
        )
    ]
    ioc = key_for(client, "ioc_viewer")
    shared = [(url, None) for url in public] + [
        ("/v1/tickets/export.csv", admin),
        ("/v1/tickets/export.csv", app),
        ("/v1/ioc/summary", ioc),
        ("/v1/ioc/timeseries", ioc),
        ("/v1/ioc/hotspots", ioc),
        (f"/v1/webhooks/subscriptions/{subscription['id']}/events", app),
    ]
    for url, headers in shared:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.text)
        assert code in response.text or open311_code in response.text or "ioc" in url or "services" in url, url
        assert_no_contact(response.text, url)

    async def payloads(session):
        return [event.payload for event in (await session.exec(select(WebhookEvent))).all()]

    sent = in_app(client, payloads)
    assert {payload["type"] for payload in sent} >= {"report.created", "report.commented"}
    assert_no_contact(json.dumps(sent, ensure_ascii=False), "webhook payloads")
    assert_no_contact(json.dumps(sent), "webhook payloads")


def test_ticket_detail_shows_the_reporter_only_to_roles_that_call_back(client, api_key):
    created = client.post("/v1/reports", json=report_body(**REPORTER), headers={"X-API-Key": api_key}).json()
    run_worker(client)
    department = client.get(f"/v1/tickets/{created['id']}", headers={"X-API-Key": api_key}).json()["department_code"]
    url = f"/v1/tickets/{created['tracking_code']}"

    for who, headers in (
        ("officer", staff_token(client, "officer-1", "officer", department)),
        ("dispatcher", staff_token(client, "dispatcher-1", "dispatcher")),
        ("supervisor", staff_token(client, "supervisor-1", "supervisor", department)),
        ("admin", staff_token(client, "admin-1", "admin")),
    ):
        reporter = client.get(url, headers=headers).json()["reporter"]
        assert reporter == {
            "name": REPORTER["reporter_name"],
            "phone": REPORTER["reporter_phone"],
            "email": REPORTER["reporter_email"],
        }, who
    for who, headers in (
        ("department system", key_for(client, "department_system", department)),
        ("app", {"X-API-Key": api_key}),
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, who
        assert response.json()["reporter"] is None, who
        assert_no_contact(response.text, who)
    for who, headers in (("ioc viewer", key_for(client, "ioc_viewer")), ("nobody", {})):
        response = client.get(url, headers=headers)
        assert response.status_code in (401, 403), who
        assert_no_contact(response.text, who)


def test_secrets_and_contact_details_never_reach_the_logs(settings, client, api_key, tmp_path, caplog):
    """The real server's JSON log lines (access log included) at DEBUG, and the worker's records."""
    import logging

    import httpx

    from tests.processes import live_api

    admin_password = "correct horse battery staple 1022"
    in_app(client, lambda s: users.create(s, username="log-admin", password=admin_password, role="admin"))
    secrets: list[str] = [api_key, admin_password, *REPORTER.values()]
    with live_api(settings, tmp_path, log_json=True, log_level="DEBUG", webhook_allowed_hosts=["127.0.0.1"]) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            app = {"X-API-Key": api_key}
            tokens = http.post("/v1/auth/token", data={"username": "log-admin", "password": admin_password}).json()
            http.post("/v1/auth/token", data={"username": "log-admin", "password": admin_password + " typo"})
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            secrets += [tokens["access_token"], tokens["refresh_token"]]
            assert http.get("/v1/auth/me", headers=bearer).status_code == 200
            refreshed = http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
            secrets += [refreshed["access_token"], refreshed["refresh_token"]]
            created = http.post("/v1/reports", json=report_body(**REPORTER), headers=app).json()
            secrets.append(created["citizen_token"])
            with_photo = http.post(
                "/v1/reports",
                data=report_body(**REPORTER, lat=10.7765),
                headers=app,
                files=[("photos", ("a.jpg", jpeg_bytes(), "image/jpeg"))],
            )
            assert with_photo.status_code == 201
            secrets.append(with_photo.json()["citizen_token"])
            # Refused ones carry the same data and must not echo it anywhere either.
            assert http.post("/v1/reports", json=report_body(**REPORTER, lat=1.0), headers=app).status_code == 422
            assert (
                http.post("/v1/reports", json=report_body(**REPORTER), headers={"X-API-Key": api_key + "x"}).status_code
                == 401
            )
            rated = http.post(
                f"/v1/reports/{created['tracking_code']}/rating",
                json={"rating": 5},
                headers={"X-Citizen-Token": created["citizen_token"]},
            )
            assert rated.status_code == 409  # not resolved yet; the token was checked first
            opened = http.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": api_key,
                    "service_code": "street_lighting",
                    "lat": "10.7785",
                    "long": "106.6990",
                    "description": "Đèn đường tắt cả tuần nay",
                    "first_name": "Văn Bảo",
                    "last_name": "Trần",
                    "phone": REPORTER["reporter_phone"],
                    "email": REPORTER["reporter_email"],
                },
            )
            assert opened.status_code == 201, opened.text
            hook = http.post("/v1/webhooks/subscriptions", json={"url": "http://127.0.0.1:9/hooks"}, headers=app).json()
            rotated = http.post(f"/v1/webhooks/subscriptions/{hook['id']}/rotate-secret", headers=app).json()
            secrets += [hook["secret"], rotated["secret"]]
            assert http.get(f"/v1/tickets/{created['tracking_code']}", headers=bearer).json()["reporter"]
        log_text = (tmp_path / "api.log").read_text(errors="replace")

    records = [json.loads(line) for line in log_text.splitlines() if line.strip()]  # JSON, every line
    assert any('"POST /v1/reports HTTP/1.1" 201' in record["message"] for record in records)  # access log included
    for secret in secrets:
        assert secret not in log_text, f"{secret[:12]}… is in the API log"
    assert_no_contact(log_text, "the API log")

    with caplog.at_level(logging.DEBUG):
        run_worker(client)  # classifies and routes the reports above, processes the photo
    worker_text = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    for secret in secrets:
        assert secret not in worker_text
    assert_no_contact(worker_text, "the worker's log records")


def test_database_errors_answer_problem_details_without_internals(settings, client, api_key, monkeypatch):
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from service.open311 import service as open311_service
    from service.reports import service as report_service

    created = client.post("/v1/reports", json=report_body(**REPORTER), headers={"X-API-Key": api_key}).json()
    failures = {
        500: ProgrammingError(
            "SELECT reports.reporter_phone FROM reports WHERE reports.tracking_code = $1",
            ("0911222333",),
            Exception('relation "reports" does not exist'),
        ),
        503: OperationalError("SELECT 1", None, ConnectionRefusedError("connection refused by 127.0.0.1:5432")),
    }
    with TestClient(create_app(settings), raise_server_exceptions=False) as app_client:
        for status, failure in failures.items():

            async def broken(*args, **kwargs):
                raise failure

            monkeypatch.setattr(report_service, "get_by_tracking_code", broken)
            monkeypatch.setattr(open311_service, "get_request", broken)
            for fmt in ("json", "xml"):  # Open311 answers in its own error format, just as bare
                response = app_client.get(f"/open311/v2/requests/{created['tracking_code']}.{fmt}")
                assert response.status_code == status
                for internal in ("Traceback", "SELECT", "sqlalchemy", "relation", "5432", "0911222333", ".py"):
                    assert internal not in response.text, (status, internal, response.text)
            answers = [
                app_client.get(f"/v1/reports/{created['tracking_code']}"),
                app_client.get(f"/v1/reports/{created['tracking_code']}", headers={"Accept-Language": "vi"}),
                app_client.post(
                    f"/v1/reports/{created['tracking_code']}/rating",
                    json={"rating": 4},
                    headers={"X-Citizen-Token": created["citizen_token"]},
                ),
            ]
            for response in answers:
                assert response.status_code == status
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["code"] == ("internal_error" if status == 500 else "service_unavailable")
                for internal in (
                    "Traceback",
                    "SELECT",
                    "sqlalchemy",
                    "FROM reports",
                    "relation",
                    "5432",
                    "0911222333",
                    'File "',
                    ".py",
                ):
                    assert internal not in response.text, (status, internal, response.text)
