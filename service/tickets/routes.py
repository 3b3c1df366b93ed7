"""The staff ticket API: the work-list, read with the full timeline, take, move through the workflow,
transfer, comment, and the same actions on many tickets at once."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlmodel import col, select

from service import city_time
from service.auth.subject import AuthSubject, require_roles
from service.catalogue.attributes import describe_answers
from service.city_time import CityTime, CityZone
from service.db import SessionDep
from service.errors import Forbidden, Unprocessable, problem_of_error, problem_responses, timeline_in_vietnamese
from service.jobs import photos_job
from service.lifecycle import changes as lifecycle
from service.lifecycle import states
from service.lifecycle.events import EventCode, render
from service.models import Photo, Report, ServiceCategory, StaffUser
from service.models.types import utcnow
from service.reports.citizen import attach_photos
from service.reports.intake import read_message_with_photos
from service.reports.routes import MESSAGE_WITH_PHOTOS_BODY
from service.reports.service import StagedPhoto
from service.reports.submission import discard_staged
from service.tickets import bulk, export, service, worklist
from service.tickets.etag import IF_MATCH_DESCRIPTION, check_if_match, etag_of
from service.tickets.schemas import (
    AssigneeRef,
    AssignIn,
    AttributeAnswer,
    BulkIn,
    BulkItem,
    BulkResult,
    CommentIn,
    Contact,
    OfficerOut,
    TicketDetail,
    TicketPage,
    TicketSummary,
    TimelineEvent,
    TransferIn,
    TransitionIn,
    TriageIn,
)
from service.tickets.visibility import (
    ASSIGNER_ROLES,
    CITIZEN_SIDE_ROLES,
    CLAIMER_ROLES,
    CONTACT_ROLES,
    TICKET_ROLES,
    WORKER_ROLES,
)

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])

Reader = Annotated[AuthSubject, Depends(require_roles(*TICKET_ROLES))]
Worker = Annotated[AuthSubject, Depends(require_roles(*WORKER_ROLES))]
Dispatcher = Annotated[AuthSubject, Depends(require_roles(*ASSIGNER_ROLES))]
Claimer = Annotated[AuthSubject, Depends(require_roles(*CLAIMER_ROLES))]
Sort = Annotated[str, Query(pattern=worklist.SORT_PATTERN, description=worklist.SORT_HELP)]
ERRORS = problem_responses(401, 403, 404, 409, 422)
WRITE_ERRORS = {**ERRORS, **problem_responses(412)}
ETAG_HEADER = {"ETag": {"description": "The ticket's version; send it back in If-Match", "schema": {"type": "string"}}}
IfMatch = Annotated[str | None, Header(alias="If-Match", description=IF_MATCH_DESCRIPTION)]


async def _filters(  # async: a plain `def` dependency would cost a worker-thread hop per request
    status: Annotated[list[str] | None, Query(description=worklist.STATUS_HELP)] = None,
    category: str | None = None,
    department: str | None = None,
    priority: Literal["urgent", "normal", "low"] | None = None,
    sla_state: Literal["on_track", "at_risk", "overdue"] | None = None,
    jurisdiction: str | None = None,
    created_from: Annotated[
        CityTime | None, Query(description=f"Created at or after this. {city_time.LOWER_BOUND_HELP}")
    ] = None,
    created_to: Annotated[
        CityTime | None, Query(description=f"Created before this. {city_time.UPPER_BOUND_HELP}")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A phrase in the title, description or address, with or without diacritics "
            "(`nguyen hue` finds Nguyễn Huệ), or part of the tracking code",
        ),
    ] = None,
    assignee: Annotated[
        str | None,
        Query(max_length=100, description="`me`, `none` (nobody holds it), or a staff member's id or username"),
    ] = None,
    *,
    zone: CityZone,
) -> service.TicketFilters:
    try:
        statuses = worklist.statuses(status)
    except worklist.UnknownStatus as exc:
        raise Unprocessable("unknown_status", "status", f"unknown status {exc}") from exc
    start, end = city_time.start_of(created_from, zone), city_time.end_of(created_to, zone)
    if start is not None and end is not None and start >= end:  # as the IOC says: an empty window is a mistake
        raise Unprocessable("invalid_window", "created_from", "`created_from` must be before `created_to`.")
    return service.TicketFilters(
        statuses,
        category,
        department,
        priority,
        sla_state,
        jurisdiction,
        start,
        end,
        q,
        assignee,
    )


Filters = Annotated[service.TicketFilters, Depends(_filters)]


def _event(event, vietnamese: bool) -> TimelineEvent:
    return TimelineEvent(
        id=event.id,
        code=event.type,
        at=event.created_at,
        actor=event.actor,
        public=event.public,
        message=render(event.type, event.data or {}, event.message, vietnamese=vietnamese),
        data=event.data,
    )


def _summary(report: Report, assignee: StaffUser | None) -> TicketSummary:
    return TicketSummary.model_validate(
        {
            **report.model_dump(),
            "etag": etag_of(report),
            "assignee": AssigneeRef(
                id=assignee.id, username=assignee.username, name=assignee.full_name or assignee.username
            )
            if assignee is not None
            else None,
            "time_left_seconds": worklist.time_left_seconds(
                status=report.status, due_at=report.due_at, on_hold_since=report.on_hold_since, now=utcnow()
            ),
        }
    )


async def _for_write(session, subject: AuthSubject, ticket: str, if_match: str | None) -> Report:
    """The ticket locked for this write, once If-Match (when sent) still matches it."""
    report = await service.get_visible(session, subject, ticket, for_update=True)
    check_if_match(report, if_match)
    return report


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
    # Keys shipped in a public app see no staff names (as on a ticket's own page).
    holders = {row.assignee_id for row in rows if row.assignee_id} if subject.role not in CITIZEN_SIDE_ROLES else set()
    staff = await service.staff_by_id(session, holders)
    return TicketPage(
        items=[_summary(row, staff.get(row.assignee_id) if row.assignee_id else None) for row in rows],
        next_cursor=next_cursor,
    )


@router.get(
    "/export.csv",
    summary="Export the filtered tickets as CSV for Excel (UTF-8 with BOM, city time, Vietnamese names; streamed)",
    description=(
        "The tickets the list would show with the same filters, every page, as one file named by the day "
        "(`phan-anh-YYYY-MM-DD.csv`). Times are the city's wall clock (SLA_TIMEZONE); no reporter contact. "
        "`delimiter=;` suits Excel set to Vietnamese regional formats (where `,` is the decimal mark)."
    ),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
)
async def export_csv(
    subject: Reader,
    request: Request,
    filters: Filters,
    zone: CityZone,
    sort: Sort = "-created_at",
    delimiter: Annotated[Literal[",", ";"], Query(description="The column separator")] = ",",
) -> StreamingResponse:
    sessions = request.app.state.sessions

    async def pieces():
        # Its own session: the response streams after the request's session is gone.
        async with sessions() as session:
            async for piece in export.chunks(session, subject, filters, sort=sort, zone=zone, delimiter=delimiter):
                yield piece.encode()

    # The first query runs before the answer starts: a filter the database refuses, or an outage, is
    # answered as an error, not as a 200 cut off mid-stream.
    chunks = pieces()
    first = await anext(chunks)

    async def body():
        yield first
        async for chunk in chunks:
            yield chunk

    name = export.file_name(utcnow(), zone)
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _detail(session, subject: AuthSubject, report: Report, request: Request, response: Response) -> TicketDetail:
    response.headers["ETag"] = etag_of(report)
    vietnamese = timeline_in_vietnamese(request)
    base = request.app.state.settings.public_base_url
    events = await service.timeline(session, report)
    answers = await _answers(session, report, vietnamese)
    if subject.role in CITIZEN_SIDE_ROLES:
        photos = await _photos(session, report)
        return _citizen_side(report, events, photos=photos, answers=answers, base=base, vietnamese=vietnamese)
    photos = (await session.exec(select(Photo).where(Photo.report_id == report.id).order_by(col(Photo.position)))).all()
    assignee = await session.get(StaffUser, report.assignee_id) if report.assignee_id else None
    return TicketDetail(
        **_summary(report, assignee).model_dump(),
        **{
            field: getattr(report, field)
            for field in (
                "lat",
                "lon",
                "channel",
                "is_public",
                "classification_confidence",
                "category_source",
                "acknowledge_due_at",
                "acknowledged_at",
                "resolved_at",
                "closed_at",
                "on_hold_since",
                "escalated_to_department_code",
                "assignee_id",
                "duplicate_of_id",
                "rejection_reason",
                "citizen_rating",
                "citizen_feedback",
            )
        },
        reporter=Contact(name=report.reporter_name, phone=report.reporter_phone, email=report.reporter_email)
        if subject.role in CONTACT_ROLES
        else None,
        allowed_transitions=[str(to) for to in states.allowed(report.status, states.ways_for(subject.role))]
        if subject.role in WORKER_ROLES
        else [],
        attributes=answers,
        photos=[
            {
                "id": str(p.id),
                "kind": p.kind,
                "url": f"{base}/v1/photos/{p.id}",
                "ready": p.public_key is not None,
                "rejected": p.rejected_reason,
            }
            for p in photos
        ],
        timeline=[_event(event, vietnamese) for event in events],
    )


async def _answers(session, report: Report, vietnamese: bool) -> list[AttributeAnswer]:
    """The answers, with the questions of the category they were checked against (the citizen's)."""
    if not report.attributes:
        return []
    asked = report.requested_service_code or report.service_code
    category = await session.get(ServiceCategory, asked) if asked else None
    return [
        AttributeAnswer(**answer) for answer in describe_answers(category, report.attributes, vietnamese=vietnamese)
    ]


async def _photos(session, report: Report) -> list[Photo]:
    return list(
        (await session.exec(select(Photo).where(Photo.report_id == report.id).order_by(col(Photo.position)))).all()
    )


def _citizen_side(
    report: Report, events, *, photos: list[Photo], answers: list[AttributeAnswer], base: str, vietnamese: bool
) -> TicketDetail:
    """What an app key (shipped inside a public mobile app) may read: what the citizen sees on the
    tracking page, no internal notes, no staff names, no routing or classification data."""
    public_photos = [p for p in photos if p.rejected_reason is None]
    return TicketDetail(
        **_summary(report, None).model_dump(),
        **{
            field: getattr(report, field)
            for field in (
                "lat",
                "lon",
                "channel",
                "is_public",
                "acknowledge_due_at",
                "acknowledged_at",
                "resolved_at",
                "closed_at",
                "on_hold_since",
                "duplicate_of_id",
                "rejection_reason",
                "citizen_rating",
                "citizen_feedback",
            )
        },
        classification_confidence=None,
        category_source=None,
        escalated_to_department_code=None,
        assignee_id=None,
        reporter=None,
        allowed_transitions=[],
        attributes=answers,
        photos=[
            {
                "id": str(p.id),
                "kind": p.kind,
                "url": f"{base}/v1/photos/{p.id}",
                "ready": p.public_key is not None,
                "rejected": None,
            }
            for p in public_photos
        ],
        timeline=[
            TimelineEvent(
                id=event.id,
                code=event.type,
                at=event.created_at,
                actor="citizen" if event.actor == "citizen" else "city",
                public=True,
                message=render(event.type, event.data or {}, event.message, vietnamese=vietnamese),
                data={"status": event.data["status"]} if isinstance((event.data or {}).get("status"), dict) else {},
            )
            for event in events
            if event.public
        ],
    )


@router.get(
    "/{ticket}",
    response_model=TicketDetail,
    summary="A ticket with its full timeline",
    responses={200: {"headers": ETAG_HEADER}, **ERRORS},
)
async def get_ticket(
    ticket: str, subject: Reader, session: SessionDep, request: Request, response: Response
) -> TicketDetail:
    report = await service.get_visible(session, subject, ticket)
    return await _detail(session, subject, report, request, response)


WRITTEN = {200: {"headers": ETAG_HEADER}, **WRITE_ERRORS}


@router.post("/{ticket}/transitions", response_model=TicketDetail, summary="Change the status", responses=WRITTEN)
async def change_status(
    ticket: str,
    body: TransitionIn,
    subject: Worker,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    report = await _for_write(session, subject, ticket, if_match)
    move = states.StaffMove(
        to=states.Status(body.to), reason=body.reason, public_reply=body.public_reply, question=body.question
    )
    await service.transition(session, subject, report, move, request.app.state.settings, duplicate_of=body.duplicate_of)
    return await _detail(session, subject, report, request, response)


@router.post(
    "/{ticket}/triage",
    response_model=TicketDetail,
    summary="Set the field (and department) of an unsure ticket",
    responses=WRITTEN,
)
async def triage(
    ticket: str,
    body: TriageIn,
    subject: Dispatcher,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    report = await _for_write(session, subject, ticket, if_match)
    await service.triage(
        session,
        subject,
        report,
        service_code=body.service_code,
        department_code=body.department_code,
        priority=body.priority,
        note=body.note,
        settings=request.app.state.settings,
    )
    return await _detail(session, subject, report, request, response)


@router.post(
    "/{ticket}/transfer",
    response_model=TicketDetail,
    summary="Transfer to another department (chuyển đơn vị)",
    responses=WRITTEN,
)
async def transfer(
    ticket: str,
    body: TransferIn,
    subject: Worker,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    report = await _for_write(session, subject, ticket, if_match)
    await service.transfer(
        session,
        subject,
        report,
        department_code=body.department_code,
        reason=body.reason,
        settings=request.app.state.settings,
    )
    return await _detail(session, subject, report, request, response)


@router.post(
    "/{ticket}/comments",
    response_model=TimelineEvent,
    status_code=201,
    summary="A public reply or an internal note",
    responses={201: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
)
async def add_comment(
    ticket: str,
    body: CommentIn,
    subject: Worker,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TimelineEvent:
    report = await _for_write(session, subject, ticket, if_match)
    event = await service.comment(session, subject, report, body=body.body, visibility=body.visibility)
    response.headers["ETag"] = etag_of(report)
    return _event(event, timeline_in_vietnamese(request))


@router.post(
    "/{ticket}/assignee",
    response_model=TicketDetail,
    summary="Give the ticket to an officer of its department",
    responses=WRITTEN,
)
async def set_assignee(
    ticket: str,
    body: AssignIn,
    subject: Dispatcher,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    report = await _for_write(session, subject, ticket, if_match)
    await service.assign(session, subject, report, username=body.assignee_username)
    return await _detail(session, subject, report, request, response)


@router.post(
    "/{ticket}/photos",
    response_model=TicketDetail,
    status_code=201,
    summary="Attach after-photos (and an optional public message)",
    openapi_extra=MESSAGE_WITH_PHOTOS_BODY,
    responses={201: {"headers": ETAG_HEADER}, **WRITE_ERRORS, **problem_responses(413, 415)},
)
async def add_photos(
    ticket: str,
    subject: Worker,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    state = request.app.state
    report = await _for_write(session, subject, ticket, if_match)
    staged: list[StagedPhoto] = []
    try:
        message = await read_message_with_photos(request, state.storage, state.settings, staged)
        attach_photos(session, report, staged, kind="after")
        await lifecycle.note(
            session,
            report,
            EventCode.AFTER_PHOTOS,
            actor=subject.actor,
            message=message,
            data={"photos": len(staged)},
            public=True,
        )
        if staged:
            photos_job(session, report.id)
        await state.handoff.commit(session)  # here, so that a failed commit still discards the staged files
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    return await _detail(session, subject, report, request, response)


@router.post(
    "/{ticket}/claim",
    response_model=TicketDetail,
    summary="Take a ticket of your department: yours, and in progress where the workflow allows",
    responses=WRITTEN,
)
async def claim(
    ticket: str,
    subject: Claimer,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    report = await _for_write(session, subject, ticket, if_match)
    await service.claim(session, subject, report, request.app.state.settings)
    return await _detail(session, subject, report, request, response)


@router.post(
    "/{ticket}/unclaim",
    response_model=TicketDetail,
    summary="Give back a ticket you hold (its status stays; a dispatcher reassigns it)",
    responses=WRITTEN,
)
async def unclaim(
    ticket: str,
    subject: Claimer,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> TicketDetail:
    report = await _for_write(session, subject, ticket, if_match)
    await service.unclaim(session, subject, report)
    return await _detail(session, subject, report, request, response)


@router.post(
    "/bulk",
    response_model=BulkResult,
    summary="One action on up to 100 tickets, each in its own transaction, with a result per ticket",
    responses=ERRORS,
)
async def bulk_action(body: BulkIn, subject: Worker, request: Request) -> BulkResult:
    if body.action.type == "assign" and subject.role not in ASSIGNER_ROLES:
        raise Forbidden(detail=f"Assigning needs one of the roles: {', '.join(ASSIGNER_ROLES)}.")
    state = request.app.state
    outcomes = await bulk.run(state.sessions, state.handoff, state.settings, subject, body.tickets, body.action)
    items = [
        BulkItem(
            ticket=outcome.ticket,
            status=outcome.status,
            etag=outcome.etag,
            problem=problem_of_error(request, outcome.error) if outcome.error else None,
        )
        for outcome in outcomes
    ]
    failed = sum(1 for item in items if item.problem is not None)
    return BulkResult(succeeded=len(items) - failed, failed=failed, results=items)


departments_router = APIRouter(prefix="/v1/departments", tags=["tickets"])


@departments_router.get(
    "/{code}/officers",
    response_model=list[OfficerOut],
    summary="The officers and supervisors a ticket of this department can be given to",
    responses=ERRORS,
)
async def department_officers(code: str, subject: Reader, session: SessionDep) -> list[OfficerOut]:
    return [
        OfficerOut(
            id=officer.user.id,
            username=officer.user.username,
            name=officer.user.full_name or officer.user.username,
            role=officer.user.role,
            open_tickets=officer.open_tickets,
        )
        for officer in await service.officers(session, subject, code)
    ]
