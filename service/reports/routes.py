"""Citizen-facing report endpoints: submit with photos, follow by tracking code."""

from datetime import datetime
from json.encoder import encode_basestring as _json_string  # a str as JSON writes it, quotes included
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, field_validator

from service.auth.api_keys import api_client_of, check_submitter
from service.db import SessionDep, SessionOnDemand
from service.errors import problem_responses, timeline_in_vietnamese, wants_vietnamese
from service.jobs import photos_job
from service.lifecycle.events import render
from service.models import Report
from service.reports import citizen, lookup, service
from service.reports.codes import citizen_token
from service.reports.intake import PHOTO_FIELD, parse_report_request, read_message_with_photos
from service.reports.schemas import (
    NamedRef,
    OriginalProgress,
    PhotoPublic,
    ReportCreate,
    ReportCreated,
    ReportPublic,
    TimelineEntry,
)
from service.reports.service import StagedPhoto
from service.reports.submission import commit_report, discard_staged

router = APIRouter(prefix="/v1/reports", tags=["reports"])
CitizenToken = Annotated[
    str | None, Header(alias="X-Citizen-Token", description="The citizen_token returned at intake")
]
LOCATION_HEADER = {
    "Location": {
        "description": "Where to follow the report",
        "required": True,
        "schema": {"type": "string", "format": "uri"},
    }
}


def _without_null(field: dict) -> dict:
    branches = [branch for branch in field.get("anyOf", []) if branch != {"type": "null"}]
    if len(branches) != 1 or len(field["anyOf"]) != 2:
        return field
    return {**{key: value for key, value in field.items() if key not in ("anyOf", "default")}, **branches[0]}


def _intake_body_schema() -> dict:
    schema = ReportCreate.model_json_schema()
    multipart = {
        **schema,
        "properties": {
            # A form field is text or left out, never null (the text "null" is text).
            **{name: _without_null(field) for name, field in schema["properties"].items()},
            PHOTO_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": 5},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": multipart, "encoding": {PHOTO_FIELD: {"contentType": "image/*"}}},
            },
        }
    }


# The route takes the request alone and reads its key and headers itself: FastAPI's dependency solving
# (the session, the key, the header) was a sixth of an intake request's CPU, and intake needs no session
# of its own unless a category, the service area or an earlier try has to be read. The spec still
# names the header and the key, from here.
IDEMPOTENCY_KEY_MAX_LENGTH = 200
_IDEMPOTENCY_KEY_PARAMETER = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "schema": {
        "anyOf": [{"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH}, {"type": "null"}],
        "description": "Retries with the same key and body return the same report",
        "title": "Idempotency-Key",
    },
    "description": "Retries with the same key and body return the same report",
}
# An empty key is refused, not taken for "no key": it would be stored, and every later empty key clash with it.
_IDEMPOTENCY_KEY = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=IDEMPOTENCY_KEY_MAX_LENGTH)])


def idempotency_key_of(request: Request) -> str | None:
    """The `Idempotency-Key` header, refused (422, as a declared header parameter is) when empty or too long."""
    value = request.headers.get("idempotency-key")
    if value is not None and not 0 < len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        try:
            _IDEMPOTENCY_KEY.validate_python(value)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("header", "idempotency-key", *error["loc"])} for error in exc.errors()]
            ) from exc
    return value


@router.post(
    "",
    status_code=201,
    response_model=ReportCreated,
    summary="Submit a report (JSON, or multipart with up to 5 photos)",
    openapi_extra={
        **_intake_body_schema(),
        "security": [{"APIKeyHeader": []}],
        "parameters": [_IDEMPOTENCY_KEY_PARAMETER],
    },
    responses={
        201: {"headers": LOCATION_HEADER},
        200: {
            "model": ReportCreated,
            "description": "An idempotent retry: the report created earlier",
            "headers": LOCATION_HEADER,
        },
        **problem_responses(401, 403, 409, 413, 415, 422, 429, 503),
    },
)
async def submit_report(request: Request) -> Response:
    client = check_submitter(await api_client_of(request))
    idempotency_key = idempotency_key_of(request)
    state = request.app.state
    staged: list[StagedPhoto] = []
    try:
        data = await parse_report_request(request, state.storage, state.settings, staged)
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    # Read-only, and opened only when something must be read: the intake writer commits the report in
    # a session of its own.
    async with SessionOnDemand(state.sessions) as session:
        submission = await commit_report(
            request, session, client=client, data=data, staged=staged, idempotency_key=idempotency_key
        )
    report = submission.report
    url = f"{state.settings.public_base_url}/v1/reports/{report.tracking_code}"
    return Response(
        _created_body(
            report.id, report.tracking_code, report.status, report.created_at, url, state.settings.secret_key
        ),
        status_code=200 if submission.replayed else 201,
        headers={"Location": url, **({"Idempotent-Replayed": "true"} if submission.replayed else {})},
        media_type="application/json",
    )


