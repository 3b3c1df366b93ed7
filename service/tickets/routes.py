"""The staff ticket API: list, read with the full timeline, move through the workflow, transfer, comment."""

import csv
import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from service import city_time
from service.auth.subject import AuthSubject, require_roles
from service.city_time import CityTime, CityZone
from service.db import SessionDep
from service.errors import problem_responses
from service.models import Photo, Report
from service.jobs import enqueue_process_photos
from service.reports.citizen import attach_photos
from service.reports.intake import read_message_with_photos
from service.reports.routes import MESSAGE_WITH_PHOTOS_BODY
from service.reports.submission import discard_staged
from service.reports.service import StagedPhoto, record_event
from service.tickets import service, workflow
from service.tickets.schemas import (
    AssignIn,
    CommentIn,
    Contact,
    TicketDetail,
    TicketPage,
    TicketSummary,
    TimelineEvent,
    TransferIn,
    TransitionIn,
    TriageIn,
)
from service.tickets.visibility import CONTACT_ROLES, TICKET_ROLES
from sqlmodel import col, select

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])

Reader = Annotated[AuthSubject, Depends(require_roles(*TICKET_ROLES))]
Worker = Annotated[AuthSubject, Depends(require_roles("officer", "dispatcher", "supervisor", "admin"))]
Dispatcher = Annotated[AuthSubject, Depends(require_roles("dispatcher", "supervisor", "admin"))]
Sort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at"]
ERRORS = problem_responses(401, 403, 404, 409, 422)


