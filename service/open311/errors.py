"""Open311 answers every failure with the spec's error list, in the requested format.

The spec's HTTP codes: 404 for what doesn't exist, 403 for a missing or wrong api_key, 400 for the
rest. Ours are kept where a client must act differently: 409 (Idempotency-Key reused), 413/415
(photo too large / not a photo), 429 (slow down), 503 (retry later).
"""

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.catalogue.attributes import InvalidAttributes
from service.db import SessionDep
from service.errors import (
    AppError,
    Unprocessable,
    field_errors_from_pydantic,
    is_outage,
    is_unstorable_text,
    message_for,
)
from service.open311.formats import FORMATS, render_errors
from service.open311.forms import SPEC_NAMES

log = logging.getLogger(__name__)

KEPT_STATUSES = (409, 413, 415, 429, 503)


def _format_of(request: Request) -> str:
    response_format = request.path_params.get("response_format")
    return response_format if response_format in FORMATS else "xml"


def status_for(exc: AppError) -> int:
    if exc.status in (401, 403):
        return 403
    if exc.status == 404 or exc.code == "unknown_service_code":
        return 404
    if exc.status in KEPT_STATUSES:
        return exc.status
    return 400


def error_response(request: Request, exc: Exception) -> Response:
    response_format = _format_of(request)
    if isinstance(exc, RequestValidationError):
        if any(tuple(error.get("loc", ()))[:2] == ("path", "response_format") for error in exc.errors()):
            return render_errors(response_format, 404, [(404, "Unknown format: use .xml or .json.")])
        errors = field_errors_from_pydantic(list(exc.errors()), request)
        return render_errors(response_format, 400, [(400, f"{error.field}: {error.message}") for error in errors])
    if isinstance(exc, InvalidAttributes):
        return render_errors(response_format, 400, [(400, problem.message) for problem in exc.problems])
    if isinstance(exc, AppError):
        status = status_for(exc)
        description = exc.detail or message_for(exc.code, request)
        if isinstance(exc, Unprocessable) and not exc.detail:
            description = f"{SPEC_NAMES.get(exc.field, exc.field)}: {description}"
        headers = {key: value for key, value in exc.headers.items() if key.lower() != "www-authenticate"}
        return render_errors(response_format, status, [(status, description)], headers)
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 400:  # a body Starlette could not parse
        return render_errors(response_format, 400, [(400, f"body: {exc.detail}")])
    if is_unstorable_text(exc):
        return render_errors(response_format, 400, [(400, message_for("text_not_storable", request))])
    if is_outage(exc):
        log.warning("dependency unavailable: %s", type(exc).__name__)
        return render_errors(
            response_format, 503, [(503, message_for("service_unavailable", request))], {"Retry-After": "2"}
        )
    log.exception("unhandled error", extra={"path": request.url.path})
    return render_errors(response_format, 500, [(500, message_for("internal_error", request))])


class Open311Route(APIRoute):
    """A route whose failures come out as the spec's errors, never as problem details."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure gets the spec's error shape
                # Answered here, the error never reaches the session dependency, which would then
                # commit: roll back first.
                session = getattr(request.state, "open311_session", None)
                if session is not None:
                    with suppress(Exception):
                        await session.rollback()
                return error_response(request, exc)

        return handle


async def _open311_session(request: Request, session: SessionDep) -> AsyncSession:
    request.state.open311_session = session
    return session


Session = Annotated[AsyncSession, Depends(_open311_session)]
"""The request's session, rolled back by Open311Route when the route fails."""