def _created_body(
    report_id: UUID, tracking_code: str, status: str, created_at: datetime, url: str, secret: str
) -> bytes:
    """ReportCreated as pydantic writes it (compact, the time in ISO 8601 with Z for UTC), written directly:
    building the model and serialising it was a fortieth of an intake request's CPU, and json.dumps of
    the six fields half of what was left. Only the strings that could hold a character to escape are
    escaped; a UUID, a time and the token's base64url never do."""
    created = created_at.isoformat()
    if created.endswith("+00:00"):
        created = created[:-6] + "Z"
    token = citizen_token(secret, report_id)
    return (
        f'{{"id":"{report_id}","tracking_code":{_json_string(tracking_code)},"status":{_json_string(status)},'
        f'"citizen_token":"{token}","created_at":"{created}","url":{_json_string(url)}}}'
    ).encode()


def direct_routes() -> list[APIRoute]:
    """The routes that take the request alone and answer it themselves: the app sends them their
    requests straight from its innermost layer (service/direct_routes.py)."""
    return [route for route in router.routes if isinstance(route, APIRoute) and route.endpoint is submit_report]


def _named(row, vietnamese: bool) -> NamedRef | None:
    if row is None:
        return None
    return NamedRef(code=row.code, name=row.name_vi if vietnamese else row.name_en)


async def find_report(request: Request, session: SessionDep, tracking_code: str, *, for_update: bool = False) -> Report:
    """The report, counted against the caller's address in the tracking-lookup budget (lookup.py)."""
    return await lookup.counted(
        request, lambda: service.get_by_tracking_code(session, tracking_code, for_update=for_update)
    )


@router.get(
    "/{tracking_code}",
    response_model=ReportPublic,
    summary="Follow a report by its tracking code",
    description="A report its citizen did not make public shows its text, location, photos and timeline messages "
    "only with `X-Citizen-Token`; without it, its progress only (`details_withheld`).",
    responses=problem_responses(401, 404, 429),
)
async def get_report(
    tracking_code: str, request: Request, session: SessionDep, token: CitizenToken = None
) -> ReportPublic:
    report = await find_report(request, session, tracking_code)
    settings = request.app.state.settings
    if token is not None:
        citizen.authorise(settings, report, token)  # a wrong token says so, rather than hiding details silently
    details = service.shows_details(is_public=report.is_public, citizen=token is not None)
    view = await service.public_view(session, report)
    base = settings.public_base_url
    vietnamese = wants_vietnamese(request)
    timeline_vietnamese = timeline_in_vietnamese(request)
    original = view["original"]
    return ReportPublic(
        tracking_code=report.tracking_code,
        status=report.status,
        details_withheld=not details,
        title=report.title if details else None,
        description=report.description if details else None,
        category=_named(view["category"], vietnamese),
        department=_named(view["department"], vietnamese),
        priority=report.priority,
        lat=report.lat if details else None,
        lon=report.lon if details else None,
        address=report.address if details else None,
        created_at=report.created_at,
        updated_at=report.updated_at,
        due_at=report.due_at,
        duplicate_of=original.tracking_code if original else None,
        original=OriginalProgress(
            tracking_code=original.tracking_code,
            status=original.status,
            department=_named(view["original_department"], vietnamese),
            due_at=original.due_at,
            supporter_count=original.supporter_count,
        )
        if original
        else None,
        supporter_count=report.supporter_count,
        photos=[
            PhotoPublic(
                id=photo.id,
                url=f"{base}/v1/photos/{photo.id}",
                thumbnail_url=f"{base}/v1/photos/{photo.id}/thumbnail",
                ready=photo.public_key is not None,
            )
            for photo in view["photos"]
        ]
        if details
        else [],
        timeline=[_entry(event, timeline_vietnamese, details) for event in view["events"]],
    )


