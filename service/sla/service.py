"""SLA deadlines for reports, from the catalogue's policies and the configured working calendar."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import cast

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import Report, ReportRow, SlaPolicyRow
from service.settings import Settings
from service.sla.calendar import WorkingCalendar
from service.sla.rules import DEFAULT_POLICIES, Clock, SlaPolicy, extend_for_pause


@lru_cache(maxsize=4)
def _calendar(timezone: str, weekdays: tuple, periods: tuple, holidays: tuple, working: tuple) -> WorkingCalendar:
    return WorkingCalendar(
        timezone=timezone,
        working_weekdays=frozenset(weekdays),
        working_periods=periods,
        extra_holidays=frozenset(holidays),
        extra_working_dates=frozenset(working),
    )


def calendar_from(settings: Settings) -> WorkingCalendar:
    return _calendar(
        settings.sla_timezone,
        tuple(settings.sla_working_weekdays),
        tuple(tuple(period) for period in settings.sla_working_periods),
        tuple(settings.sla_extra_holidays),
        tuple(settings.sla_extra_working_dates),
    )


async def policy_for(session: AsyncSession, category_code: str | None, priority: str) -> tuple[SlaPolicy, dict]:
    """The category's own policy for this priority, else the priority's general one, else the built-in default."""
    rows = (await session.exec(select(SlaPolicyRow).where(SlaPolicyRow.priority == priority))).all()
    return choose_policy(rows, category_code, priority)


def choose_policy(rows: Iterable[SlaPolicyRow], category_code: str | None, priority: str) -> tuple[SlaPolicy, dict]:
    """Pure rule behind policy_for; `rows` may hold every priority's policies (the worker's cached catalogue)."""
    rows = [r for r in rows if r.priority == priority]
    row = next((r for r in rows if category_code and r.category_code == category_code), None) or next(
        (r for r in rows if r.category_code is None), None
    )
    if row is None:
        policy = DEFAULT_POLICIES.get(priority, DEFAULT_POLICIES["normal"])
        return policy, {"policy": f"built-in:{priority}"}
    policy = SlaPolicy(
        acknowledge_hours=row.acknowledge_hours, resolve_hours=row.resolve_hours, clock=cast(Clock, row.clock)
    )  # the catalogue schema checked it
    return policy, {
        "policy": f"{row.category_code or '*'}/{row.priority}",
        "catalogue_version": row.catalogue_version,
        "restart_on_transfer": row.restart_on_transfer,
    }


def _at(policy: SlaPolicy, calendar: WorkingCalendar, start: datetime, hours: float) -> datetime:
    if policy.clock == "working":
        return calendar.add_working_hours(start, hours)
    return start + timedelta(hours=hours)


def start_clock(
    report: Report | ReportRow, policy: SlaPolicy, calendar: WorkingCalendar, start: datetime, at_risk_ratio: float
) -> None:
    """Set acknowledge, at-risk and resolve deadlines; the at-risk point lets the sweep use one index."""
    report.sla_started_at = start
    report.sla_clock = policy.clock
    report.acknowledge_due_at = _at(policy, calendar, start, policy.acknowledge_hours)
    report.due_at = _at(policy, calendar, start, policy.resolve_hours)
    report.at_risk_at = _at(policy, calendar, start, policy.resolve_hours * at_risk_ratio)
    report.sla_state = "on_track"
    if report.acknowledge_overdue_at is not None and report.acknowledge_due_at > report.acknowledge_overdue_at:
        # The mark stands for the deadline it missed: a later deadline (a transfer that restarts the
        # clock, a longer one after triage) has not been missed yet.
        report.acknowledge_overdue_at = None


def resume_clock(report: Report, policy: SlaPolicy, calendar: WorkingCalendar, resumed_at: datetime) -> None:
    """After on_hold: the deadlines move later by the time spent waiting for the citizen."""
    if report.on_hold_since is None:
        return
    for field in ("due_at", "at_risk_at", "acknowledge_due_at"):
        value = getattr(report, field)
        if value is not None and value > report.on_hold_since:
            setattr(report, field, extend_for_pause(policy, calendar, value, report.on_hold_since, resumed_at))
    report.on_hold_since = None


async def reports_needing_sla_update(session: AsyncSession, now: datetime, limit: int = 500) -> list[Report]:
    """Open reports that crossed their at-risk point or their deadline since the last sweep."""
    open_statuses = ("assigned", "in_progress", "reopened", "needs_triage")
    statement = (
        select(Report)
        .where(
            col(Report.status).in_(open_statuses),
            col(Report.on_hold_since).is_(None),
            ((col(Report.sla_state) == "on_track") & (col(Report.at_risk_at) <= now))
            | (col(Report.sla_state).in_(("on_track", "at_risk")) & (col(Report.due_at) <= now)),
        )
        .order_by(col(Report.due_at))
        .limit(limit)
        # Several workers may sweep at once (each runs it at startup): each row goes to one of them.
        .with_for_update(skip_locked=True, of=Report)
    )
    return list((await session.exec(statement)).all())
