"""Working tickets: find, list, move through the workflow, transfer, comment. Functions only flush."""

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, case, func, literal, not_, or_, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import AuthSubject
from service.catalogue import service as catalogue
from service.db import lock_rows
from service.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from service.jurisdictions import service as jurisdictions
from service.lifecycle import changes as lifecycle
from service.lifecycle import states
from service.lifecycle.changes import UNSET
from service.lifecycle.events import EventCode
from service.lifecycle.states import IllegalMove, Status, Via
from service.models import Department, Report, ReportEvent, ServiceCategory, StaffUser
from service.models.report import SEARCH_INDEXED
from service.models.types import UTCDateTime, utcnow
from service.pipeline import routing
from service.reports import search
from service.reports.codes import normalise_tracking_code
from service.settings import Settings
from service.sla import service as sla
from service.tickets import worklist
from service.tickets.visibility import (
    ASSIGNABLE_ROLES,
    CITIZEN_SIDE_ROLES,
    may_see_department_staff,
    readable_condition,
)

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


class IllegalTransitionError(AppError):
    status, code = 409, "illegal_transition"


class NotYetProcessedError(AppError):
    """Staff acted on a report the pipeline has not processed yet (only rejecting it is allowed)."""

    status, code = 409, "not_yet_processed"

    def __init__(self) -> None:
        super().__init__(
            detail="The report is still being processed (located, prioritised, checked for duplicates, routed); "
            "try again in a moment. Until then it can only be rejected."
        )


def _parse_ref(ref: str) -> UUID | str | None:
    """A ticket reference as an id, else as a normalised tracking code; None when it is neither."""
    try:
        return UUID(ref)
    except ValueError:
        return normalise_tracking_code(ref)


async def get_visible(session: AsyncSession, subject: AuthSubject, ref: str, *, for_update: bool = False) -> Report:
    """A ticket by id or tracking code, or 404 — also when it exists but belongs to someone else."""
    condition = await readable_condition(session, subject)
    parsed = _parse_ref(ref)
    if parsed is None:
        raise NotFound("ticket_not_found")
    match = Report.id == parsed if isinstance(parsed, UUID) else Report.tracking_code == parsed
    statement = select(Report).where(match, condition)
    if for_update:
        await lock_rows(session, col(Report.revision), match)
        statement = statement.with_for_update().execution_options(populate_existing=True)
    report = (await session.exec(statement)).first()
    if report is None:
        raise NotFound("ticket_not_found")
    return report


async def visible_ids(session: AsyncSession, subject: AuthSubject, refs: list[str]) -> dict[str, UUID]:
    """The id behind each reference (id or tracking code) to a ticket this subject may see, in one query;
    a reference to no visible ticket is left out."""
    parsed = {ref: _parse_ref(ref) for ref in refs}
    ids = {value for value in parsed.values() if isinstance(value, UUID)}
    codes = {value for value in parsed.values() if isinstance(value, str)}
    if not ids and not codes:
        return {}
    rows = await session.exec(
        select(Report.id, Report.tracking_code).where(
            or_(col(Report.id).in_(ids), col(Report.tracking_code).in_(codes)),
            await readable_condition(session, subject),
        )
    )
    by_code = {}
    found = set()
    for report_id, tracking_code in rows.all():
        by_code[tracking_code] = report_id
        found.add(report_id)
    resolved = {ref: by_code.get(value) if isinstance(value, str) else value for ref, value in parsed.items()}
    return {ref: report_id for ref, report_id in resolved.items() if report_id in found}


# --- listing -----------------------------------------------------------------------------------

_SORT_EXPRESSIONS: dict[str, Any] = {
    "priority": case(worklist.PRIORITY_RANK, value=Report.priority, else_=len(worklist.PRIORITY_RANK)),
    "due_at": func.coalesce(Report.due_at, literal(FAR_FUTURE, UTCDateTime())),
    "created_at": col(Report.created_at),
    "updated_at": col(Report.updated_at),
}


@dataclass(frozen=True)
class TicketFilters:
    status: list[str] | None = None  # statuses, groups already expanded (worklist.statuses)
    category: str | None = None
    department: str | None = None
    priority: str | None = None
    sla_state: str | None = None
    jurisdiction: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None
    assignee: str | None = None  # "me", "none", a staff user's id or username