def _entry(event, vietnamese: bool, details: bool) -> TimelineEntry:
    """A public timeline entry; what a person wrote is left out when the report's details are withheld."""
    data = event.data or {}
    status = data["status"] if isinstance(data.get("status"), dict) else {}
    written = event.message if details else None
    return TimelineEntry(
        code=event.type,
        at=event.created_at,
        message=render(event.type, data, written, vietnamese=vietnamese),
        status=status.get("to"),
        previous_status=status.get("from"),
    )


# --- the citizen's side: tracking code + the token returned at intake ---------------------------


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)

    @field_validator("rating", mode="before")
    @classmethod
    def _not_true_or_false(cls, value: object) -> object:
        if isinstance(value, bool):  # pydantic would read true as one star
            raise ValueError("a rating is a number from 1 to 5, not true or false")
        return value


class ReopenIn(BaseModel):
    # Not stripped before the length check, so the spec's minLength is the rule a client meets;
    # stripped when recorded.
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=5, max_length=2000, pattern=r"\S")


class CitizenActionResult(BaseModel):
    tracking_code: str
    status: str
    citizen_rating: int | None = None


def _result(report) -> CitizenActionResult:
    return CitizenActionResult(
        tracking_code=report.tracking_code, status=report.status, citizen_rating=report.citizen_rating
    )


MESSAGE_WITH_PHOTOS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"message": {"type": "string", "maxLength": 5000}},
                    "additionalProperties": False,  # any other field is refused (read_message_with_photos)
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string", "maxLength": 5000},
                        PHOTO_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": 5},
                    },
                    "additionalProperties": False,
                }
            },
        },
    }
}


@router.post(
    "/{tracking_code}/replies",
    response_model=CitizenActionResult,
    summary="Answer the question of an on-hold report (text and photos)",
    openapi_extra=MESSAGE_WITH_PHOTOS_BODY,
    responses=problem_responses(401, 404, 409, 413, 415, 422, 429),
)
async def citizen_reply(tracking_code: str, request: Request, session: SessionDep, token: CitizenToken = None):
    state = request.app.state
    report = await find_report(request, session, tracking_code, for_update=True)
    citizen.authorise(state.settings, report, token)
    staged: list[StagedPhoto] = []
    try:
        message = await read_message_with_photos(request, state.storage, state.settings, staged)
        await citizen.answer(session, report, message=message, photos=staged, settings=state.settings)
        if staged:
            photos_job(session, report.id)
        await state.handoff.commit(session)  # here, so that a failed commit still discards the staged files
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    return _result(report)


@router.post(
    "/{tracking_code}/rating",
    response_model=CitizenActionResult,
    summary="Rate the resolution 1–5",
    responses=problem_responses(401, 404, 409, 422, 429),
)
async def rate(tracking_code: str, body: RatingIn, request: Request, session: SessionDep, token: CitizenToken = None):
    report = await find_report(request, session, tracking_code, for_update=True)
    citizen.authorise(request.app.state.settings, report, token)
    return _result(await citizen.rate(session, report, rating=body.rating, comment=body.comment))


@router.post(
    "/{tracking_code}/reopen",
    response_model=CitizenActionResult,
    summary="Reopen a resolved report (once, within the window)",
    responses=problem_responses(401, 404, 409, 422, 429),
)
async def reopen(tracking_code: str, body: ReopenIn, request: Request, session: SessionDep, token: CitizenToken = None):
    report = await find_report(request, session, tracking_code, for_update=True)
    citizen.authorise(request.app.state.settings, report, token)
    return _result(
        await citizen.reopen(session, report, reason=body.reason.strip(), settings=request.app.state.settings)
    )
