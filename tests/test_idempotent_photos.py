"""A retry with photos: the same key, fields and photo bytes replay the report; any other photo is a conflict.

The first try does not hash its photos (the worker records their hashes later), so a retry is compared
byte for byte with the stored originals, whether or not the worker got to them yet, and reports stored
while fingerprints held the photos' hashes are still recognised.
"""

import hashlib
import json
from uuid import UUID

import pytest
from sqlmodel import select

from service.models import Photo, Report
from service.reports.schemas import ReportCreate
from tests.conftest import in_app, limits_app, run_worker
from tests.factories import jpeg_bytes, report_body


def same_size_other_bytes(photo: bytes) -> bytes:
    """The same JPEG with one byte of its picture changed: same size, same header, other bytes."""
    at = len(photo) - 10
    while photo[at] in (0x00, 0xFE, 0xFF):  # never make or break a marker
        at -= 1
    return photo[:at] + bytes([photo[at] ^ 0x01]) + photo[at + 1 :]


def send(app, api_key, key: str, photo: bytes):
    headers = {"X-API-Key": api_key, "Idempotency-Key": key}
    return app.post(
        "/v1/reports", data=report_body(), files=[("photos", ("p.jpg", photo, "image/jpeg"))], headers=headers
    )


def photos_of(client, report_id: str) -> list[Photo]:
    rows = in_app(client, lambda s: s.exec(select(Photo).where(Photo.report_id == UUID(report_id))))
    return list(rows.all())


def older_fingerprint(photo_hashes: list[str]) -> str:
    """The fingerprint as intake wrote it while photos entered it as their SHA-256."""
    fields = ReportCreate.model_validate(report_body()).model_dump(mode="json", exclude={"attributes"})
    canonical = json.dumps({"fields": fields, "photos": photo_hashes}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("processed_first", [False, True], ids=["before_processing", "after_processing"])
def test_retry_with_a_different_photo_of_the_same_size_is_409(client, api_key, processed_first):
    photo = jpeg_bytes(color="red")
    other = same_size_other_bytes(photo)
    assert len(other) == len(photo) and other != photo
    first = send(client, api_key, "photo-retry-1", photo)
    assert first.status_code == 201, first.text
    if processed_first:
        run_worker(client)
    [stored] = photos_of(client, first.json()["id"])
    assert (stored.sha256 is not None) is processed_first
    response = send(client, api_key, "photo-retry-1", other)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert in_app(client, lambda s: s.exec(select(Report))).all().__len__() == 1


@pytest.mark.parametrize("processed_first", [False, True], ids=["before_processing", "after_processing"])
def test_retry_with_the_same_photo_replays_the_report(client, api_key, processed_first):
    photo = jpeg_bytes(color="green")
    first = send(client, api_key, "photo-retry-2", photo)
    assert first.status_code == 201, first.text
    if processed_first:
        run_worker(client)
    again = send(client, api_key, "photo-retry-2", photo)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(photos_of(client, first.json()["id"])) == 1
    media = client.app.state.settings.media_dir
    assert len([path for path in (media / "originals").rglob("*") if path.is_file()]) == 1  # the retry's copy is gone


def test_lost_race_compares_the_photo_bytes_too(settings, client, api_key):
    """Redis down: no lookup before the insert, the unique index finds the earlier try."""
    photo = jpeg_bytes(color="blue")
    with limits_app(settings, redis_url="redis://127.0.0.1:9/0") as app:
        first = send(app, api_key, "photo-race-1", photo)
        again = send(app, api_key, "photo-race-1", photo)
        other = send(app, api_key, "photo-race-1", same_size_other_bytes(photo))
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


def test_worker_records_the_hash_of_the_uploaded_bytes(client, api_key):
    photo = jpeg_bytes(color="white")
    created = send(client, api_key, "photo-hash-1", photo).json()
    [stored] = photos_of(client, created["id"])
    assert stored.sha256 is None  # not hashed on the request's path
    run_worker(client)
    [stored] = photos_of(client, created["id"])
    assert stored.processed_at is not None
    assert stored.sha256 == hashlib.sha256(photo).hexdigest()
    served = client.get(f"/v1/photos/{stored.id}")
    assert served.status_code == 200 and served.headers["etag"] == f'"{stored.sha256[:32]}-public"'


def test_report_stored_with_the_older_fingerprint_is_replayed_by_a_matching_retry(client, api_key):
    photo = jpeg_bytes(color="black")
    first = send(client, api_key, "photo-old-1", photo)
    assert first.status_code == 201, first.text

    async def store_older(session):  # as intake wrote it before
        report = await session.get(Report, UUID(first.json()["id"]))
        report.request_fingerprint = older_fingerprint([hashlib.sha256(photo).hexdigest()])
        session.add(report)

    in_app(client, store_older)
    again = send(client, api_key, "photo-old-1", photo)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = send(client, api_key, "photo-old-1", same_size_other_bytes(photo))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


def test_fingerprint_of_a_report_without_photos_is_unchanged(client, api_key):
    headers = {"X-API-Key": api_key, "Idempotency-Key": "json-print-1"}
    created = client.post("/v1/reports", json=report_body(), headers=headers).json()
    report = in_app(client, lambda s: s.get(Report, UUID(created["id"])))
    assert report.request_fingerprint == older_fingerprint([])
