"""Open311 GeoReport v2 under /open311/v2: the spec's paths, formats (.xml, .json) and error lists.

A service request posted here enters the same intake as /v1/reports (validation, idempotency,
photos, commit-then-enqueue). Lists show only public reports; one request read by its tracking code
shows what /v1/reports shows without the citizen token (a report kept private: its progress only),
counted in the same per-address lookup budget. Reporter data is never shown.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BeforeValidator, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from service import city_time
from service.auth import api_keys
from service.city_time import CityTime
from service.db import SessionOnDemand
from service.errors import (
    Forbidden,
    Unprocessable,
    allowed_methods,
    problem_response,
    timeline_in_vietnamese,
)
from service.open311 import forms, schemas, service
from service.open311.errors import Open311Route, Session
from service.open311.formats import render, render_errors, w3c_datetime
from service.reports import lookup
from service.reports.service import StagedPhoto
from service.reports.submission import commit_report, discard_staged

MAX_PAGE_SIZE = 1000
# Deeper than any real listing (a billion requests at the largest page size), small enough that the
# offset stays a 64-bit integer in SQL.
MAX_PAGE = 1_000_000
STATUS_KEYS = tuple(service.STATUS_GROUPS)


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Blank = BeforeValidator(_blank_is_none)
ResponseFormat = Annotated[Literal["xml", "json"], Path(description="`xml` (text/xml) or `json` (application/json)")]
JurisdictionId = Annotated[
    str | None,
    Blank,
    Query(description=f"Optional: this endpoint serves one jurisdiction, `{service.JURISDICTION_ID}`"),
]


def _xml(root: str, description: str) -> dict:
    example = f'<?xml version="1.0" encoding="utf-8"?>\n<{root}>…</{root}>'
    return {"description": description, "content": {"text/xml": {"schema": {"type": "string"}, "example": example}}}


_ERROR_MEANINGS = {
    400: "Invalid request (the spec's general error); one error per problem",
    403: "Missing or invalid api_key",
    404: "Unknown jurisdiction_id, service_code, service request, token or format",
    409: "The Idempotency-Key was used with a different request",
    413: "A photo or the body is too large",
    415: "Not a JPEG/PNG/WebP/HEIC photo, or not a form body",
    429: "Too many requests (per key, address or reporter): retry after Retry-After seconds",
    503: "Temporarily unavailable: retry with the same Idempotency-Key",
}


def _errors(*statuses: int) -> dict:
    return {
        status: {"model": list[schemas.Open311Error], **_xml("errors", _ERROR_MEANINGS[status])} for status in statuses
    }


router = APIRouter(
    prefix="/open311/v2",
    tags=["open311"],
    route_class=Open311Route,
    # Every client error is the spec's error list (never problem details, never a 422).
    responses={"4XX": {"model": list[schemas.Open311Error], **_xml("errors", "The spec's error list")}},
)


@router.get(
    "/discovery.{response_format}",
    summary="Service discovery: the endpoint, its formats and changeset",
    response_model=schemas.Open311Discovery,
    responses={200: _xml("discovery", "The discovery document")},
)
async def discovery(request: Request, response_format: ResponseFormat, session: Session) -> Response:
    """Open311 Service Discovery: this GeoReport v2 endpoint, its formats and when the catalogue last changed."""
    settings = request.app.state.settings
    changed = w3c_datetime(await service.catalogue_changed_at(session)) or ""
    base = settings.public_base_url
    document = schemas.Open311Discovery(
        changeset=changed,
        contact=f"Citizen-feedback intake of Ho Chi Minh City (1022). API documentation: {base}/docs",
        key_service="API keys are issued by the service operator on request (intake apikey create).",
        endpoints=[
            schemas.Open311Endpoint(
                specification=schemas.SPECIFICATION,
                url=f"{base}{router.prefix}",
                changeset=changed,
                type="production" if settings.environment == "production" else "test",
                formats=["text/xml", "application/json"],
            )
        ],
    )
    return render(response_format, "discovery", schemas.dump(document))


@router.get(
    "/services.{response_format}",
    summary="GET Service List: the categories a request can be filed under",
    response_model=list[schemas.Open311Service],
    responses={
        200: _xml("services", "The services; metadata=true means the service has attributes"),
        **_errors(404),
    },
)
async def service_list(
    request: Request, response_format: ResponseFormat, session: Session, jurisdiction_id: JurisdictionId = None
) -> Response:
    """The catalogue's active categories. Names follow `Accept-Language` (`vi` or English)."""
    service.check_jurisdiction(jurisdiction_id)
    vietnamese = timeline_in_vietnamese(request)
    categories = await service.list_services(session)
    return render(response_format, "services", [schemas.dump(schemas.service_of(c, vietnamese)) for c in categories])


