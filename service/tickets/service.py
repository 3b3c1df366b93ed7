"""Working tickets: find, list, move through the workflow, transfer, comment. Functions only flush."""

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import SQLColumnExpression, func, literal, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import AuthSubject
from service.errors import AppError, Conflict, NotFound, Unprocessable
from service.jurisdictions import service as jurisdictions
from service.lifecycle import changes as lifecycle
from service.lifecycle import states
from service.lifecycle.changes import UNSET
from service.lifecycle.events import EventCode
from service.lifecycle.states import IllegalMove, Status, Via
from service.models import Department, Report, ReportEvent, ServiceCategory, StaffUser
from service.models.types import UTCDateTime, utcnow
from service.pipeline import routing
from service.reports.codes import normalise_tracking_code
from service.settings import Settings
from service.sla import service as sla
from service.tickets.visibility import readable_condition

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


class IllegalTransitionError(AppError):
    status, code = 409, "illegal_transition"


async def get_visible(session: AsyncSession, subject: AuthSubject, ref: str, *, for_update: bool = False) -> Report:
    """A ticket by id or tracking code, or 404 — also when it exists but belongs to someone else."""
    condition = await readable_condition(session, subject)
    try:
        match = Report.id == UUID(ref)
    except ValueError:
        code = normalise_tracking_code(ref)
        if code is None:
            raise NotFound("ticket_not_found") from None
        match = Report.tracking_code == code
    statement = select(Report).where(match, condition)
    if for_update:
        statement = statement.with_for_update()
    report = (await session.exec(statement)).first()
    if report is None:
        raise NotFound("ticket_not_found")
    return report


# --- listing -----------------------------------------------------------------------------------

SORTS: dict[str, tuple[SQLColumnExpression[datetime], bool]] = {
    "created_at": (col(Report.created_at), False),
    "-created_at": (col(Report.created_at), True),
    "updated_at": (col(Report.updated_at), False),
    "-updated_at": (col(Report.updated_at), True),
    "due_at": (func.coalesce(Report.due_at, literal(FAR_FUTURE, UTCDateTime())), False),
    "-due_at": (func.coalesce(Report.due_at, literal(FAR_FUTURE, UTCDateTime())), True),
}


@dataclass(frozen=True)
class TicketFilters:
    status: list[str] | None = None
    category: str | None = None
    department: str | None = None
    priority: str | None = None
    sla_state: str | None = None
    jurisdiction: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None


def _filtered(statement, filters: TicketFilters):
    if filters.status:
        statement = statement.where(col(Report.status).in_(filters.status))
    for value, column in (
        (filters.category, Report.service_code),
        (filters.department, Report.department_code),
        (filters.priority, Report.priority),
        (filters.sla_state, Report.sla_state),
    ):
        if value:
            statement = statement.where(column == value)
    if filters.jurisdiction:
        # A ward, or a parent (the city, a district) standing for every ward under it; a code no longer
        # on the map still finds the reports that recorded it.
        statement = statement.where(
            or_(
                col(Report.jurisdiction_code) == filters.jurisdiction,
                col(Report.jurisdiction_code).in_(jurisdictions.covered_by(filters.jurisdiction)),
            )
        )
    if filters.created_from:
        statement = statement.where(col(Report.created_at) >= filters.created_from)
    if filters.created_to:
        statement = statement.where(col(Report.created_at) < filters.created_to)
    if filters.q:
        needle = f"%{filters.q.lower()}%"
        statement = statement.where(
            or_(
                func.lower(Report.description).like(needle),
                func.lower(func.coalesce(Report.title, "")).like(needle),
                func.lower(Report.tracking_code).like(needle),
                func.lower(func.coalesce(Report.address, "")).like(needle),
            )
        )
    return statement