def _filters(
    status: Annotated[list[str] | None, Query(description="Repeat for several")] = None,
    category: str | None = None,
    department: str | None = None,
    priority: Literal["urgent", "normal", "low"] | None = None,
    sla_state: Literal["on_track", "at_risk", "overdue"] | None = None,
    jurisdiction: str | None = None,
    created_from: Annotated[
        CityTime | None, Query(description=f"Created at or after this. {city_time.LOWER_BOUND_HELP}")
    ] = None,
    created_to: Annotated[CityTime | None, Query(description=f"Created before this. {city_time.UPPER_BOUND_HELP}")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Free text over description, title, address, code")] = None,
    *,
    zone: CityZone,
) -> service.TicketFilters:
    return service.TicketFilters(
        status, category, department, priority, sla_state, jurisdiction,
        city_time.start_of(created_from, zone), city_time.end_of(created_to, zone), q,
    )


Filters = Annotated[service.TicketFilters, Depends(_filters)]


def _event(event) -> TimelineEvent:
    return TimelineEvent(
        id=event.id, type=event.type, at=event.created_at, actor=event.actor, public=event.public,
        message=event.message, data=event.data,
    )


def _summary(report: Report) -> TicketSummary:
    return TicketSummary.model_validate(report, from_attributes=True)


@router.get("", response_model=TicketPage, summary="List the tickets you may see", responses=ERRORS)
async def list_tickets(
    subject: Reader,
    session: SessionDep,
    filters: Filters,
    sort: Sort = "-created_at",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TicketPage:
    rows, next_cursor = await service.list_(session, subject, filters, sort=sort, cursor=cursor, limit=limit)
    return TicketPage(items=[_summary(row) for row in rows], next_cursor=next_cursor)


CSV_COLUMNS = (
    "tracking_code", "status", "service_code", "department_code", "jurisdiction_code", "priority", "sla_state",
    "created_at", "acknowledged_at", "due_at", "resolved_at", "closed_at", "transfer_count", "supporter_count",
    "citizen_rating",
)


@router.get(
    "/export.csv",
    summary="Export the filtered tickets as CSV (streamed; no personal data)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
)
async def export_csv(subject: Reader, request: Request, filters: Filters, sort: Sort = "-created_at") -> StreamingResponse:
    sessions = request.app.state.sessions

    async def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        # Its own session: the response streams after the request's session is gone.
        async with sessions() as session:
            async for report in service.iterate_all(session, subject, filters, sort=sort):
                writer.writerow([_csv_value(getattr(report, column)) for column in CSV_COLUMNS])
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    # The first query runs before the answer starts: a filter the database refuses, or an outage, is
    # answered as an error, not as a 200 cut off mid-stream.
    chunks = rows()
    first = await anext(chunks)

    async def body():
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(
        body(), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": 'attachment; filename="tickets.csv"'}
    )


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    # Spreadsheets run cells that start with these as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


async def _detail(session, subject: AuthSubject, report: Report, request: Request) -> TicketDetail:
    base = request.app.state.settings.public_base_url
    events = await service.timeline(session, report)
    photos = (
        await session.exec(select(Photo).where(Photo.report_id == report.id).order_by(col(Photo.position)))
    ).all()
    return TicketDetail(
        **_summary(report).model_dump(),
        **{field: getattr(report, field) for field in (
            "lat", "lon", "address", "channel", "is_public", "classification_confidence", "category_source",
            "acknowledge_due_at", "acknowledged_at", "resolved_at", "closed_at", "on_hold_since",
            "escalated_to_department_code", "assignee_id", "duplicate_of_id", "rejection_reason", "citizen_rating",
            "citizen_feedback",
        )},
        reporter=Contact(name=report.reporter_name, phone=report.reporter_phone, email=report.reporter_email)
        if subject.role in CONTACT_ROLES
        else None,
        allowed_transitions=workflow.allowed_from(report.status, role=subject.role),
        photos=[
            {"id": str(p.id), "kind": p.kind, "url": f"{base}/v1/photos/{p.id}", "ready": p.public_key is not None,
             "rejected": p.rejected_reason}
            for p in photos
        ],
        timeline=[_event(event) for event in events],
    )


@router.get("/{ticket}", response_model=TicketDetail, summary="A ticket with its full timeline", responses=ERRORS)
async def get_ticket(ticket: str, subject: Reader, session: SessionDep, request: Request) -> TicketDetail:
    report = await service.get_visible(session, subject, ticket)
    return await _detail(session, subject, report, request)


@router.post("/{ticket}/transitions", response_model=TicketDetail, summary="Change the status", responses=ERRORS)
async def change_status(ticket: str, body: TransitionIn, subject: Worker, session: SessionDep, request: Request) -> TicketDetail:
    report = await service.get_visible(session, subject, ticket, for_update=True)
    request_ = workflow.TransitionRequest(to=body.to, reason=body.reason, public_reply=body.public_reply, question=body.question)
    await service.transition(session, subject, report, request_, request.app.state.settings, duplicate_of=body.duplicate_of)
    return await _detail(session, subject, report, request)


@router.post("/{ticket}/triage", response_model=TicketDetail, summary="Set the field (and department) of an unsure ticket", responses=ERRORS)
async def triage(ticket: str, body: TriageIn, subject: Dispatcher, session: SessionDep, request: Request) -> TicketDetail:
    report = await service.get_visible(session, subject, ticket, for_update=True)
    await service.triage(
        session, subject, report, service_code=body.service_code, department_code=body.department_code,
        priority=body.priority, note=body.note, settings=request.app.state.settings,
    )
    return await _detail(session, subject, report, request)


@router.post("/{ticket}/transfer", response_model=TicketDetail, summary="Transfer to another department (chuyển đơn vị)", responses=ERRORS)
async def transfer(ticket: str, body: TransferIn, subject: Worker, session: SessionDep, request: Request) -> TicketDetail:
    report = await service.get_visible(session, subject, ticket, for_update=True)
    await service.transfer(
        session, subject, report, department_code=body.department_code, reason=body.reason, settings=request.app.state.settings
    )
    return await _detail(session, subject, report, request)


@router.post("/{ticket}/comments", response_model=TimelineEvent, status_code=201, summary="A public reply or an internal note", responses=ERRORS)
async def add_comment(ticket: str, body: CommentIn, subject: Worker, session: SessionDep) -> TimelineEvent:
    report = await service.get_visible(session, subject, ticket, for_update=True)
    event = await service.comment(session, subject, report, body=body.body, visibility=body.visibility)
    return _event(event)


@router.post("/{ticket}/assignee", response_model=TicketDetail, summary="Give the ticket to an officer of its department", responses=ERRORS)
async def set_assignee(ticket: str, body: AssignIn, subject: Dispatcher, session: SessionDep, request: Request) -> TicketDetail:
    report = await service.get_visible(session, subject, ticket, for_update=True)
    await service.assign(session, subject, report, username=body.assignee_username)
    return await _detail(session, subject, report, request)


@router.post(
    "/{ticket}/photos",
    response_model=TicketDetail,
    status_code=201,
    summary="Attach after-photos (and an optional public message)",
    openapi_extra=MESSAGE_WITH_PHOTOS_BODY,
    responses={**ERRORS, **problem_responses(413, 415)},
)
async def add_photos(ticket: str, subject: Worker, session: SessionDep, request: Request) -> TicketDetail:
    state = request.app.state
    report = await service.get_visible(session, subject, ticket, for_update=True)
    staged: list[StagedPhoto] = []
    try:
        message = await read_message_with_photos(request, state.storage, state.settings, staged)
        attach_photos(session, report, staged, kind="after")
        record_event(session, report, "after_photos", actor=subject.actor, message=message, data={"photos": len(staged)})
        await session.commit()
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    if staged:
        await enqueue_process_photos(state.arq, state.settings.queue_name, report.id)
    return await _detail(session, subject, report, request)
