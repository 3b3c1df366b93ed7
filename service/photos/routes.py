"""Serving photos: only the re-encoded copies (no EXIF, no GPS), never the originals."""

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.db import SessionDep
from service.errors import AppError, NotFound, problem_responses
from service.models import Photo

router = APIRouter(prefix="/v1/photos", tags=["photos"])


class PhotoNotReady(AppError):
    status, code = 409, "photo_not_ready"


async def _serve(request: Request, session, photo_id: UUID, variant: Literal["public", "thumbnail"]):
    photo = await session.get(Photo, photo_id)
    if photo is None or photo.rejected_reason or photo.kind == "private":
        raise NotFound("photo_not_found")
    key = photo.public_key if variant == "public" else photo.thumbnail_key
    if key is None:
        raise PhotoNotReady(headers={"Retry-After": "5"})
    storage = request.app.state.storage
    return StreamingResponse(
        storage.iter_bytes(key),
        media_type="image/jpeg",
        headers={"Cache-Control": "public, max-age=86400, immutable", "ETag": f'"{photo.sha256[:32]}-{variant}"'},
    )


_JPEG = {200: {"content": {"image/jpeg": {}}, "description": "The photo, without metadata"}}


@router.get("/{photo_id}", response_class=StreamingResponse, responses={**_JPEG, **problem_responses(404, 409)})
async def get_photo(photo_id: UUID, request: Request, session: SessionDep):
    return await _serve(request, session, photo_id, "public")


@router.get(
    "/{photo_id}/thumbnail", response_class=StreamingResponse, responses={**_JPEG, **problem_responses(404, 409)}
)
async def get_thumbnail(photo_id: UUID, request: Request, session: SessionDep):
    return await _serve(request, session, photo_id, "thumbnail")