@router.get(
    "/services/{service_code}.{response_format}",
    summary="GET Service Definition: a service's attributes (the extra questions)",
    response_model=schemas.Open311ServiceDefinition,
    responses={
        200: _xml("service_definition", "The definition, attributes in their order"),
        **_errors(404),
    },
)
async def service_definition(
    request: Request,
    service_code: str,
    response_format: ResponseFormat,
    session: Session,
    jurisdiction_id: JurisdictionId = None,
) -> Response:
    """The attributes a request for this service answers, as `attribute[code]` fields, in their `order`."""
    service.check_jurisdiction(jurisdiction_id)
    category = await service.get_service(session, service_code)
    definition = schemas.definition_of(category, timeline_in_vietnamese(request))
    return render(response_format, "service_definition", schemas.dump(definition))


@router.post(
    "/requests.{response_format}",
    status_code=201,
    summary="POST Service Request: file a report (form fields; multipart with a `media` photo)",
    response_model=list[schemas.Open311RequestCreated],
    openapi_extra=schemas.POST_REQUEST_BODY,
    responses={
        201: _xml("service_requests", "Created: the tracking code (service_request_id) and a token"),
        200: {"model": list[schemas.Open311RequestCreated], **_xml("service_requests", "An idempotent retry")},
        **_errors(400, 403, 404, 409, 413, 415, 429, 503),
    },
)
async def post_service_request(
    request: Request,
    response_format: ResponseFormat,
    session: Session,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="Retries with the same key and body return the same request"),
    ] = None,
) -> Response:
    """Files a report through the same intake as `POST /v1/reports` (channel `open311`).

    The body is `application/x-www-form-urlencoded`, or `multipart/form-data` with a photo in `media`.
    `first_name`, `last_name`, `email` and `phone` are kept private and never shown.
    """
    state = request.app.state
    staged: list[StagedPhoto] = []
    try:
        form = await forms.read_form(request, state.storage, state.settings, staged)
        client = await _submitter(request, session, form.get("api_key") or request.headers.get("x-api-key"))
        service.check_jurisdiction(form.get("jurisdiction_id") or request.query_params.get("jurisdiction_id"))
        submitted = forms.service_request_form(form)
        form.raise_refused_photo()
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    submission = await commit_report(
        request,
        SessionOnDemand.of(session),
        client=client,
        data=submitted.data,
        staged=staged,
        idempotency_key=idempotency_key,
        attributes=submitted.attributes,
        media_url=submitted.media_url,
    )
    report = submission.report
    created = schemas.Open311RequestCreated(
        service_request_id=report.tracking_code,
        service_notice=schemas.received_notice(report.tracking_code, timeline_in_vietnamese(request)),
        account_id=submitted.account_id,
        token=str(report.id),
    )
    location = f"{state.settings.public_base_url}{router.prefix}/requests/{report.tracking_code}.{response_format}"
    return render(
        response_format,
        "service_requests",
        [schemas.dump(created)],
        status_code=200 if submission.replayed else 201,
        headers={"Location": location, **({"Idempotent-Replayed": "true"} if submission.replayed else {})},
    )


async def _submitter(request: Request, session: AsyncSession, key: str | None):
    client = await api_keys.authenticate(session, key, cache_seconds=api_keys.cache_seconds(request)) if key else None
    if client is None:
        raise Forbidden(detail="api_key is missing or invalid: can't proceed with create_request.")
    return await api_keys.require_submitter(client)


def _comma_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


