"""The Intelligent Operations Center: city-wide figures for supervisors and the IOC wall, and its page."""

from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from service import city_time
from service.auth.subject import AuthSubject, require_roles
from service.catalogue.service import check_filter_codes
from service.city_time import CityTime
from service.db import ReadSessionDep
from service.errors import problem_responses
from service.ioc import cache, service
from service.ioc.schemas import Bucket, Hotspots, Metric, Summary, TimeSeries

router = APIRouter(prefix="/v1/ioc", tags=["ioc"])
page_router = APIRouter(tags=["ioc"], include_in_schema=False)

# The figures are aggregates over the whole city, so every role that watches the city may read them.
IOC_ROLES = ("ioc_viewer", "supervisor", "dispatcher", "admin")
IocReader = Annotated[AuthSubject, Depends(require_roles(*IOC_ROLES))]

PAGE_DIR = Path(__file__).resolve().parent
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the answer matching `If-None-Match` is still current"}
}


async def ioc_query(  # async: a plain `def` dependency would cost a worker-thread hop per request
    request: Request,
    from_: Annotated[
        CityTime | None,
        Query(
            alias="from",
            description="Start (inclusive) on created_at; default: midnight (city time) 29 days before `to`'s day. "
            + city_time.LOWER_BOUND_HELP,
        ),
    ] = None,
    to: Annotated[
        CityTime | None, Query(description=f"End (exclusive); default now. {city_time.UPPER_BOUND_HELP}")
    ] = None,
    department: Annotated[str | None, Query(max_length=64, description="Department code")] = None,
    jurisdiction: Annotated[
        str | None,
        Query(max_length=64, description="A ward, or a parent (the city, a district) standing for everything under it"),
    ] = None,
    category: Annotated[str | None, Query(max_length=64, description="Category (service_code)")] = None,
) -> service.IocQuery:
    zone = city_time.city_zone(request)
    return service.IocQuery(
        start=city_time.start_of(from_, zone),
        end=city_time.end_of(to, zone),
        department=department or None,
        jurisdiction=jurisdiction or None,
        category=category or None,
    )


IocQueryDep = Annotated[service.IocQuery, Depends(ioc_query)]


def _checked(session, query: service.IocQuery, compute):
    """The figures, once the filter's codes are known ones. Checked only when the figures are computed:
    an answer in the cache was computed for codes already checked."""

    async def run() -> bytes:
        await check_filter_codes(
            session, department=query.department, category=query.category, jurisdiction=query.jurisdiction
        )
        return await compute()

    return run


async def _answer(request: Request, kind: str, parts: dict, compute, if_none_match: str | None) -> Response:
    settings = request.app.state.settings
    key = cache.cache_key(service.database_namespace(settings.database_url), kind, parts)
    body, etag, hit = await cache.cached(request.app.state.arq, key, compute)
    headers = {
        "ETag": etag,
        "Cache-Control": cache.CACHE_CONTROL,
        "Vary": "Authorization, X-API-Key",
        "X-Cache": "hit" if hit else "miss",
    }
    if cache.etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/summary",
    response_model=Summary,
    summary="City-wide figures: intake, status, backlog, SLA, response times, department scorecard",
    responses={**NOT_MODIFIED, **problem_responses(401, 403, 422)},
)
async def get_summary(
    request: Request,
    session: ReadSessionDep,  # the read replica when DATABASE_READ_URL is set
    subject: IocReader,
    query: IocQueryDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    state = request.app.state
    zone = ZoneInfo(state.settings.sla_timezone)
    return await _answer(
        request,
        "summary",
        query.cache_parts(),
        _checked(session, query, lambda: service.summary_json(session, query, zone=zone, sessions=state.read_sessions)),
        if_none_match,
    )


@router.get(
    "/timeseries",
    response_model=TimeSeries,
    summary="Reports received, resolved or gone overdue per hour or per (city-time) day",
    responses={**NOT_MODIFIED, **problem_responses(401, 403, 422)},
)
async def get_timeseries(
    request: Request,
    session: ReadSessionDep,  # the read replica when DATABASE_READ_URL is set
    subject: IocReader,
    query: IocQueryDep,
    metric: Annotated[
        Metric, Query(description="received (created_at), resolved (resolved_at), overdue (due_at passed unmet)")
    ] = "received",
    bucket: Annotated[Bucket, Query()] = "day",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    zone = ZoneInfo(request.app.state.settings.sla_timezone)
    parts = {**query.cache_parts(), "metric": metric, "bucket": bucket}
    return await _answer(
        request,
        "timeseries",
        parts,
        _checked(
            session, query, lambda: service.timeseries_json(session, query, metric=metric, bucket=bucket, zone=zone)
        ),
        if_none_match,
    )


@router.get(
    "/hotspots",
    response_model=Hotspots,
    summary="Report density per H3 hexagon, with each cell's top categories (GeoJSON)",
    responses={**NOT_MODIFIED, **problem_responses(401, 403, 422)},
)
async def get_hotspots(
    request: Request,
    session: ReadSessionDep,  # the read replica when DATABASE_READ_URL is set
    subject: IocReader,
    query: IocQueryDep,
    resolution: Annotated[
        int, Query(ge=0, le=9, description="H3 resolution of the cells (reports are placed at 9)")
    ] = 8,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most this many cells, densest first")] = 500,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    zone = ZoneInfo(request.app.state.settings.sla_timezone)
    parts = {**query.cache_parts(), "resolution": resolution, "limit": limit}
    return await _answer(
        request,
        "hotspots",
        parts,
        _checked(
            session,
            query,
            lambda: service.hotspots_json(session, query, resolution=resolution, limit=limit, zone=zone),
        ),
        if_none_match,
    )


# The page itself holds no data: its script asks the API above with the key the viewer gives it.
# Everything it loads comes from this service (a closed network has nothing else), and no inline
# script or style runs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
PAGE_FILES = {
    "/ioc": ("dashboard.html", "text/html; charset=utf-8"),
    "/ioc/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/ioc/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


def _page_file(name: str, media_type: str):
    async def serve() -> Response:
        return Response((PAGE_DIR / name).read_bytes(), media_type=media_type, headers=PAGE_HEADERS)

    return serve


for _path, (_name, _media_type) in PAGE_FILES.items():
    page_router.add_api_route(_path, _page_file(_name, _media_type), methods=["GET"])
