"""Multipart bodies read as they arrive: a photo goes straight into storage while it is uploaded, never
as a spooled copy first, and a request that does not end in a report leaves nothing stored.

Some tests hand the body to the app chunk by chunk, as a server does (raw ASGI), to look at storage in
the middle of an upload or to hang up there."""

import contextlib
import hashlib
import io
from collections.abc import Iterator

from PIL import Image
from sqlmodel import func, select

import pytest

from service.models import Photo, Report
from service.reports.multipart import HEADER_BYTES, WRITE_BATCH_BYTES
from tests.conftest import in_app, run_worker
from tests.factories import jpeg_bytes, jpeg_with_gps, report_body

BOUNDARY = "photo-stream-test-7MA4YWxkTrZu0gW"
CHUNK = 64 * 1024


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    kind = "Content-Type: image/jpeg\r\n" if filename else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + value + b"\r\n"


def fields(**overrides) -> bytes:
    return b"".join(part(name, str(value).encode()) for name, value in report_body(**overrides).items())


CLOSING = f"--{BOUNDARY}--\r\n".encode()


def in_chunks(body: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def noisy_jpeg(width: int = 1200, height: int = 900) -> bytes:
    """A real JPEG that does not compress much (about a megabyte): its bytes arrive in many chunks."""
    image = Image.frombytes("RGB", (width, height), hashlib.shake_256(b"noise").digest(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def post_raw(client, path: str, chunks: Iterator[bytes], *, hang_up: bool = False, headers: dict | None = None):
    """POST the chunks to the ASGI app one `http.request` message at a time; then the end of the body, or
    (`hang_up`) the client's disconnect. Returns (status or None, bytes the app asked for)."""
    answered: dict = {}
    pulled = 0
    ended = False

    async def receive() -> dict:
        nonlocal pulled, ended
        if not ended:
            chunk = next(chunks, None)
            if chunk is not None:
                pulled += len(chunk)
                return {"type": "http.request", "body": chunk, "more_body": True}
            ended = True
            if not hang_up:
                return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answered["status"] = message["status"]

    all_headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in all_headers.items()],
        "client": ("127.0.0.1", 50123),
        "server": ("testserver", 80),
        "state": dict(client.app_state),
    }

    async def run() -> None:
        # A hang-up ends the request with ClientDisconnect: what is left in storage is what the test looks at.
        with contextlib.suppress(Exception):
            await client.app(scope, receive, send)

    client.portal.call(run)
    return answered.get("status"), pulled


def stored_files(client) -> list:
    root = client.app.state.settings.media_dir
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def count(client, model) -> int:
    async def run(session):
        return (await session.exec(select(func.count()).select_from(model))).one()

    return in_app(client, run)


def test_a_photo_is_in_storage_while_it_uploads_and_a_hang_up_leaves_nothing(client, api_key):
    photo = noisy_jpeg()
    assert len(photo) * 3 // 4 > WRITE_BATCH_BYTES  # a batch is written before the hang-up
    seen_mid_upload: list = []

    def upload_then_hang_up() -> Iterator[bytes]:
        body = fields() + part("photos", photo, "street.jpg")
        yield from in_chunks(body[: len(body) * 3 // 4])
        seen_mid_upload.extend((path, path.stat().st_size) for path in stored_files(client))

    status, _ = post_raw(client, "/v1/reports", upload_then_hang_up(), hang_up=True, headers={"x-api-key": api_key})
    assert status in (None, 400, 500)  # nobody is left to read an answer
    # The photo was being written into storage as it arrived: no spooled copy first.
    [(path, size)] = seen_mid_upload
    assert path.suffix == ".jpg" and 0 < size < len(photo)
    assert stored_files(client) == []
    assert count(client, Report) == 0 and count(client, Photo) == 0


def test_an_oversized_photo_stops_the_reading_and_is_413(client, api_key):
    limit = client.app.state.settings.max_photo_bytes

    def endless_photo() -> Iterator[bytes]:
        yield fields() + part("photos", b"", "huge.jpg")[:-2] + jpeg_bytes()
        while True:
            yield b"\0" * CHUNK

    status, pulled = post_raw(client, "/v1/reports", endless_photo(), headers={"x-api-key": api_key})
    assert status == 413
    assert pulled < limit + 2 * CHUNK  # read no further than the limit
    assert stored_files(client) == []
    assert count(client, Report) == 0


def test_a_photo_in_tiny_chunks_is_stored_whole_with_its_type_and_hash_from_its_bytes(client, api_key):
    image = Image.new("RGB", (80, 60), "teal")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    png = buffer.getvalue()
    body = fields() + part("photos", png, "holiday.jpg") + CLOSING  # named .jpg and sent as image/jpeg
    status, _ = post_raw(client, "/v1/reports", in_chunks(body, 7), headers={"x-api-key": api_key})
    assert status == 201
    photo = in_app(client, lambda s: s.exec(select(Photo))).one()
    assert photo.content_type == "image/png" and photo.original_key.endswith(".png")
    assert (photo.size_bytes, photo.sha256) == (len(png), None)  # hashed by the worker, not on arrival
    [stored] = stored_files(client)
    assert stored.read_bytes() == png
    run_worker(client)
    photo = in_app(client, lambda s: s.exec(select(Photo))).one()
    assert photo.sha256 == hashlib.sha256(png).hexdigest()


def behind_metadata(jpeg: bytes, size: int) -> bytes:
    """The same JPEG with `size` bytes of application segments before its own: its EXIF and frame header
    come that much later (as behind a large maker note, XMP or ICC profile)."""
    segments = b"".join(b"\xff\xef" + (65533 + 2).to_bytes(2, "big") + b"\0" * 65533 for _ in range(size // 65537 + 1))
    return jpeg[:2] + segments + jpeg[2:]


def declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0) declaring other dimensions than its pixels."""
    at = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4 :]


@pytest.mark.parametrize("metadata", [0, 2 * HEADER_BYTES], ids=["header-first", "header-past-the-copied-bytes"])
def test_a_jpeg_header_is_read_where_it_is_found(client, api_key, metadata):
    # The GPS hint locates the report and too many pixels are refused, whether the header is read from
    # the first bytes kept in memory or, past them, from the stored file.
    located = behind_metadata(jpeg_with_gps(10.7769, 106.7009), metadata)
    body = fields(lat=None, lon=None) + part("photos", located, "street.jpg") + CLOSING
    status, _ = post_raw(client, "/v1/reports", in_chunks(body), headers={"x-api-key": api_key})
    assert status == 201
    report = in_app(client, lambda s: s.exec(select(Report))).one()
    assert (report.location_source, round(report.lat, 3), round(report.lon, 3)) == ("photo_exif", 10.777, 106.701)

    bomb = behind_metadata(declaring(jpeg_bytes(), 30_000, 30_000), metadata)
    response = client.post(
        "/v1/reports",
        data=report_body(),
        files=[("photos", ("bomb.jpg", bomb, "image/jpeg"))],
        headers={"X-API-Key": api_key},
    )
    assert (response.status_code, response.json()["code"]) == (413, "photo_dimensions_too_large")
    assert count(client, Report) == 1
    assert len(stored_files(client)) == 1


def test_field_errors_come_before_a_refused_photo_and_nothing_is_kept(client, api_key):
    files = [
        ("photos", ("fine.jpg", jpeg_bytes(), "image/jpeg")),
        ("photos", ("notes.jpg", b"a shopping list, not a photo", "image/jpeg")),
    ]
    response = client.post(
        "/v1/reports", data=report_body(description="short"), files=files, headers={"X-API-Key": api_key}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "description"
    response = client.post("/v1/reports", data=report_body(), files=files, headers={"X-API-Key": api_key})
    assert response.status_code == 415
    assert "notes.jpg" in response.json()["detail"]
    assert stored_files(client) == []
    assert count(client, Report) == 0


def test_a_body_cut_before_its_closing_boundary_is_422_and_keeps_nothing(client, api_key):
    body = fields() + part("photos", jpeg_bytes(), "street.jpg")  # no closing boundary
    status, _ = post_raw(client, "/v1/reports", in_chunks(body), headers={"x-api-key": api_key})
    assert status == 422
    assert stored_files(client) == []
    assert count(client, Report) == 0


def test_the_text_null_in_a_form_field_is_text(client, api_key):
    response = client.post(
        "/v1/reports",
        data=report_body(title="null"),
        files=[("photos", ("p.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    )
    assert response.status_code == 201, response.text
    report = in_app(client, lambda s: s.exec(select(Report))).one()
    assert report.title == "null"


def test_open311_photo_sent_with_a_wrong_key_is_403_and_nothing_is_kept(client, api_key):
    response = client.post(
        "/open311/v2/requests.json",
        data={"api_key": "not-a-key", "service_code": "street_lighting", "lat": "10.7725", "long": "106.698"},
        files={"media": ("lamp.jpg", jpeg_bytes(), "image/jpeg")},
    )
    assert response.status_code == 403
    assert stored_files(client) == []
    assert count(client, Photo) == 0