async def _conditions(session: AsyncSession, subject: AuthSubject, filters: TicketFilters) -> list[Any]:
    await catalogue.check_filter_codes(
        session, department=filters.department, category=filters.category, jurisdiction=filters.jurisdiction
    )
    conditions: list[Any] = []
    if filters.status:
        conditions.append(col(Report.status).in_(filters.status))
    for value, column in (
        (filters.category, Report.service_code),
        (filters.department, Report.department_code),
        (filters.priority, Report.priority),
        (filters.sla_state, Report.sla_state),
    ):
        if value:
            conditions.append(column == value)
    if filters.jurisdiction:
        # A ward, or a parent (the city, a district) standing for every ward under it; a code no longer
        # on the map still finds the reports that recorded it.
        conditions.append(
            or_(
                col(Report.jurisdiction_code) == filters.jurisdiction,
                col(Report.jurisdiction_code).in_(jurisdictions.covered_by(filters.jurisdiction)),
            )
        )
    if filters.created_from:
        conditions.append(col(Report.created_at) >= filters.created_from)
    if filters.created_to:
        conditions.append(col(Report.created_at) < filters.created_to)
    if filters.q and (pattern := search.like_pattern(filters.q)):
        matches = col(Report.search_text).like(pattern, escape="\\")
        # In two parts, so that PostgreSQL reads each from an index: the trigram index holds every report
        # but those still `received` (service.models.report), which the status index finds.
        conditions.append(or_(and_(SEARCH_INDEXED, matches), and_(not_(SEARCH_INDEXED), matches)))
    if filters.assignee:
        conditions.append(await _assignee_condition(session, subject, filters.assignee))
    return conditions


async def _assignee_condition(session: AsyncSession, subject: AuthSubject, value: str) -> ColumnElement[bool]:
    # A public app's key sees no staff names, so it may not probe them either: refused whatever the value.
    if subject.role in CITIZEN_SIDE_ROLES:
        raise Forbidden(detail="An app key cannot filter by assignee.")
    if value == "none":
        return col(Report.assignee_id).is_(None)
    if value == "me":
        if subject.kind != "staff":
            raise Unprocessable("unknown_assignee", "assignee", "`me` names a staff member signed in, not an API key.")
        return col(Report.assignee_id) == subject.id
    try:
        return col(Report.assignee_id) == UUID(value)
    except ValueError:
        user_id = (await session.exec(select(StaffUser.id).where(StaffUser.username == value))).first()
        if user_id is None:
            raise Unprocessable("unknown_assignee", "assignee") from None
        return col(Report.assignee_id) == user_id


def _sort_value(report: Report, field: str) -> datetime | int:
    if field == "priority":
        return worklist.PRIORITY_RANK.get(report.priority, len(worklist.PRIORITY_RANK))
    return getattr(report, field) or FAR_FUTURE


