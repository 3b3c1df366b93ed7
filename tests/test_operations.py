"""Health, readiness, request ids, the catalogue, migrations and the committed OpenAPI spec."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlmodel import select

from service.db import metadata
from service.main import create_app
from service.models import ServiceCategory
from service.openapi_export import render
from tests.conftest import ROOT, in_app


def test_healthz_and_readyz_answer(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_unreachable(settings):
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("unavailable")


def test_every_response_carries_a_request_id(client):
    response = client.get("/healthz", headers={"X-Request-ID": "0f8fad5b-d9cb-469f-a165-70867728950e"})
    assert response.headers["x-request-id"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert client.get("/v1/reports/nope").json()["request_id"]


def test_demo_catalogue_has_the_nineteen_categories_of_todays_1022(client):
    categories = in_app(client, lambda s: s.exec(select(ServiceCategory.code).where(ServiceCategory.active)))
    codes = set(categories.all())
    assert len(codes) == 19
    assert {"road_traffic", "drainage_flooding", "urban_order", "other"} <= codes
    assert {"electricity", "telecommunications", "public_transport"} <= codes


def test_migrations_match_the_models(client):
    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection), metadata)

    async def run(session):
        connection = await session.connection()
        return await connection.run_sync(diff)

    assert in_app(client, run) == []


def test_committed_openapi_spec_is_up_to_date():
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert committed == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_log_lines_are_json_with_the_request_id(settings, capsys):
    import json
    import logging

    from service.logs import configure_logging

    configure_logging("INFO", json_output=True)
    try:
        with TestClient(create_app(settings)) as client:
            client.get("/v1/reports/ZZZZ-ZZZZ", headers={"X-Request-ID": "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"})
            logging.getLogger("service.test").info("after the request")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
