"""Serving photos: only the re-encoded copies (no EXIF, no GPS), never the originals, and those of a
report kept private only to its citizen and to whoever may read its ticket (access.py).

With PHOTO_DELIVERY=redirect and an object store, the answer is a 307 to a presigned URL that
expires after S3_PRESIGN_SECONDS (the bucket itself stays private); otherwise the bytes stream
through the API.
"""

from typing import Annotated, Any, Literal
from uuid import UUID

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from service.auth.subject import subject_if_any
from service.db import SessionDep
from service.errors import AppError, NotFound, problem_responses
from service.photos.access import readable_photo

router = APIRouter(prefix="/v1/photos", tags=["photos"])

# A photo of a report kept private is served only on a credential, and the edge makes every answer to a
# credential `no-store` (service/http_security.py): no shared cache keeps it for the next caller.
CACHE_CONTROL = "public, max-age=86400, immutable"
CitizenToken = Annotated[
    str | None,
    Header(
        alias="X-Citizen-Token",
        description="The citizen_token of the photo's report: needed (or a staff token or API key that may "
        "read the ticket) when the report is not public",
    ),
]


class PhotoNotReady(AppError):
    status, code = 409, "photo_not_ready"


async def _serve(
    request: Request, session, photo_id: UUID, variant: Literal["public", "thumbnail"], citizen_token: str | None
):
    photo = await readable_photo(
        session,
        photo_id,
        citizen_token=citizen_token,
        secret_key=request.app.state.settings.secret_key,
        caller=lambda: subject_if_any(request, session),
    )
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
    # The worker records the original's hash as it writes these copies; the id stands in for a photo
    # that somehow has none (it names one photo's bytes just as well).
    tag = (photo.sha256 or photo.id.hex)[:32]
    return StreamingResponse(
        chunks,
        media_type="image/jpeg",
        headers={"Cache-Control": CACHE_CONTROL, "ETag": f'"{tag}-{variant}"'},
    )


_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}, "description": "The photo, without metadata"},
    307: {"description": "PHOTO_DELIVERY=redirect: a short-lived presigned URL of the photo (the `Location` header)"},
    **problem_responses(404, 409, 422, 503),
}


_ACCESS = (
    "A public report's photos are public. Those of a report its citizen did not make public are served "
    "with the report's `X-Citizen-Token`, or to a staff token or API key that may read its ticket; "
    "otherwise 404, as for a photo that does not exist."
)


@router.get("/{photo_id}", response_class=StreamingResponse, responses=_ANSWERS, description=_ACCESS)
async def get_photo(photo_id: UUID, request: Request, session: SessionDep, citizen_token: CitizenToken = None):
    return await _serve(request, session, photo_id, "public", citizen_token)


@router.get("/{photo_id}/thumbnail", response_class=StreamingResponse, responses=_ANSWERS, description=_ACCESS)
async def get_thumbnail(photo_id: UUID, request: Request, session: SessionDep, citizen_token: CitizenToken = None):
    return await _serve(request, session, photo_id, "thumbnail", citizen_token)
