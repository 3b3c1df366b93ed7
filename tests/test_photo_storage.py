"""Photos on either backend: the local folder, or an S3-compatible object store (moto's real S3 API
server on loopback). The same promises hold on both: nothing kept from a refused upload, nothing
served before its metadata is stripped, and the bucket never public."""

import io
import re
import uuid

import httpx
import pytest
from PIL import Image
from sqlmodel import select

from service.models import Photo, Report
from service.photos.storage import LocalStorage
from tests.conftest import in_app, run_worker
from tests.factories import jpeg_bytes, jpeg_with_gps, report_body
from tests.processes import MotoServer, free_port

GPS_POINT = (10.7769, 106.7009)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


def s3_settings(settings, endpoint_url: str, bucket: str):
    return settings.model_copy(
        update={
            "storage_backend": "s3",
            "s3_endpoint_url": endpoint_url,
            "s3_bucket": bucket,
            "s3_region": "us-east-1",
            "s3_access_key_id": "test-key",
            "s3_secret_access_key": "test-secret",
            "s3_presign_seconds": 120,
        }
    )


@pytest.fixture(scope="session", params=["local", "s3"])
def photo_backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def settings(request, settings, photo_backend):
    """The suite's settings (PostgreSQL or SQLite), with photos in the local folder or in a bucket of their own."""
    if photo_backend == "local":
        return settings
    from service.photos.s3 import S3Storage

    moto = request.getfixturevalue("moto_server")
    configured = s3_settings(settings, moto.url, f"photos-{uuid.uuid4().hex[:12]}")
    S3Storage.from_settings(configured).client.create_bucket(Bucket=configured.s3_bucket)
    return configured


@pytest.fixture(autouse=True)
def empty_bucket(settings):
    """Each test starts with an empty bucket (the client fixture empties the local folder)."""
    if settings.storage_backend == "s3":
        from service.photos.s3 import S3Storage

        storage = S3Storage.from_settings(settings)
        for key in storage.keys():
            storage.delete(key)


def stored_keys(client) -> list[str]:
    storage = client.app.state.storage
    if isinstance(storage, LocalStorage):
        return sorted(str(path.relative_to(storage.root)) for path in storage.root.rglob("*") if path.is_file())
    return sorted(storage.keys())


def submit(client, api_key, photos: list[bytes], **fields):
    files = [("photos", (f"p{number}.jpg", data, "image/jpeg")) for number, data in enumerate(photos)]
    return client.post("/v1/reports", data=report_body(**fields), files=files, headers={"X-API-Key": api_key})


def path_of(url: str) -> str:
    return url.replace("http://testserver", "")


def test_five_photos_round_trip_through_storage(client, api_key):
    colours = ["red", "green", "blue", "yellow", "purple"]
    response = submit(client, api_key, [jpeg_bytes(640, 480, colour) for colour in colours])
    assert response.status_code == 201, response.text
    assert [key.split("/")[0] for key in stored_keys(client)] == ["originals"] * 5

    run_worker(client)
    photos = client.get(f"/v1/reports/{response.json()['tracking_code']}").json()["photos"]
    assert [photo["ready"] for photo in photos] == [True] * 5
    for photo, colour in zip(photos, colours):
        served = client.get(path_of(photo["url"]))
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(served.content))
        assert image.size == (640, 480)
        assert image.getpixel((320, 240)) == pytest.approx(Image.new("RGB", (1, 1), colour).getpixel((0, 0)), abs=8)
        thumbnail = Image.open(io.BytesIO(client.get(path_of(photo["thumbnail_url"])).content))
        assert max(thumbnail.size) <= 480 and thumbnail.size < image.size
    assert sorted({key.split("/")[0] for key in stored_keys(client)}) == ["originals", "public", "thumbnails"]
    assert len(stored_keys(client)) == 15