def encode_cursor(values: list[datetime | int], report_id: UUID) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    raw = json.dumps([plain, str(report_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, fields: list[str]) -> tuple[list[datetime | int], UUID]:
    """The sort values and id of the last row a page showed; a cursor of another sort is refused."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        plain, report_id = json.loads(raw)
        if not isinstance(plain, list) or len(plain) != len(fields):
            raise ValueError("the cursor belongs to another sort")
        values = [
            int(value) if field == "priority" else datetime.fromisoformat(value)
            for field, value in zip(fields, plain, strict=True)
        ]
        return values, UUID(report_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Unprocessable("invalid_cursor", "cursor") from exc


def _after(keys: list[tuple[Any, bool]], values: list, last_id: UUID) -> ColumnElement[bool]:
    """Rows after the cursor in this order: keyset pagination, stable under inserts, fast at any depth."""
    keys = [*keys, (col(Report.id), keys[-1][1])]
    bounds = [literal(value, key.type) for (key, _), value in zip(keys, [*values, last_id], strict=True)]
    if len({descending for _, descending in keys}) == 1:  # one direction: a row-value comparison
        left, right = tuple_(*(key for key, _ in keys)), tuple_(*bounds)
        return left < right if keys[0][1] else left > right
    either = []  # mixed directions: equal on the keys before, past the bound on this one
    for position, (key, descending) in enumerate(keys):
        ties = [earlier == bound for (earlier, _), bound in zip(keys[:position], bounds, strict=False)]
        either.append(and_(*ties, key < bounds[position] if descending else key > bounds[position]))
    return or_(*either)


async def list_(
    session: AsyncSession, subject: AuthSubject, filters: TicketFilters, *, sort: str, cursor: str | None, limit: int
) -> tuple[list[Report], str | None]:
    """A page of the tickets this subject may see, filtered, in `sort` order (worklist.SORT_HELP), with
    the cursor of the next page."""
    try:
        sort_keys = worklist.sort_keys(sort)
    except ValueError as exc:
        raise Unprocessable("validation_error", "sort", str(exc)) from exc
    fields = [key.field for key in sort_keys]
    keys = [(_SORT_EXPRESSIONS[key.field], key.descending) for key in sort_keys]
    statement = select(Report).where(
        await readable_condition(session, subject), *await _conditions(session, subject, filters)
    )
    if cursor:
        values, last_id = decode_cursor(cursor, fields)
        statement = statement.where(_after(keys, values, last_id))
    order = [key.desc() if descending else key.asc() for key, descending in keys]
    order.append(col(Report.id).desc() if keys[-1][1] else col(Report.id).asc())
    rows = list((await session.exec(statement.order_by(*order).limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([_sort_value(last, field) for field in fields], last.id)
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


def _illegal(exc: IllegalMove, role: str, detail: str | None = None) -> AppError:
    """The answer to a refused move: 409 not_yet_processed while the pipeline has the report, else
    illegal_transition with `detail` (by default, the moves this role may make from here)."""
    if isinstance(exc, states.NotYetProcessed):
        return NotYetProcessedError()
    if detail is None:
        allowed = ", ".join(states.allowed(exc.current, states.ways_for(role))) or "none"
        detail = f"{exc.current} → {exc.requested} is not allowed; allowed: {allowed}"
    return IllegalTransitionError(detail=detail)


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
    if original is None:
        raise Unprocessable("report_not_found", "duplicate_of")
    if original.id == report.id:
        raise Unprocessable("duplicate_of_itself", "duplicate_of")
    if original.status == Status.DUPLICATE:  # two tickets closed as each other's copy: nobody would work it
        raise Unprocessable("original_is_duplicate", "duplicate_of")
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
    try:
        states.check(report.status, Status.ASSIGNED, frozenset({Via.TRIAGE}))
    except IllegalMove as exc:
        detail = f"only untriaged or freshly assigned tickets can be triaged, not {report.status}"
        raise _illegal(exc, subject.role, detail) from exc
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
        raise _illegal(exc, subject.role, f"a {report.status} ticket cannot be transferred") from exc
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


def _processed(report: Report) -> None:
    """Staff take or give out a ticket only once the pipeline has processed it (routed it)."""
    if states.awaits_pipeline(report.status, frozenset({Via.STAFF})):
        raise NotYetProcessedError()


async def assign(session: AsyncSession, subject: AuthSubject, report: Report, *, username: str | None) -> Report:
    """Give the ticket to an officer of its department (None: to nobody). Naming who already holds it
    changes nothing: no event, the same ETag, so other clients' If-Match still holds."""
    _processed(report)
    user = None
    if username:
        user = (await session.exec(select(StaffUser).where(StaffUser.username == username))).first()
        if user is None or not may_hold(user, report.department_code):
            raise Unprocessable(
                "validation_error", "assignee_username", "No officer of this ticket's department has that username."
            )
    if (user.id if user else None) == report.assignee_id:
        return report
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


async def claim(session: AsyncSession, subject: AuthSubject, report: Report, settings: Settings) -> Report:
    """An officer takes a ticket of their own department: it becomes theirs, and in progress where the
    workflow allows (a ticket waiting for the citizen's answer stays on hold)."""
    _processed(report)
    if subject.kind != "staff" or subject.department_code != report.department_code:
        raise Forbidden(detail="Only an officer of the ticket's department can take it.")
    if report.status not in states.OPEN_STATUSES:
        raise IllegalTransitionError(detail=f"a {report.status} ticket cannot be taken")
    if report.assignee_id is not None and report.assignee_id != subject.id:
        holder = await session.get(StaffUser, report.assignee_id)
        # Someone who has left the department (or the service) holds it no more: it is free to take.
        if holder is not None and may_hold(holder, report.department_code):
            raise Conflict("already_claimed", f"taken by {holder.username}")
    if report.assignee_id != subject.id:
        await lifecycle.change(
            session,
            report,
            via=Via.STAFF,
            code=EventCode.ASSIGNEE_CHANGED,
            actor=subject.actor,
            public=False,
            assignee_id=subject.id,
            data={"assignee": subject.name, "claimed": True},
        )
    if worklist.claim_starts_work(report.status, states.ways_for(subject.role)):
        await transition(session, subject, report, states.StaffMove(to=Status.IN_PROGRESS), settings)
    await session.flush()
    return report


async def unclaim(session: AsyncSession, subject: AuthSubject, report: Report) -> Report:
    """Give a ticket back: only its assignee can; its status stays (a dispatcher reassigns it)."""
    if report.assignee_id is None or report.assignee_id != subject.id:
        raise Conflict("not_your_ticket")
    await lifecycle.change(
        session,
        report,
        via=Via.STAFF,
        code=EventCode.ASSIGNEE_CHANGED,
        actor=subject.actor,
        public=False,
        assignee_id=None,
        data={"assignee": None, "unclaimed": True},
    )
    await session.flush()
    return report


def may_hold(user: StaffUser, department_code: str | None) -> bool:
    """Whether a ticket of this department can be (or stay) with this staff member."""
    return user.active and user.role in ASSIGNABLE_ROLES and user.department_code == department_code


async def release_held_by(session: AsyncSession, user: StaffUser) -> int:
    """Give back the open tickets this user holds that they may hold no more (they were deactivated,
    moved to another department, or given a role that holds none): each goes back to its
    department's queue, with an event on its timeline. How many were given back."""
    held = (
        await session.exec(
            select(Report).where(col(Report.assignee_id) == user.id, col(Report.status).in_(states.OPEN_STATUSES))
        )
    ).all()
    released = 0
    for report in held:
        if may_hold(user, report.department_code):
            continue
        await lifecycle.change(
            session,
            report,
            via=Via.STAFF,
            code=EventCode.ASSIGNEE_CHANGED,
            public=False,
            assignee_id=None,
            data={"assignee": None, "released_from": user.username},
        )
        released += 1
    await session.flush()
    return released


async def staff_by_id(session: AsyncSession, ids: set[UUID]) -> dict[UUID, StaffUser]:
    """The staff users behind these assignee ids, in one query (a page of tickets names its assignees)."""
    if not ids:
        return {}
    rows = await session.exec(select(StaffUser).where(col(StaffUser.id).in_(ids)))
    return {user.id: user for user in rows.all()}


@dataclass(frozen=True)
class Officer:
    user: StaffUser
    open_tickets: int


async def officers(session: AsyncSession, subject: AuthSubject, department_code: str) -> list[Officer]:
    """Who a ticket of this department can be given to, with how many open tickets each already holds."""
    if await session.get(Department, department_code) is None:
        raise NotFound("unknown_department")
    if not await may_see_department_staff(session, subject, department_code):
        raise Forbidden(detail="You may see the staff of your own department (and of the units under it) only.")
    held = (
        select(col(Report.assignee_id).label("assignee_id"), func.count().label("open_tickets"))
        .where(col(Report.status).in_(states.OPEN_STATUSES), col(Report.assignee_id).is_not(None))
        .group_by(col(Report.assignee_id))
        .subquery()
    )
    rows = await session.exec(
        select(StaffUser, func.coalesce(held.c.open_tickets, 0))
        .outerjoin(held, held.c.assignee_id == StaffUser.id)
        .where(
            StaffUser.department_code == department_code,
            col(StaffUser.active).is_(True),
            col(StaffUser.role).in_(ASSIGNABLE_ROLES),
        )
        .order_by(col(StaffUser.full_name), col(StaffUser.username))
    )
    return [Officer(user, int(count)) for user, count in rows.all()]
