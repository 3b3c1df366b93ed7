"""Who may fetch a photo: the one rule behind GET /v1/photos/{id} and its thumbnail.

A public report's photos are public (apps show them in lists and maps). A report its citizen did not
make public keeps its photos as it keeps its text (reports.service.shows_details): they are served
to that citizen (the report's citizen token in X-Citizen-Token) and to whoever may read its ticket
(a staff token or an API key, by the tickets' visibility rule); to anyone else the photo does not
exist (404), so its id reveals nothing.
"""

from collections.abc import Awaitable, Callable
from uuid import UUID

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import AuthSubject
from service.errors import NotFound
from service.models import Photo, Report
from service.reports.codes import verify_citizen_token
from service.reports.service import shows_details
from service.tickets.visibility import can_read


async def readable_photo(
    session: AsyncSession,
    photo_id: UUID,
    *,
    citizen_token: str | None,
    secret_key: str,
    caller: Callable[[], Awaitable[AuthSubject | None]],
) -> Photo:
    """The photo, or NotFound. `caller` (who sent the request, None for nobody known) is asked only
    for a photo that is not public and came without its citizen token: a public photo costs no sign-in."""
    row = (
        await session.exec(
            select(Photo, Report.is_public)
            .join(Report, col(Report.id) == col(Photo.report_id))
            .where(Photo.id == photo_id)
        )
    ).first()
    if row is None:
        raise NotFound("photo_not_found")
    photo, is_public = row
    if photo.rejected_reason or photo.kind == "private":
        raise NotFound("photo_not_found")
    citizen = citizen_token is not None and verify_citizen_token(secret_key, photo.report_id, citizen_token)
    if shows_details(is_public=is_public, citizen=citizen):
        return photo
    subject = await caller()
    if subject is not None and await can_read(session, subject, photo.report_id):
        return photo
    raise NotFound("photo_not_found")
