"""Serving photos: only the re-encoded copies (no EXIF, no GPS), never the originals.

With PHOTO_DELIVERY=redirect and an object store, the answer is a 307 to a presigned URL that
expires after S3_PRESIGN_SECONDS (the bucket itself stays private); otherwise the bytes stream
through the API.
"""

from typing import Any, Literal
from uuid import UUID

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from service.db import SessionDep
from service.errors import AppError, NotFound, problem_responses
from service.models import Photo

router = APIRouter(prefix="/v1/photos", tags=["photos"])

CACHE_CONTROL = "public, max-age=86400, immutable"


class PhotoNotReady(AppError):
    status, code = 409, "photo_not_ready"


async def _serve(request: Request, session, photo_id: UUID, variant: Literal["public", "thumbnail"]):
    photo = await session.get(Photo, photo_id)
    if photo is None or photo.rejected_reason or photo.kind == "private":
        raise NotFound("photo_not_found")
    # Only these two keys are ever served: they exist only once the metadata-free copies were written.
    key = photo.public_key if variant == "public" else photo.thumbnail_key
    if key is None:
        raise PhotoNotReady(headers={"Retry-After": "5"})
    storage, settings = request.app.state.storage, request.app.state.settings
    if settings.photo_delivery == "redirect":
        url = await anyio.to_thread.run_sync(storage.presigned_url, key)
        if url:
            # Cached for half the URL's life, so a browser never follows a redirect to an expired URL.
            max_age = settings.s3_presign_seconds // 2
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": f"private, max-age={max_age}"})
    try:
        chunks = await anyio.to_thread.run_sync(storage.iter_bytes, key)
    except FileNotFoundError as exc:
        raise NotFound("photo_not_found") from exc
    return StreamingResponse(
        chunks,
        media_type="image/jpeg",
        headers={"Cache-Control": CACHE_CONTROL, "ETag": f'"{photo.sha256[:32]}-{variant}"'},
    )


_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}, "description": "The photo, without metadata"},
    307: {"description": "PHOTO_DELIVERY=redirect: a short-lived presigned URL of the photo (the `Location` header)"},
    **problem_responses(404, 409, 422, 503),
}


@router.get("/{photo_id}", response_class=StreamingResponse, responses=_ANSWERS)
async def get_photo(photo_id: UUID, request: Request, session: SessionDep):
    return await _serve(request, session, photo_id, "public")


@router.get("/{photo_id}/thumbnail", response_class=StreamingResponse, responses=_ANSWERS)
async def get_thumbnail(photo_id: UUID, request: Request, session: SessionDep):
    return await _serve(request, session, photo_id, "thumbnail")
