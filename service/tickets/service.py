"""Working tickets: find, list, move through the workflow, transfer, comment. Functions only flush."""

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import func, literal, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import AuthSubject
from service.errors import AppError, Conflict, NotFound, Unprocessable
from service.jurisdictions import service as jurisdictions
from service.models import Department, Report, ReportEvent, ServiceCategory, StaffUser
from service.models.types import UTCDateTime, utcnow
from service.pipeline import duplicates, routing
from service.reports.codes import normalise_tracking_code
from service.reports.service import record_event
from service.settings import Settings
from service.sla import service as sla
from service.tickets import workflow
from service.tickets.visibility import readable_condition

STATUS_MESSAGES = {
    "assigned": "Đã chuyển đơn vị xử lý / Assigned to a department",
    "in_progress": "Đang xử lý / In progress",
    "on_hold": "Chờ người dân bổ sung thông tin / Waiting for your answer",
    "resolved": "Đã giải quyết / Resolved",
    "closed": "Đã đóng / Closed",
    "rejected": "Không thụ lý / Rejected",
    "reopened": "Đã mở lại / Reopened",
    "duplicate": "Trùng phản ánh khác / Duplicate of another report",
}
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

SORTS = {
    "created_at": (Report.created_at, False),
    "-created_at": (Report.created_at, True),
    "updated_at": (Report.updated_at, False),
    "-updated_at": (Report.updated_at, True),
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
    rows = await session.exec(select(ReportEvent).where(ReportEvent.report_id == report.id).order_by(col(ReportEvent.id)))
    return list(rows.all())


# --- workflow ----------------------------------------------------------------------------------


async def transition(
    session: AsyncSession, subject: AuthSubject, report: Report, request: workflow.TransitionRequest,
    settings: Settings, *, duplicate_of: str | None = None,
) -> Report:
    current = report.status
    try:
        workflow.check(current, request, role=subject.role)
    except workflow.IllegalTransition as exc:
        raise IllegalTransitionError(
            detail=f"{current} → {request.to} is not allowed; allowed: {', '.join(workflow.allowed_from(current, role=subject.role)) or 'none'}",
        ) from exc
    except workflow.MissingRequirement as exc:
        raise Unprocessable(exc.code, exc.field) from exc

    now = utcnow()
    calendar = sla.calendar_from(settings)
    policy, _ = await sla.policy_for(session, report.service_code, report.priority)
    if current == "on_hold":
        sla.resume_clock(report, policy, calendar, now)
    to = request.to
    if to == "in_progress" and report.acknowledged_at is None:
        report.acknowledged_at = now
    elif to == "on_hold":
        report.on_hold_since = now
        record_event(session, report, "public_reply", actor=subject.actor, message=request.question, data={"kind": "question"})
    elif to == "resolved":
        report.resolved_at = now
        report.acknowledged_at = report.acknowledged_at or now
        record_event(session, report, "public_reply", actor=subject.actor, message=request.public_reply, data={"kind": "resolution"})
    elif to == "closed":
        report.closed_at = now
    elif to == "rejected":
        report.rejection_reason = request.reason
    elif to == "reopened":
        report.reopened_count += 1
        report.resolved_at = report.closed_at = None
        sla.start_clock(report, policy, calendar, now, settings.sla_at_risk_ratio)
    elif to == "duplicate":
        await _link_duplicate(session, report, duplicate_of)
    elif to == "assigned" and report.department_code is None:
        decision = await routing.route(session, report.service_code, [report.jurisdiction_code] if report.jurisdiction_code else [])
        report.department_code = decision.department_code if decision else None

    report.status = to
    report.updated_at = now
    session.add(report)
    record_event(
        session, report, "status_changed", actor=subject.actor, message=request.reason if to == "rejected" else STATUS_MESSAGES.get(to),
        data={"from": current, "to": to},
    )
    if to in ("resolved", "closed", "reopened"):
        record_event(session, report, to, actor=subject.actor, public=False, data={"from": current})
    await session.flush()
    return report


async def _link_duplicate(session: AsyncSession, report: Report, duplicate_of: str | None) -> None:
    code = normalise_tracking_code(duplicate_of or "")
    original = (await session.exec(select(Report).where(Report.tracking_code == code))).first() if code else None
    if original is None or original.id == report.id:
        raise Unprocessable("report_not_found", "duplicate_of")
    report.duplicate_of_id = original.id
    await duplicates.add_supporter(session, original)


async def triage(
    session: AsyncSession, subject: AuthSubject, report: Report, *, service_code: str, department_code: str | None,
    priority: str | None, note: str | None, settings: Settings,
) -> Report:
    """A dispatcher decides what the machine could not: the field, and so the department and deadline."""
    if report.status not in ("needs_triage", "received", "assigned"):
        raise IllegalTransitionError(detail=f"only untriaged or freshly assigned tickets can be triaged, not {report.status}")
    if await session.get(ServiceCategory, service_code) is None:
        raise Unprocessable("unknown_service_code", "service_code")
    if department_code and await session.get(Department, department_code) is None:
        raise Unprocessable("unknown_department", "department_code")
    report.service_code, report.category_source = service_code, "staff"
    if priority:
        report.priority = priority
    if department_code is None:
        chain = [report.jurisdiction_code] if report.jurisdiction_code else []
        decision = await routing.route(session, service_code, chain)
        department_code = decision.department_code if decision else None
    report.department_code = department_code
    policy, info = await sla.policy_for(session, service_code, report.priority)
    sla.start_clock(report, policy, sla.calendar_from(settings), report.created_at, settings.sla_at_risk_ratio)
    previous = report.status
    report.status, report.updated_at = "assigned", utcnow()
    session.add(report)
    record_event(
        session, report, "classified", actor=subject.actor, public=False,
        data={"service_code": service_code, "source": "staff", "note": note},
    )
    record_event(
        session, report, "status_changed", actor=subject.actor, message=STATUS_MESSAGES["assigned"],
        data={"from": previous, "to": "assigned", "department": department_code, **info},
    )
    await session.flush()
    return report


async def transfer(
    session: AsyncSession, subject: AuthSubject, report: Report, *, department_code: str, reason: str, settings: Settings
) -> Report:
    """Chuyển đơn vị: another department takes the ticket; the SLA policy says whether the clock restarts."""
    if report.status not in workflow.OPEN:
        raise IllegalTransitionError(detail=f"a {report.status} ticket cannot be transferred")
    department = await session.get(Department, department_code)
    if department is None or not department.active:
        raise Unprocessable("unknown_department", "department_code")
    if department_code == report.department_code:
        raise Conflict("same_department")
    previous = report.department_code
    report.department_code = department_code
    report.transfer_count += 1
    report.assignee_id = None
    policy, info = await sla.policy_for(session, report.service_code, report.priority)
    restarted = bool(info.get("restart_on_transfer"))
    if restarted:
        sla.start_clock(report, policy, sla.calendar_from(settings), utcnow(), settings.sla_at_risk_ratio)
    if report.status == "in_progress":
        report.status = "assigned"
    report.updated_at = utcnow()
    session.add(report)
    record_event(
        session, report, "transferred", actor=subject.actor,
        message=f"Chuyển đến {department.name_vi} / Transferred to {department.name_en}",
        data={"from": previous, "to": department_code, "reason": reason, "clock_restarted": restarted,
              "transfer_count": report.transfer_count},
    )
    await session.flush()
    return report


async def comment(session: AsyncSession, subject: AuthSubject, report: Report, *, body: str, visibility: str) -> ReportEvent:
    kind = "public_reply" if visibility == "public" else "internal_note"
    event = record_event(session, report, kind, actor=subject.actor, public=visibility == "public", message=body)
    report.updated_at = utcnow()
    session.add(report)
    await session.flush()
    return event


async def assign(session: AsyncSession, subject: AuthSubject, report: Report, *, username: str | None) -> Report:
    user = None
    if username:
        user = (await session.exec(select(StaffUser).where(StaffUser.username == username))).first()
        if user is None or user.department_code != report.department_code:
            raise Unprocessable("validation_error", "assignee_username", "No officer of this ticket's department has that username.")
    report.assignee_id = user.id if user else None
    report.updated_at = utcnow()
    session.add(report)
    record_event(session, report, "assigned_to", actor=subject.actor, public=False, data={"assignee": username})
    await session.flush()
    return report
