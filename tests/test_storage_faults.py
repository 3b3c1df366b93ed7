"""The photo folder fails: read-only or full. A photo report then gets 503 with Retry-After, and
nothing is left half-written: no report row, no photo files, no temporary uploads.

The folder is a small tmpfs of the test's own (the tests run as root, which chmod does not stop):
remounted read-only for EROFS, or filled up for ENOSPC, so the kernel itself refuses the writes.
"""

import io
import os
import random
import subprocess
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import select

from service.main import create_app
from service.models import Report
from tests.conftest import in_app
from tests.factories import jpeg_bytes, report_body


@pytest.fixture
def small_folder(tmp_path):
    """A 512 KB filesystem of its own; skipped where the tests may not mount one (not root)."""
    folder = tmp_path / "media"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def app_on(settings, folder: Path) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"media_dir": folder, "queue_name": f"storage-{uuid.uuid4().hex[:8]}"}))
    )


def noisy_jpeg(kilobytes: int) -> bytes:
    """A JPEG that does not compress away: random pixels, about `kilobytes` KB."""
    rng = random.Random(kilobytes)
    side = int((kilobytes * 1024 / 1.1) ** 0.5)
    image = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def submit(app: TestClient, api_key: str, photos: list[bytes]):
    return app.post(
        "/v1/reports",
        data=report_body(),
        files=[("photos", (f"p{n}.jpg", photo, "image/jpeg")) for n, photo in enumerate(photos)],
        headers={"X-API-Key": api_key},
    )


def reports(client) -> list:
    async def load(session):
        return list((await session.exec(select(Report))).all())

    return in_app(client, load)


def assert_answered_retry_later(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["retry-after"]) > 0


def test_read_only_photo_folder_is_503_with_retry_after_and_nothing_written(settings, client, api_key, small_folder):
    with app_on(settings, small_folder) as app:
        subprocess.run(["mount", "-o", "remount,ro", str(small_folder)], check=True)
        response = submit(app, api_key, [jpeg_bytes(), jpeg_bytes(color="blue")])
        assert_answered_retry_later(response)
        # A report without photos does not need the folder: intake goes on.
        assert app.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).status_code == 201
    assert len(reports(client)) == 1
    assert files_under(small_folder) == []


def test_full_photo_folder_is_503_and_the_photos_already_stored_are_removed(settings, client, api_key, small_folder):
    first, second = noisy_jpeg(150), noisy_jpeg(150)
    free = os.statvfs(small_folder).f_bavail * os.statvfs(small_folder).f_frsize
    (small_folder / "filler").write_bytes(b"\0" * (free - 200 * 1024))  # room for the first photo only
    with app_on(settings, small_folder) as app:
        response = submit(app, api_key, [first, second])
        assert_answered_retry_later(response)
    assert reports(client) == []
    assert files_under(small_folder) == ["filler"]  # neither the first photo nor a partial upload