@router.get(
    "/requests.{response_format}",
    summary="GET Service Requests: public requests, newest first (last 90 days, 1000 at most)",
    response_model=list[schemas.Open311ServiceRequest],
    responses={
        200: _xml("service_requests", "The requests"),
        **_errors(400, 404),
    },
)
async def service_requests(
    request: Request,
    response_format: ResponseFormat,
    session: Session,
    jurisdiction_id: JurisdictionId = None,
    service_request_id: Annotated[
        str | None, Blank, Query(description="Comma-separated tracking codes; overrides every other filter")
    ] = None,
    service_code: Annotated[str | None, Blank, Query(description="Comma-separated service codes")] = None,
    start_date: Annotated[
        CityTime | None,
        Blank,
        Query(
            description="W3C datetime, e.g. 2026-11-01T00:00:00Z (default: 90 days ago). " + city_time.LOWER_BOUND_HELP
        ),
    ] = None,
    end_date: Annotated[
        CityTime | None, Blank, Query(description="W3C datetime (default: now). " + city_time.UPPER_BOUND_HELP)
    ] = None,
    status: Annotated[str | None, Blank, Query(description="Comma-separated: open, closed")] = None,
    # The bounds sit on the int, not on `int | None`: an empty `page=` is None, which `ge` cannot compare.
    page: Annotated[
        Annotated[int, Field(ge=1, le=MAX_PAGE)] | None,
        Blank,
        Query(description=f"Extension: page number, from 1 (at most {MAX_PAGE})"),
    ] = None,
    page_size: Annotated[
        Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] | None,
        Blank,
        Query(description="Extension: requests per page (at most 1000)"),
    ] = None,
    extensions: Annotated[
        bool | None, Blank, Query(description="Extension: add extended_attributes (channel, photos, tracking_code)")
    ] = None,
) -> Response:
    """Public reports only. `service_request_id` overrides the other filters; without dates, the last
    90 days; at most 1000 per page (`page`, `page_size`)."""
    service.check_jurisdiction(jurisdiction_id)
    statuses = _comma_list(status)
    if statuses and any(item not in STATUS_KEYS for item in statuses):
        raise Unprocessable("validation_error", "status", "status takes open and/or closed.")
    tracking_codes = _comma_list(service_request_id)
    start, end = None, None
    if tracking_codes is None:
        zone = city_time.city_zone(request)
        # The spec's end_date is the last moment included: for a bare date, that day's last microsecond.
        last = city_time.end_of(end_date, zone) - timedelta(microseconds=1) if end_date is not None else None
        start, end = service.request_window(city_time.start_of(start_date, zone), last, datetime.now(UTC))
    size = page_size or MAX_PAGE_SIZE
    reports = await service.list_public_requests(
        session,
        tracking_codes=tracking_codes,
        service_codes=_comma_list(service_code),
        statuses=statuses,
        start=start,
        end=end,
        offset=((page or 1) - 1) * size,
        limit=size,
    )
    return _requests_response(
        request,
        response_format,
        await service.contexts(session, reports, vietnamese=timeline_in_vietnamese(request)),
        bool(extensions),
    )


def _requests_response(request: Request, response_format: str, contexts: list, extensions: bool) -> Response:
    base = request.app.state.settings.public_base_url
    vietnamese = timeline_in_vietnamese(request)
    data = [
        schemas.dump(schemas.request_of(context, base_url=base, vietnamese=vietnamese, extensions=extensions))
        for context in contexts
    ]
    return render(response_format, "service_requests", data)


@router.get(
    "/requests/{service_request_id}.{response_format}",
    summary="GET Service Request: one request by its tracking code",
    response_model=list[schemas.Open311ServiceRequest],
    responses={
        200: _xml("service_requests", "A list of one request"),
        **_errors(404, 429),
    },
)
async def service_request(
    request: Request,
    service_request_id: str,
    response_format: ResponseFormat,
    session: Session,
    jurisdiction_id: JurisdictionId = None,
    extensions: Annotated[bool | None, Blank, Query(description="Extension: add extended_attributes")] = None,
) -> Response:
    """The id is the tracking code; case and the dash don't matter. A request its citizen did not make
    public shows its progress only (no description, location, address, photos or answers). Lookups
    share one budget per address with `/v1/reports/{tracking_code}` (an unknown code counts more): 429
    with Retry-After when it is spent."""
    service.check_jurisdiction(jurisdiction_id)
    report = await lookup.counted(request, lambda: service.get_request(session, service_request_id))
    return _requests_response(
        request,
        response_format,
        await service.contexts(session, [report], vietnamese=timeline_in_vietnamese(request)),
        bool(extensions),
    )


@router.get(
    "/tokens/{token}.{response_format}",
    summary="GET service_request_id from a token (the token of POST requests)",
    response_model=list[schemas.Open311Token],
    responses={200: _xml("service_requests", "The service_request_id"), **_errors(404)},
)
async def token_lookup(
    token: str, response_format: ResponseFormat, session: Session, jurisdiction_id: JurisdictionId = None
) -> Response:
    """Requests are realtime here, so the answer to POST already has the id; the token works too."""
    service.check_jurisdiction(jurisdiction_id)
    report = await service.get_by_token(session, token)
    answer = schemas.Open311Token(service_request_id=report.tracking_code, token=str(report.id))
    return render(response_format, "service_requests", [schemas.dump(answer)])


@router.api_route("/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def unknown_resource(request: Request, path: str) -> Response:
    """An unknown path, or a known resource asked with a method it lacks: this route matches every
    path for GET and POST, so a POST to a GET-only resource (discovery, services, one request) lands
    here and is that resource's 405, as DELETE or PUT there is."""
    response_format = "json" if path.endswith(".json") else "xml"
    allowed = allowed_methods(request)
    if request.method not in allowed:
        return problem_response(request, 405, "method_not_allowed", headers={"Allow": ", ".join(allowed)})
    return render_errors(response_format, 404, [(404, f"No such GeoReport v2 resource: {path}")])
