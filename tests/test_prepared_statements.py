"""Prepared statements on PostgreSQL (DB_PGBOUNCER): kept per connection against a plain PostgreSQL, none
outliving its transaction when PgBouncer is in front; intake works either way.

Behind PgBouncer in transaction mode a named statement prepared in one transaction may be missing (or its
name taken) on the server connection of the next, so none may be left on the connection. Without PgBouncer
a connection keeps what it prepared and a statement run again is not parsed again.
tests/test_scale_out.py runs intake and the worker through a real PgBouncer.
"""

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import func, select

from service.main import create_app
from service.models import Photo, Report
from tests.conftest import in_app
from tests.factories import jpeg_bytes, report_body


def _app_settings(settings, *, pgbouncer: bool):
    if settings.is_sqlite:
        pytest.skip("prepared statements are PostgreSQL's")
    # Thirteen requests at once open as many new connections: on a machine busy with other tests (pytest-xdist
    # workers) some took more than the 1 s DB_CONNECT_TIMEOUT_SECONDS and were answered 503. What is tested
    # here is the statements, not how fast PostgreSQL forks a backend.
    return settings.model_copy(update={"db_pgbouncer": pgbouncer, "db_connect_timeout_seconds": 10})


def _file_reports(app: TestClient, api_key: str, count: int) -> list[int]:
    """`count` JSON reports at once (committed together by the intake writer) and one with a photo."""

    async def send_all():
        transport = httpx.ASGITransport(app=app.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"X-API-Key": api_key}
            sent = [
                http.post(
                    "/v1/reports", json=report_body(description=f"Đèn đường số {n} tắt cả tuần nay"), headers=headers
                )
                for n in range(count)
            ]
            sent.append(
                http.post(
                    "/v1/reports",
                    data=report_body(),
                    files={"photos": ("a.jpg", jpeg_bytes(), "image/jpeg")},
                    headers=headers,
                )
            )
            return [response.status_code for response in await asyncio.gather(*sent)]

    return app.portal.call(send_all)


def _statements_left_on_a_connection(app: TestClient) -> int:
    """Named statements the server holds for one of the app's connections, after a query has run twice on it."""

    async def count(session):
        for _ in range(2):
            await session.exec(select(func.count()).select_from(Report))
        return (await session.execute(text("SELECT count(*) FROM pg_prepared_statements"))).scalar_one()

    return in_app(app, count)


def _api_key(app: TestClient) -> str:
    from service.auth import api_keys

    return in_app(app, lambda s: api_keys.create(s, name="statements")).key


@pytest.mark.parametrize("pgbouncer", [False, True], ids=["plain-postgresql", "pgbouncer"])
def test_reports_with_photos_are_stored_whether_or_not_statements_are_kept(settings, client, pgbouncer):
    with TestClient(create_app(_app_settings(settings, pgbouncer=pgbouncer))) as app:
        key = _api_key(app)
        assert _file_reports(app, key, 12) == [201] * 13
        assert _file_reports(app, key, 12) == [201] * 13  # the same statements again, on kept connections
        assert in_app(app, lambda s: s.exec(select(func.count()).select_from(Report))).one() == 26
        assert in_app(app, lambda s: s.exec(select(func.count()).select_from(Photo))).one() == 2


def test_a_plain_postgresql_connection_keeps_its_prepared_statements(settings, client):
    with TestClient(create_app(_app_settings(settings, pgbouncer=False))) as app:
        assert _statements_left_on_a_connection(app) > 0


def test_behind_pgbouncer_no_prepared_statement_outlives_its_transaction(settings, client):
    with TestClient(create_app(_app_settings(settings, pgbouncer=True))) as app:
        assert _file_reports(app, _api_key(app), 5) == [201] * 6
        assert _statements_left_on_a_connection(app) == 0
