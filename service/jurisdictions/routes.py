"""The city's map as staff screens draw it (the IOC wall's base map)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from service.auth.subject import STAFF_ROLES, AuthSubject, require_roles
from service.db import ReadSessionDep
from service.errors import problem_responses
from service.ioc import cache
from service.jurisdictions import outlines
from service.jurisdictions.schemas import Outlines

router = APIRouter(prefix="/v1/jurisdictions", tags=["jurisdictions"])

StaffReader = Annotated[AuthSubject, Depends(require_roles(*STAFF_ROLES))]


@router.get(
    "/outlines",
    response_model=Outlines,
    summary="Ward outlines, simplified for drawing a base map without a tile server (GeoJSON)",
    responses={
        304: {"description": "Not modified: the answer matching `If-None-Match` is still current"},
        **problem_responses(401, 403),
    },
)
async def get_outlines(
    request: Request,
    session: ReadSessionDep,
    subject: StaffReader,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    body = await outlines.outlines_json(session, request.app.state.settings.database_url)
    etag = cache.etag_of(body)
    headers = {"ETag": etag, "Vary": "Authorization, X-API-Key"}
    if cache.etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
