"""Open311 answers every failure under /open311/ with the spec's error list, in the requested format.

The spec's HTTP codes: 404 for what doesn't exist, 403 for a missing or wrong api_key, 400 for the
rest. Ours are kept where a client must act differently: 405 (another method; `Allow` says which),
409 (Idempotency-Key reused), 413/415 (photo too large / not a photo), 429 (slow down), 5xx (retry
later). The format is the path's (`.json`, else XML, the spec's default).

Two doors lead here: Open311Route answers what its routes raise (naming fields as the spec does and
rolling the session back), and `problem_as_errors` answers everything else under /open311/ that the
service would otherwise answer as problem details: an unknown path or method, a body refused by a
middleware, a rate limit, a crash outside a route.
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
    FieldError,
    Unprocessable,
    field_errors_from_pydantic,
    is_outage,
    is_unstorable_text,
    message_for,
)
from service.open311.formats import FORMATS, render_errors
from service.open311.forms import SPEC_NAMES

log = logging.getLogger(__name__)

KEPT_STATUSES = (405, 409, 413, 415, 429)


def _format_of(request: Request) -> str:
    response_format = request.path_params.get("response_format")
    if response_format in FORMATS:
        return response_format
    return "json" if request.url.path.lower().endswith(".json") else "xml"


def spec_status(status: int, code: str) -> int:
    if status in (401, 403):
        return 403
    if status == 404 or code == "unknown_service_code":
        return 404
    if status in KEPT_STATUSES or status >= 500:
        return status
    return 400


def status_for(exc: AppError) -> int:
    return spec_status(exc.status, exc.code)


def _without_challenge(headers: dict) -> dict:
    """Open311 keys are not HTTP authentication: no WWW-Authenticate challenge."""
    return {key: value for key, value in headers.items() if key.lower() != "www-authenticate"}


def problem_as_errors(
    request: Request, status: int, code: str, description: str, errors: list[FieldError], headers: dict
) -> Response:
    """What the service answers elsewhere as problem details, as the spec's error list."""
    status = spec_status(status, code)
    if status == 405 and headers.get("Allow"):
        description = f"{description} Allowed: {headers['Allow']}."
    listed = [(status, f"{SPEC_NAMES.get(error.field, error.field)}: {error.message}") for error in errors]
    return render_errors(_format_of(request), status, listed or [(status, description)], _without_challenge(headers))


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
        return render_errors(response_format, status, [(status, description)], _without_challenge(exc.headers))
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
