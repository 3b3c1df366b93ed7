"""What a refused request leaves in the logs: no traceback for an answer the service meant to give,
and never a SQL statement's parameters (token hashes, webhook secrets, contact data).

Runs a real `intake serve` (uvicorn), because the server's own error logging and its handling of the
connection after an error are part of the promise.
"""

import asyncio
import json
import re
import time

import asyncpg
import pytest

from service.auth import api_keys
from tests.conftest import PG_ADMIN_DSN, in_app
from tests.factories import report_body
from tests.processes import live_api
from tests.raw_http import RawConnection

NUL_TEXT = "Đèn đường trước chợ Bến Thành bị tắt\u0000 ba đêm nay"


def log_of(tmp_path) -> str:
    time.sleep(0.3)  # let the server flush its last lines
    return (tmp_path / "api.log").read_text(errors="replace")


def test_text_with_nul_is_a_422_with_no_traceback_and_never_reaches_the_database(settings, client, api_key, tmp_path):
    with live_api(settings, tmp_path) as base:
        connection = RawConnection(base)
        try:
            headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
            status, response_headers, body = connection.request(
                "POST", "/v1/reports", headers, json.dumps(report_body(description=NUL_TEXT)).encode()
            )
            assert status == 422, body
            assert json.loads(body)["code"] == "text_not_storable"
            assert response_headers["content-type"].startswith("application/problem+json")
            form = (
                b'--b\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
                + NUL_TEXT.encode()
                + b"\r\n--b--\r\n"
            )
            status, _, body = connection.request(
                "POST", "/v1/reports", {"X-API-Key": api_key, "Content-Type": "multipart/form-data; boundary=b"}, form
            )
            assert status == 422, body
            status, _, body = connection.request("GET", "/v1/tickets?q=%00", {"X-API-Key": api_key})
            assert status == 422 and json.loads(body)["code"] == "text_not_storable"
            assert connection.request("GET", "/healthz")[0] == 200  # same connection, still open
        finally:
            connection.close()
    log = log_of(tmp_path)
    assert "Traceback" not in log and "INSERT INTO" not in log, log
    admin = in_app(client, lambda s: api_keys.create(s, name="admin", role="admin")).key
    assert client.get("/v1/tickets", headers={"X-API-Key": admin}).json()["items"] == []  # nothing stored


@pytest.fixture
def database_name(settings) -> str:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("drops the connections of a PostgreSQL database")
    return settings.database_url.rsplit("/", 1)[1]


def drop_connections(database: str) -> None:
    """A database restart as its clients see it: every open connection dies under them."""

    async def run() -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await admin.close()

    asyncio.run(run())


def test_database_outage_is_one_warning_line_with_no_parameters_and_the_connection_stays_usable(
    settings, client, tmp_path, database_name
):
    admin = in_app(client, lambda s: api_keys.create(s, name="ops", role="admin")).key
    # Loopback's discard port, allowed for this server only: no worker runs, nothing is ever sent.
    subscribe = json.dumps({"url": "http://127.0.0.1:9/hooks/intake"}).encode()
    headers = {"X-API-Key": admin, "Content-Type": "application/json"}
    overrides = {"db_pool_pre_ping": False, "api_key_cache_seconds": 60, "webhook_allowed_hosts": ["127.0.0.1"]}
    with live_api(settings, tmp_path, **overrides) as base:
        connection = RawConnection(base)
        try:
            status, _, body = connection.request("POST", "/v1/webhooks/subscriptions", headers, subscribe)
            assert status == 201, body  # the key is cached and the pool holds connections now
            for _attempt in range(5):
                # A background task may have opened a fresh connection after the drop: drop again then.
                drop_connections(database_name)
                status, response_headers, body = connection.request(
                    "POST", "/v1/webhooks/subscriptions", headers, subscribe
                )
                if status != 201:
                    break
            assert status == 503, body
            assert response_headers["retry-after"] and json.loads(body)["code"] == "service_unavailable"
            assert response_headers.get("connection", "").lower() != "close"
            assert connection.request("GET", "/healthz")[0] == 200  # same connection, still open
        finally:
            connection.close()
    log = log_of(tmp_path)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert "whsec_" not in log and "[parameters:" not in log and "INSERT INTO" not in log, log
    outage_lines = [line for line in log.splitlines() if "dependency unavailable" in line]
    assert len(outage_lines) == 1 and "WARNING" in outage_lines[0], log
    assert not re.search(r"\bERROR\b", log), log


def test_database_errors_never_carry_their_parameters(settings):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from service.db import create_engine

    async def failing_statement() -> str:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                await connection.execute(
                    text("SELECT * FROM no_such_table WHERE secret = :secret"), {"secret": "whsec_TOPSECRET"}
                )
        except DBAPIError as exc:
            return str(exc)
        finally:
            await engine.dispose()
        raise AssertionError("the statement should have failed")

    message = asyncio.run(failing_statement())
    assert "no_such_table" in message and "whsec_TOPSECRET" not in message


def test_log_lines_lose_sql_parameters_from_any_engine(capsys):
    import logging

    from service.logs import configure_logging

    configure_logging("INFO", json_output=True)
    try:
        try:
            raise RuntimeError(
                "(sqlite3.IntegrityError) UNIQUE failed\n[SQL: INSERT INTO t VALUES (?)]\n[parameters: ('whsec_LEAK',)]"
            )
        except RuntimeError:
            logging.getLogger("service.test").exception("statement failed [parameters: ('whsec_LEAK2',)]")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "parameters hidden" in err and "whsec_LEAK" not in err