def test_every_copy_is_spread_over_folders_by_its_photo_id(client, api_key):
    """A month's photos in one folder would be hundreds of thousands of files, and uploads creating files
    in it at once wait for its lock: each copy (original, public, thumbnail) goes to one of 256 folders
    a month, named from its id."""
    response = submit(client, api_key, [jpeg_bytes(64, 48, colour) for colour in ("red", "green", "blue")])
    assert response.status_code == 201, response.text
    photos = in_app(client, lambda s: s.exec(select(Photo))).all()
    assert len(photos) == 3
    for photo in photos:
        assert re.fullmatch(rf"originals/20\d\d/[01]\d/{photo.id.hex[:2]}/{photo.id}\.jpg", photo.original_key)
    assert stored_keys(client) == sorted(photo.original_key for photo in photos)

    run_worker(client)
    photos = in_app(client, lambda s: s.exec(select(Photo))).all()
    for photo in photos:
        for kind, key in (("public", photo.public_key), ("thumbnails", photo.thumbnail_key)):
            assert re.fullmatch(rf"{kind}/20\d\d/[01]\d/{photo.id.hex[:2]}/{photo.id}\.jpg", key), key
    assert stored_keys(client) == sorted(
        key for photo in photos for key in (photo.original_key, photo.public_key, photo.thumbnail_key)
    )


def test_a_copy_stored_under_the_earlier_flat_layout_is_still_served(client, api_key):
    """Copies made before they were spread over folders sit at public/<id>.jpg: the key is stored with
    the photo, so they are found where they are."""
    response = submit(client, api_key, [jpeg_bytes(64, 48, "red")])
    run_worker(client)

    async def flatten(session):
        photo = (await session.exec(select(Photo))).one()
        storage = client.app.state.storage
        flat = f"public/{photo.id}.jpg"
        with storage.open_local_copy(photo.public_key) as copy:
            storage.save_file(flat, copy, content_type="image/jpeg")
        storage.delete(photo.public_key)
        photo.public_key = flat
        session.add(photo)
        return flat

    flat = in_app(client, flatten)
    (photo,) = client.get(f"/v1/reports/{response.json()['tracking_code']}").json()["photos"]
    served = client.get(path_of(photo["url"]), follow_redirects=True)
    assert served.status_code == 200 and Image.open(io.BytesIO(served.content)).size == (64, 48)
    assert flat in stored_keys(client)


def test_oversized_photo_is_413_and_leaves_nothing_stored(client, api_key):
    limit = client.app.state.settings.max_photo_bytes
    response = submit(client, api_key, [jpeg_bytes(), jpeg_bytes(), b"\xff\xd8\xff\xe0" + b"\0" * limit])
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert stored_keys(client) == []
    assert in_app(client, lambda s: _all(s, Report)) == []


def test_served_photo_has_no_exif_and_its_gps_located_the_report(client, api_key):
    response = submit(client, api_key, [jpeg_with_gps(*GPS_POINT)], lat=None, lon=None)
    assert response.status_code == 201, response.text
    code = response.json()["tracking_code"]
    photo = client.get(f"/v1/reports/{code}").json()["photos"][0]
    assert client.get(path_of(photo["url"])).status_code == 409  # not before the metadata is gone

    run_worker(client)
    served = client.get(path_of(photo["url"]))
    assert served.status_code == 200
    image = Image.open(io.BytesIO(served.content))
    assert not image.getexif() and "exif" not in image.info
    assert b"TestPhone" not in served.content
    view = client.get(f"/v1/reports/{code}").json()
    assert (view["lat"], view["lon"]) == pytest.approx(GPS_POINT, abs=1e-4)


def test_originals_are_never_served(client, api_key):
    response = submit(client, api_key, [jpeg_with_gps(*GPS_POINT)])
    run_worker(client)
    photo = in_app(client, lambda s: _all(s, Photo))[0]
    served = client.get(f"/v1/photos/{photo.id}").content
    original = b"".join(client.app.state.storage.iter_bytes(photo.original_key))
    assert b"TestPhone" in original and b"TestPhone" not in served
    assert response.status_code == 201


