"""What makes a request a retry of an earlier one with the same idempotency key.

A request's fingerprint covers its fields and its photos' sizes, so a first try never reads its photos
back to hash them. A retry whose fingerprint matches is then compared photo by photo, through SHA-256:
its staged photos against the stored report's originals (the hash the photo worker recorded, or the
original hashed now when the worker has not got to it). A report stored before sizes stood in for the
photos holds a fingerprint of the photos' hashes: a retry is compared with that form too.
"""

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

import anyio
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.errors import Conflict
from service.models import ApiClient, Photo, Report
from service.photos.storage import PhotoStorage, stored_sha256
from service.reports.schemas import ReportCreate

if TYPE_CHECKING:
    from service.reports.service import StagedPhoto


# What json.dumps(body, sort_keys=True, ensure_ascii=False) builds anew at every call.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def fingerprint(data: ReportCreate, photos: Sequence["StagedPhoto"], extras: dict | None = None) -> str:
    """Same body and same photo sizes give the same fingerprint: what makes a request a candidate retry."""
    return fingerprint_of(data, [photo.size_bytes for photo in photos], extras)


def fingerprint_of(data: ReportCreate, photo_entries: list[int] | list[str], extras: dict | None = None) -> str:
    """The fingerprint with the photos as given: their sizes, or (the older form) their SHA-256.

    The body hashed is `{"fields": data.model_dump(mode="json"), "photos": [...], "extras"?}` as
    canonical JSON. Every field but the attributes holds a str, a finite float, a bool or None, which
    model_dump would give back as it is: those are read from the model, and only the attributes (any JSON
    value, NaN included) go through pydantic's serializer. A report without photos has the same
    fingerprint in both forms."""
    fields = data.__dict__.copy()
    if data.attributes is None:  # left out: the fields of a report before apps could answer attributes
        del fields["attributes"]
    else:
        fields["attributes"] = data.model_dump(mode="json", include={"attributes"})["attributes"]
    body = {"fields": fields, "photos": photo_entries}
    if extras:  # only when present, so fingerprints of plain reports never change
        body["extras"] = extras
    return hashlib.sha256(_CANONICAL_JSON.encode(body).encode()).hexdigest()


async def find_replay(
    session: AsyncSession,
    storage: PhotoStorage,
    *,
    client: ApiClient,
    idempotency_key: str | None,
    data: ReportCreate,
    photos: Sequence["StagedPhoto"],
    extras: dict | None,
    print_: str | None = None,
) -> Report | None:
    """The report an earlier try with this key made, or None; 409 idempotency_conflict when this request
    is not the same (fields, photos' number, sizes or bytes). `print_`: this request's fingerprint, when
    computed already."""
    if not idempotency_key:
        return None
    existing = (
        await session.exec(
            select(Report).where(Report.api_client_id == client.id, Report.idempotency_key == idempotency_key)
        )
    ).first()
    if existing is None:
        return None
    stored = existing.request_fingerprint
    if stored == (print_ or fingerprint(data, photos, extras)):
        same = not photos or await _same_photo_bytes(session, storage, existing.id, photos)
    else:  # perhaps stored with the older form, of the photos' hashes
        same = bool(photos) and stored == fingerprint_of(data, await _hashes_of_staged(storage, photos), extras)
    if not same:
        raise Conflict("idempotency_conflict")
    return existing


async def _hashes_of_staged(storage: PhotoStorage, photos: Sequence["StagedPhoto"]) -> list[str]:
    keys = [photo.key for photo in photos]
    return await anyio.to_thread.run_sync(lambda: [stored_sha256(storage, key) for key in keys])


async def _same_photo_bytes(
    session: AsyncSession, storage: PhotoStorage, report_id: UUID, photos: Sequence["StagedPhoto"]
) -> bool:
    """Whether the retry's photos have the bytes of the report's own (the sizes matched already)."""
    originals = (
        await session.exec(
            select(Photo.original_key, Photo.sha256)
            .where(Photo.report_id == report_id, Photo.kind == "report")
            .order_by(col(Photo.position))
        )
    ).all()
    if len(originals) != len(photos):
        return False
    retried = [photo.key for photo in photos]

    def compare() -> bool:  # blocking (the storage's reads): in a thread, one photo at a time
        for retry_key, (original_key, recorded) in zip(retried, originals, strict=True):
            if stored_sha256(storage, retry_key) != (recorded or stored_sha256(storage, original_key)):
                return False
        return True

    return await anyio.to_thread.run_sync(compare)
