"""The lifecycle's timed rules: SLA and acknowledgement marks and escalation, auto-close, erasure of contact data.

Each takes one batch of the reports due, locked (SKIP LOCKED: several workers may sweep at once and
each row goes to one of them), and changes them through the lifecycle's door; the job commits.
"""

from datetime import datetime, timedelta

from sqlalchemy import or_, true
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.lifecycle import changes
from service.lifecycle.events import EventCode
from service.lifecycle.states import CLOCK_RUNNING_STATUSES, Status, Via
from service.models import Department, Report
from service.models.report import ACKNOWLEDGE_PENDING
from service.settings import Settings
from service.sla.service import reports_needing_sla_update

BATCH = 1000


async def mark_sla(session: AsyncSession, now: datetime) -> int:
    """At risk at 75 % of the time (at_risk_at), overdue at 100 %; an overdue ticket escalates once to
    its department's supervising unit. Then the tickets not acknowledged in time (mark_acknowledge_overdue)."""
    reports = await reports_needing_sla_update(session, now)
    for report in reports:
        if report.due_at and report.due_at <= now:
            report.sla_state = "overdue"
            await changes.note(session, report, EventCode.SLA_BREACHED, data={"due_at": report.due_at.isoformat()})
            await _escalate(session, report, now, reason="overdue")
        else:
            report.sla_state = "at_risk"
            await changes.note(
                session,
                report,
                EventCode.SLA_AT_RISK,
                data={"due_at": report.due_at.isoformat() if report.due_at else None},
            )
    return len(reports) + await mark_acknowledge_overdue(session, now)


async def mark_acknowledge_overdue(session: AsyncSession, now: datetime) -> int:
    """An open ticket no one took into work by its acknowledge_due_at is marked once (until its clock
    restarts), told to subscribers, and escalated like an overdue one. On hold, its clock is paused."""
    reports = (
        await session.exec(
            select(Report)
            .where(
                col(Report.status).in_(CLOCK_RUNNING_STATUSES),
                ACKNOWLEDGE_PENDING,  # the partial index's own condition, so both databases use it
                col(Report.on_hold_since).is_(None),
                col(Report.acknowledge_due_at) <= now,
            )
            .order_by(col(Report.acknowledge_due_at))
            .limit(BATCH)
            .with_for_update(skip_locked=True, of=Report)
        )
    ).all()
    for report in reports:
        report.acknowledge_overdue_at = now
        due = report.acknowledge_due_at.isoformat() if report.acknowledge_due_at else None
        await changes.note(
            session,
            report,
            EventCode.ACK_OVERDUE,
            data={"acknowledge_due_at": due},
            webhook_extra={"acknowledge_due_at": due.replace("+00:00", "Z") if due else None},
        )
        await _escalate(session, report, now, reason="ack_overdue")
    return len(reports)


# (timeline code, the deadline, where the notice is marked, the setting with its lead in minutes)
_NEAR_DEADLINES = (
    (
        EventCode.ACKNOWLEDGE_DUE_SOON,
        "acknowledge_due_at",
        "acknowledge_due_soon_sent_for",
        "acknowledge_due_soon_minutes",
    ),
    (EventCode.DUE_SOON, "due_at", "due_soon_sent_for", "due_soon_minutes"),
)


async def mark_deadlines_near(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Tell a ticket's subscribers (its department's above all) that a deadline is near: once per
    deadline, marked on the ticket with the deadline it was sent for, so a deadline that moves (a
    transfer, a pause on hold) is announced again. Not while on hold, not once it has passed, and for
    acknowledgement only while no one has taken the ticket into work."""
    count = 0
    for code, deadline_name, mark_name, lead_setting in _NEAR_DEADLINES:
        deadline, mark = getattr(Report, deadline_name), getattr(Report, mark_name)
        lead = timedelta(minutes=getattr(settings, lead_setting))
        waiting = ACKNOWLEDGE_PENDING if code == EventCode.ACKNOWLEDGE_DUE_SOON else true()
        reports = (
            await session.exec(
                select(Report)
                .where(
                    col(Report.status).in_(CLOCK_RUNNING_STATUSES),
                    waiting,
                    col(Report.on_hold_since).is_(None),
                    col(deadline) > now,
                    col(deadline) <= now + lead,
                    or_(col(mark).is_(None), col(mark) != col(deadline)),
                )
                .order_by(col(deadline))
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=Report)
            )
        ).all()
        for report in reports:
            due = getattr(report, deadline_name)
            setattr(report, mark_name, due)
            await changes.note(
                session,
                report,
                code,
                data={deadline_name: due.isoformat()},
                webhook_extra={
                    deadline_name: due.isoformat().replace("+00:00", "Z"),
                    "minutes_left": int((due - now).total_seconds() // 60),
                },
            )
        count += len(reports)
    return count


async def _escalate(session: AsyncSession, report: Report, now: datetime, *, reason: str) -> None:
    """Once per ticket, whichever deadline it missed first: to its department's supervising unit."""
    if report.escalated_at is not None or not report.department_code:
        return
    department = await session.get(Department, report.department_code)
    if department and department.parent_code:
        report.escalated_at = now
        report.escalated_to_department_code = department.parent_code
        await changes.note(
            session,
            report,
            EventCode.ESCALATED,
            data={"from": department.code, "to": department.parent_code, "reason": reason},
        )


async def close_resolved(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """A resolved ticket the citizen did not reopen within the window is closed."""
    cutoff = now - timedelta(days=settings.reopen_window_days)
    reports = (
        await session.exec(
            select(Report)
            .where(Report.status == Status.RESOLVED, col(Report.resolved_at) < cutoff)
            .limit(BATCH)
            .with_for_update(skip_locked=True, of=Report)
        )
    ).all()
    for report in reports:
        report.closed_at = now
        await changes.change(
            session, report, via=Via.SWEEP, status=Status.CLOSED, data={"reason": "reopen window passed"}
        )
    return len(reports)


async def erase_personal_data(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Decree 13/2023: keep reporters' contact data only as long as the ticket needs it."""
    cutoff = now - timedelta(days=settings.pii_retention_days)
    reports = (
        await session.exec(
            select(Report)
            .where(
                col(Report.closed_at) < cutoff,
                or_(
                    col(Report.reporter_name).is_not(None),
                    col(Report.reporter_phone).is_not(None),
                    col(Report.reporter_email).is_not(None),
                ),
            )
            .limit(BATCH)
            .with_for_update(skip_locked=True, of=Report)
        )
    ).all()
    for report in reports:
        report.reporter_name = report.reporter_phone = report.reporter_email = None
        await changes.note(
            session, report, EventCode.PERSONAL_DATA_ERASED, data={"retention_days": settings.pii_retention_days}
        )
    return len(reports)