def encode_cursor(value: datetime, report_id: UUID) -> str:
    raw = json.dumps([value.isoformat(), str(report_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, report_id = json.loads(raw)
        return datetime.fromisoformat(value), UUID(report_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Unprocessable("invalid_cursor", "cursor") from exc


def _sort_value(report: Report, sort: str) -> datetime:
    field = sort.lstrip("-")
    return getattr(report, field) or FAR_FUTURE


async def list_(
    session: AsyncSession, subject: AuthSubject, filters: TicketFilters, *, sort: str, cursor: str | None, limit: int
) -> tuple[list[Report], str | None]:
    """Keyset pagination on (sort column, id): stable under inserts, fast at any depth."""
    column, descending = SORTS[sort]
    statement = _filtered(select(Report).where(await readable_condition(session, subject)), filters)
    if cursor:
        value, last_id = decode_cursor(cursor)
        key, bound = tuple_(column, Report.id), tuple_(literal(value, UTCDateTime()), literal(last_id))
        statement = statement.where(key < bound if descending else key > bound)
    order = (column.desc(), col(Report.id).desc()) if descending else (column.asc(), col(Report.id).asc())
    rows = list((await session.exec(statement.order_by(*order).limit(limit + 1))).all())
    next_cursor = encode_cursor(_sort_value(rows[limit - 1], sort), rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def iterate_all(
    session: AsyncSession, subject: AuthSubject, filters: TicketFilters, *, sort: str, batch: int = 500
) -> AsyncIterator[Report]:
    cursor = None
    while True:
        rows, cursor = await list_(session, subject, filters, sort=sort, cursor=cursor, limit=batch)
        for row in rows:
            yield row
        if cursor is None:
            return


async def timeline(session: AsyncSession, report: Report) -> list[ReportEvent]:
    rows = await session.exec(
        select(ReportEvent).where(ReportEvent.report_id == report.id).order_by(col(ReportEvent.id))
    )
    return list(rows.all())


# --- workflow: every change goes through the lifecycle's door ---------------------------------------


def _illegal(exc: IllegalMove, role: str) -> IllegalTransitionError:
    allowed = ", ".join(states.allowed(exc.current, states.ways_for(role))) or "none"
    return IllegalTransitionError(detail=f"{exc.current} → {exc.requested} is not allowed; allowed: {allowed}")


async def transition(
    session: AsyncSession,
    subject: AuthSubject,
    report: Report,
    move: states.StaffMove,
    settings: Settings,
    *,
    duplicate_of: str | None = None,
) -> Report:
    current = report.status
    ways = states.ways_for(subject.role)
    try:
        states.check(current, move.to, ways)
        states.check_requirements(move)
    except IllegalMove as exc:
        raise _illegal(exc, subject.role) from exc
    except states.MissingRequirement as exc:
        raise Unprocessable(exc.code, exc.field) from exc

    now = utcnow()
    calendar = sla.calendar_from(settings)
    policy, _ = await sla.policy_for(session, report.service_code, report.priority)
    to = move.to
    department = UNSET
    original = await _visible_original(session, subject, report, duplicate_of) if to == Status.DUPLICATE else None
    if current == Status.ON_HOLD:
        sla.resume_clock(report, policy, calendar, now)
    if to == Status.IN_PROGRESS and report.acknowledged_at is None:
        report.acknowledged_at = now
    elif to == Status.ON_HOLD:
        report.on_hold_since = now
    elif to == Status.RESOLVED:
        report.resolved_at = now
        report.acknowledged_at = report.acknowledged_at or now
    elif to == Status.CLOSED:
        report.closed_at = now
    elif to == Status.REJECTED:
        report.rejection_reason = move.reason
    elif to == Status.REOPENED:
        report.reopened_count += 1
        report.resolved_at = report.closed_at = None
        sla.start_clock(report, policy, calendar, now, settings.sla_at_risk_ratio)
    elif to == Status.ASSIGNED and report.department_code is None:
        decision = await routing.route(
            session, report.service_code, [report.jurisdiction_code] if report.jurisdiction_code else []
        )
        department = decision.department_code if decision else None

    if original is not None:
        report.duplicate_of_id = original.id
        await lifecycle.add_supporter(session, original, report, actor=subject.actor, data={})
    # What the citizen is told (a question, the resolution) comes first on the timeline, then the move.
    told = {Status.ON_HOLD: ("question", move.question), Status.RESOLVED: ("resolution", move.public_reply)}.get(to)
    if told is not None:
        kind, words = told
        await lifecycle.note(
            session,
            report,
            EventCode.PUBLIC_REPLY,
            actor=subject.actor,
            message=words,
            data={"kind": kind},
            public=True,
            touch=False,
        )
    await lifecycle.change(
        session,
        report,
        via=ways,
        actor=subject.actor,
        status=to,
        department_code=department,
        message=move.reason if to == Status.REJECTED else None,
        data={"original": original.tracking_code} if original is not None else None,
    )
    await session.flush()
    return report


async def _visible_original(
    session: AsyncSession, subject: AuthSubject, report: Report, duplicate_of: str | None
) -> Report:
    """The original a ticket repeats: only a report this staff member may see (an unknown code and an
    invisible one answer alike, so codes cannot be probed this way)."""
    code = normalise_tracking_code(duplicate_of or "")
    original = None
    if code:
        condition = await readable_condition(session, subject)
        original = (await session.exec(select(Report).where(Report.tracking_code == code, condition))).first()
    if original is None or original.id == report.id:
        raise Unprocessable("report_not_found", "duplicate_of")
    return original


async def triage(
    session: AsyncSession,
    subject: AuthSubject,
    report: Report,
    *,
    service_code: str,
    department_code: str | None,
    priority: str | None,
    note: str | None,
    settings: Settings,
) -> Report:
    """A dispatcher decides what the machine could not: the field, and so the department and deadline."""
    if report.status not in (Status.NEEDS_TRIAGE, Status.RECEIVED, Status.ASSIGNED):
        raise IllegalTransitionError(
            detail=f"only untriaged or freshly assigned tickets can be triaged, not {report.status}"
        )
    if await session.get(ServiceCategory, service_code) is None:
        raise Unprocessable("unknown_service_code", "service_code")
    if department_code and await session.get(Department, department_code) is None:
        raise Unprocessable("unknown_department", "department_code")
    new_priority = priority or report.priority
    if department_code is None:
        chain = [report.jurisdiction_code] if report.jurisdiction_code else []
        decision = await routing.route(session, service_code, chain)
        department_code = decision.department_code if decision else None
    report.service_code, report.category_source = service_code, "staff"
    policy, info = await sla.policy_for(session, service_code, new_priority)
    sla.start_clock(report, policy, sla.calendar_from(settings), report.created_at, settings.sla_at_risk_ratio)
    await lifecycle.note(
        session,
        report,
        EventCode.CLASSIFIED,
        actor=subject.actor,
        touch=False,
        data={"service_code": service_code, "source": "staff", "note": note},
    )
    await lifecycle.change(
        session,
        report,
        via=Via.TRIAGE,
        code=EventCode.TRIAGED,
        actor=subject.actor,
        status=Status.ASSIGNED,
        department_code=department_code,
        priority=new_priority,
        data=info,
    )
    await session.flush()
    return report


async def transfer(
    session: AsyncSession,
    subject: AuthSubject,
    report: Report,
    *,
    department_code: str,
    reason: str,
    settings: Settings,
) -> Report:
    """Chuyển đơn vị: the ticket starts again as `assigned` at another department; the SLA policy says
    whether the clock restarts."""
    department = await session.get(Department, department_code)
    if department is None or not department.active:
        raise Unprocessable("unknown_department", "department_code")
    if department_code == report.department_code:
        raise Conflict("same_department")
    try:
        states.check(report.status, Status.ASSIGNED, frozenset({Via.TRANSFER}))
    except IllegalMove as exc:
        raise IllegalTransitionError(detail=f"a {report.status} ticket cannot be transferred") from exc
    now = utcnow()
    policy, info = await sla.policy_for(session, report.service_code, report.priority)
    if report.status == Status.ON_HOLD:
        sla.resume_clock(report, policy, sla.calendar_from(settings), now)
    restarted = bool(info.get("restart_on_transfer"))
    if restarted:
        sla.start_clock(report, policy, sla.calendar_from(settings), now, settings.sla_at_risk_ratio)
    report.transfer_count += 1
    await lifecycle.change(
        session,
        report,
        via=Via.TRANSFER,
        code=EventCode.TRANSFERRED,
        actor=subject.actor,
        status=Status.ASSIGNED,
        department_code=department_code,
        assignee_id=None,
        data={
            "reason": reason,
            "clock_restarted": restarted,
            "transfer_count": report.transfer_count,
            "department_name": {"vi": department.name_vi, "en": department.name_en},
        },
    )
    await session.flush()
    return report


async def comment(
    session: AsyncSession, subject: AuthSubject, report: Report, *, body: str, visibility: str
) -> ReportEvent:
    code = EventCode.PUBLIC_REPLY if visibility == "public" else EventCode.INTERNAL_NOTE
    event = await lifecycle.note(
        session, report, code, actor=subject.actor, public=visibility == "public", message=body
    )
    await session.flush()
    return event


async def assign(session: AsyncSession, subject: AuthSubject, report: Report, *, username: str | None) -> Report:
    user = None
    if username:
        user = (await session.exec(select(StaffUser).where(StaffUser.username == username))).first()
        if user is None or user.department_code != report.department_code:
            raise Unprocessable(
                "validation_error", "assignee_username", "No officer of this ticket's department has that username."
            )
    await lifecycle.change(
        session,
        report,
        via=Via.STAFF,
        code=EventCode.ASSIGNEE_CHANGED,
        actor=subject.actor,
        public=False,
        assignee_id=user.id if user else None,
        data={"assignee": username},
    )
    await session.flush()
    return report
