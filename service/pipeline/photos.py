"""The photo step: re-encode without metadata, make thumbnails, refuse decompression bombs."""

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import Photo, Report, ReportRow
from service.models.types import utcnow
from service.photos.processing import PhotoRejected, ProcessedPhoto, process_photo
from service.photos.storage import PhotoStorage, file_sha256, photo_key


def _process_to_storage(storage: PhotoStorage, photo: Photo) -> ProcessedPhoto:
    """Blocking (decoding, and the object store's I/O): runs in a thread. Keys are set only once both copies
    exist. The original's hash is recorded here, where it is read anyway (uploads are not hashed on arrival),
    before decoding, so a rejected photo has one too."""
    public_key, thumbnail_key = (
        photo_key(kind, photo.id, ".jpg", photo.created_at) for kind in ("public", "thumbnails")
    )
    with storage.open_local_copy(photo.original_key) as original, tempfile.TemporaryDirectory() as scratch:
        if photo.sha256 is None:
            photo.sha256 = file_sha256(original)
        public_tmp, thumb_tmp = Path(scratch) / "public.jpg", Path(scratch) / "thumb.jpg"
        result = process_photo(original, public_tmp, thumb_tmp)
        storage.save_file(public_key, public_tmp, content_type="image/jpeg")
        storage.save_file(thumbnail_key, thumb_tmp, content_type="image/jpeg")
    photo.public_key, photo.thumbnail_key = public_key, thumbnail_key
    return result


async def process_photos(session: AsyncSession, storage: PhotoStorage, report: Report) -> list[dict]:
    """Process the report's unprocessed photos; returns one summary per photo for the event log."""
    return (await process_photos_of(session, storage, [report])).get(report.id, [])


async def process_photos_of(
    session: AsyncSession, storage: PhotoStorage, reports: Sequence[Report | ReportRow]
) -> dict[UUID, list[dict]]:
    """The unprocessed photos of these reports (one query); a summary per photo, by report, for the event log."""
    by_id = {report.id: report for report in reports}
    photos = (
        await session.exec(
            select(Photo)
            .where(col(Photo.report_id).in_(list(by_id)), col(Photo.processed_at).is_(None))
            .order_by(col(Photo.report_id), col(Photo.position))
        )
    ).all()
    summaries: dict[UUID, list[dict]] = {}
    for photo in photos:
        report = by_id[photo.report_id]
        try:
            result = await asyncio.to_thread(_process_to_storage, storage, photo)
        except PhotoRejected as rejected:
            photo.rejected_reason = rejected.reason_code
            summaries.setdefault(report.id, []).append({"photo": str(photo.id), "rejected": rejected.reason_code})
        else:
            photo.width, photo.height = result.width, result.height
            summaries.setdefault(report.id, []).append(
                {"photo": str(photo.id), "width": result.width, "height": result.height}
            )
            if report.lat is None and result.gps:
                report.lat, report.lon = result.gps
                report.location_source = "photo_exif"
        photo.processed_at = utcnow()
        session.add(photo)
    return summaries
