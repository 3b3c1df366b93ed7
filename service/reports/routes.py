"""Citizen-facing report endpoints: submit with photos, follow by tracking code."""

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from service.auth.api_keys import SubmitterDep
from service.db import SessionDep
from service.errors import problem_responses, wants_vietnamese
from service.jobs import enqueue_process_report
from service.reports import service
from service.reports.codes import citizen_token
from service.reports.intake import PHOTO_FIELD, parse_report_request
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

router = APIRouter(prefix="/v1/reports", tags=["reports"])


def _intake_body_schema() -> dict:
    schema = ReportCreate.model_json_schema()
    multipart = {
        **schema,
        "properties": {
            **schema["properties"],
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


@router.post(
    "",
    status_code=201,
    response_model=ReportCreated,
    summary="Submit a report (JSON, or multipart with up to 5 photos)",
    openapi_extra=_intake_body_schema(),
    responses={
        200: {"model": ReportCreated, "description": "An idempotent retry: the report created earlier"},
        **problem_responses(401, 403, 409, 413, 415, 422, 503),
    },
)
async def submit_report(
    request: Request,
    session: SessionDep,
    client: SubmitterDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="Retries with the same key and body return the same report")
    ] = None,
) -> JSONResponse:
    state = request.app.state
    staged: list[StagedPhoto] = []
    try:
        data = await parse_report_request(request, state.storage, state.settings, staged)
        try:
            submission = await service.create(
                session,
                client=client,
                data=data,
                photos=staged,
                idempotency_key=idempotency_key,
                settings=state.settings,
            )
            await session.commit()
        except IntegrityError:
            await session.rollback()
            if not idempotency_key:
                raise
            replay = await service.replay_after_race(
                session, client=client, idempotency_key=idempotency_key, data=data, photos=staged
            )
            if replay is None:
                raise
            submission = service.Submission(report=replay, replayed=True)
    except BaseException:
        _discard(state.storage, staged)
        raise
    report = submission.report
    if submission.replayed:
        _discard(state.storage, staged)  # the first attempt's copies are the ones kept
    else:
        await enqueue_process_report(state.arq, state.settings.queue_name, report.id)
    url = f"{state.settings.public_base_url}/v1/reports/{report.tracking_code}"
    body = ReportCreated(
        id=report.id,
        tracking_code=report.tracking_code,
        status=report.status,
        citizen_token=citizen_token(state.settings.secret_key, report.id),
        created_at=report.created_at,
        url=url,
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=200 if submission.replayed else 201,
        headers={"Location": url, **({"Idempotent-Replayed": "true"} if submission.replayed else {})},
    )


def _discard(storage, staged: list[StagedPhoto]) -> None:
    for photo in staged:
        storage.delete(photo.key)


def _named(row, vietnamese: bool) -> NamedRef | None:
    if row is None:
        return None
    return NamedRef(code=row.code, name=row.name_vi if vietnamese else row.name_en)


@router.get(
    "/{tracking_code}",
    response_model=ReportPublic,
    summary="Follow a report by its tracking code",
    responses=problem_responses(404),
)
async def get_report(tracking_code: str, request: Request, session: SessionDep) -> ReportPublic:
    report = await service.get_by_tracking_code(session, tracking_code)
    view = await service.public_view(session, report)
    base = request.app.state.settings.public_base_url
    vietnamese = wants_vietnamese(request)
    original = view["original"]
    return ReportPublic(
        tracking_code=report.tracking_code,
        status=report.status,
        title=report.title,
        description=report.description,
        category=_named(view["category"], vietnamese),
        department=_named(view["department"], vietnamese),
        priority=report.priority,
        lat=report.lat,
        lon=report.lon,
        address=report.address,
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
        ],
        timeline=[TimelineEntry(type=event.type, at=event.created_at, message=event.message) for event in view["events"]],
    )
