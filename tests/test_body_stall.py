"""A request body that stops arriving is given up: 408, the connection closed, nothing kept. A client
that sends headers and part of a report or photo and then waits (one of many: slowloris) no longer holds
its request, and a half-written photo, for good. The limit is on each pause, not on the whole upload,
and it ends with the body: a slow phone that keeps sending is served, and neither a keep-alive pause
between requests nor a long answer is cut.

Runs a real `intake serve` (uvicorn reads the socket, as in production) and a raw socket as the client,
which decides when each byte goes. Time margins are wide (a loaded CI machine); only outcomes are asserted.
"""

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from service.body_limits import BodyLimits
from service.models import Photo, Report
from service.reports.multipart import WRITE_BATCH_BYTES
from service.settings import Settings
from tests.factories import jpeg_bytes, report_body
from tests.processes import live_api
from tests.raw_http import RawConnection
from tests.test_photo_streaming import BOUNDARY, CLOSING, count, fields, noisy_jpeg, part

IDLE_SECONDS = 1
# How long the client waits for any answer: far beyond the idle timeout, so only a server that never
# gives up fails the test.
READ_SECONDS = 15
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """One `intake serve` for the module, with a short idle timeout and a media folder of its own."""
    workdir = tmp_path_factory.mktemp("body-stall")
    media = workdir / "media"
    with live_api(settings, workdir, body_idle_timeout_seconds=IDLE_SECONDS, media_dir=media) as base:
        yield base, media


def files_in(media: Path) -> set[Path]:
    """Files only: the storage keeps the month's folders it made."""
    return {Path(folder) / name for folder, _, names in os.walk(media) for name in names}


def assert_request_timeout(connection: RawConnection) -> None:
    # The client sends nothing more: the answer comes once the server gives up waiting.
    status, headers, content = connection.answer()
    assert status == 408, content
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(content)["code"] == "request_timeout"
    assert headers["connection"] == "close"
    assert connection.closed_by_server()


def test_a_json_report_that_stops_half_way_is_answered_408_and_nothing_is_filed(client, api_key, server):
    base, _ = server
    body = json.dumps(report_body()).encode()
    connection = RawConnection(base, timeout=READ_SECONDS)
    try:
        connection.send_head("POST", "/v1/reports", {"X-API-Key": api_key, "Content-Type": "application/json"}, len(body))
        connection.send(body[: len(body) // 2])
        assert_request_timeout(connection)
    finally:
        connection.close()
    assert count(client, Report) == 0


def test_a_photo_upload_that_stops_mid_photo_leaves_no_report_and_no_file(client, api_key, server):
    base, media = server
    photo = noisy_jpeg()
    body = fields() + part("photos", photo, "street.jpg") + CLOSING
    sent = len(fields()) + len(photo) * 3 // 4
    assert sent - len(fields()) > WRITE_BATCH_BYTES  # part of the photo is on disk when the client stalls
    before = files_in(media)
    connection = RawConnection(base, timeout=READ_SECONDS)
    try:
        connection.send_head("POST", "/v1/reports", {"X-API-Key": api_key, "Content-Type": MULTIPART}, len(body))
        connection.send(body[:sent])
        assert_request_timeout(connection)
    finally:
        connection.close()
    assert count(client, Report) == 0
    assert count(client, Photo) == 0
    assert files_in(media) == before


@pytest.mark.parametrize("kind", ["json", "multipart"])
def test_a_slow_client_that_keeps_sending_is_served(client, api_key, server, kind):
    base, _ = server
    if kind == "json":
        content_type, body = "application/json", json.dumps(report_body()).encode()
    else:
        content_type, body = MULTIPART, fields() + part("photos", jpeg_bytes(), "street.jpg") + CLOSING
    pieces = 8  # a pause before each, a fifth of the idle timeout: the upload lasts longer than the timeout
    size = -(-len(body) // pieces)
    connection = RawConnection(base, timeout=READ_SECONDS)
    try:
        connection.send_head("POST", "/v1/reports", {"X-API-Key": api_key, "Content-Type": content_type}, len(body))
        for start in range(0, len(body), size):
            time.sleep(IDLE_SECONDS / 5)
            connection.send(body[start : start + size])
        status, _, content = connection.answer()
    finally:
        connection.close()
    assert status == 201, content
    assert count(client, Report) == 1
    assert count(client, Photo) == (1 if kind == "multipart" else 0)


def test_a_keep_alive_connection_idle_longer_than_the_body_timeout_takes_the_next_report(client, api_key, server):
    base, _ = server
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    connection = RawConnection(base, timeout=READ_SECONDS)
    try:
        first, _, content = connection.request("POST", "/v1/reports", headers, json.dumps(report_body()).encode())
        assert first == 201, content
        # Between requests no body is unfinished: the wait is uvicorn's keep-alive (5 s), not ours.
        time.sleep(IDLE_SECONDS * 2.5)
        second, _, content = connection.request("POST", "/v1/reports", headers, json.dumps(report_body()).encode())
    finally:
        connection.close()
    assert second == 201, content
    assert count(client, Report) == 2


@pytest.mark.parametrize("content_type", ["application/json", MULTIPART])
def test_an_answer_that_streams_longer_than_the_body_timeout_is_not_cut(content_type):
    """Once the body is in, the app's wait for the client to hang up (what a streaming answer listens for,
    through the same receive) has no limit. No route of the API streams the answer to a POST yet, so a
    small app of its own behind the same layer stands in for one."""

    async def slow_answer(request: Request) -> StreamingResponse:
        await request.body()

        async def parts() -> AsyncIterator[bytes]:
            for _ in range(5):
                await asyncio.sleep(IDLE_SECONDS / 2)
                yield b"."

        return StreamingResponse(parts())

    settings = Settings(
        _env_file=None,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        body_idle_timeout_seconds=IDLE_SECONDS,
    )
    app = BodyLimits(Starlette(routes=[Route("/", slow_answer, methods=["POST"])]), settings=settings)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as http:
            return await http.post("/", content=b'{"a": 1}', headers={"Content-Type": content_type})

    response = asyncio.run(post())
    assert response.status_code == 200
    assert response.content == b"....."