def test_redirect_delivery_answers_with_a_working_short_lived_url(client, api_key, monkeypatch):
    settings = client.app.state.settings
    monkeypatch.setattr(settings, "photo_delivery", "redirect")
    response = submit(client, api_key, [jpeg_bytes(320, 240, "teal")])
    run_worker(client)
    photo = client.get(f"/v1/reports/{response.json()['tracking_code']}").json()["photos"][0]

    answer = client.get(path_of(photo["url"]), follow_redirects=False)
    if settings.storage_backend == "local":
        assert answer.status_code == 200  # nothing to presign: the API streams the photo
        return
    assert answer.status_code == 307
    location = answer.headers["location"]
    assert location.startswith(settings.s3_endpoint_url) and "X-Amz-Signature=" in location
    assert "X-Amz-Expires=120" in location
    assert "max-age=60" in answer.headers["cache-control"]
    direct = httpx.get(location)  # a plain GET, as a browser following the redirect would do
    assert direct.status_code == 200
    assert Image.open(io.BytesIO(direct.content)).size == (320, 240)
    assert httpx.get(location.split("?")[0]).status_code == 403  # the bucket itself is not public
    thumbnail = client.get(path_of(photo["thumbnail_url"]), follow_redirects=False)
    assert thumbnail.status_code == 307 and "thumbnails/" in thumbnail.headers["location"]


def test_bucket_objects_are_never_public(client, api_key):
    if client.app.state.settings.storage_backend != "s3":
        pytest.skip("an object-store property")
    submit(client, api_key, [jpeg_bytes()])
    run_worker(client)
    storage = client.app.state.storage
    for key in stored_keys(client):
        grants = storage.client.get_object_acl(Bucket=storage.bucket, Key=key)["Grants"]
        assert all("AllUsers" not in str(grant) and "AuthenticatedUsers" not in str(grant) for grant in grants), key


def test_failure_before_commit_removes_the_stored_photos(client, api_key, monkeypatch):
    from service.reports import service

    async def broken_add(*args, **kwargs):  # the intake writer's commit fails
        raise RuntimeError("database went away mid-request")

    monkeypatch.setattr(service, "add_new", broken_add)
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)  # answer as production would
    response = submit(client, api_key, [jpeg_bytes(), jpeg_bytes()])
    assert response.status_code == 500
    assert stored_keys(client) == []


def test_object_store_down_is_503_and_no_report(settings, client, api_key, monkeypatch):
    if settings.storage_backend != "s3":
        pytest.skip("an object-store outage")
    from service.photos.s3 import S3Storage

    dead = S3Storage.from_settings(settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}))
    monkeypatch.setattr(client.app.state, "storage", dead)
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)
    response = submit(client, api_key, [jpeg_bytes()])
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "service_unavailable"
    assert in_app(client, lambda s: _all(s, Report)) == []


async def _all(session, model) -> list:
    return list((await session.exec(select(model))).all())


def test_retry_is_compared_with_the_stored_photo_bytes_on_either_backend(client, api_key):
    photo = jpeg_bytes(color="red")
    at = len(photo) - 10
    while photo[at] in (0x00, 0xFE, 0xFF):  # one byte of the picture, never a marker
        at -= 1
    other = photo[:at] + bytes([photo[at] ^ 0x01]) + photo[at + 1 :]
    headers = {"X-API-Key": api_key, "Idempotency-Key": f"storage-retry-{uuid.uuid4().hex}"}

    def send(data: bytes):
        files = [("photos", ("p.jpg", data, "image/jpeg"))]
        return client.post("/v1/reports", data=report_body(), files=files, headers=headers)

    first = send(photo)
    assert first.status_code == 201, first.text
    assert send(other).json()["code"] == "idempotency_conflict"  # the original hashed from storage
    run_worker(client)
    again = send(photo)  # against the hash the worker recorded
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert send(other).status_code == 409
    assert [key.split("/")[0] for key in stored_keys(client)] == ["originals", "public", "thumbnails"]
