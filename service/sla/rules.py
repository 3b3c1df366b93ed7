"""SLA policies, deadlines, pauses and the on_track / at_risk / overdue verdict.

A "working" policy counts only office hours of a WorkingCalendar; a "clock" policy
(urgent danger reports) counts every hour, nights and Tết included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from service.sla.calendar import WorkingCalendar

Clock = Literal["working", "clock"]
SlaState = Literal["on_track", "at_risk", "overdue"]

# 8 with the default office hours (07:30-11:30, 13:00-17:00).
DEFAULT_WORKING_HOURS_PER_DAY = WorkingCalendar().working_hours_per_day


@dataclass(frozen=True)
class SlaPolicy:
    acknowledge_hours: float
    resolve_hours: float
    clock: Clock

    def __post_init__(self) -> None:
        if self.clock not in ("working", "clock"):
            raise ValueError(f"clock must be 'working' or 'clock', got {self.clock!r}")
        for name in ("acknowledge_hours", "resolve_hours"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


# 1022-style defaults: acknowledge within one working day; resolve in 5 working days
# (normal), 10 (low priority or complex cases); danger reports run on the wall clock.
DEFAULT_POLICIES: dict[str, SlaPolicy] = {
    "urgent": SlaPolicy(acknowledge_hours=1, resolve_hours=4, clock="clock"),
    "normal": SlaPolicy(acknowledge_hours=8, resolve_hours=5 * DEFAULT_WORKING_HOURS_PER_DAY, clock="working"),
    "low": SlaPolicy(acknowledge_hours=8, resolve_hours=10 * DEFAULT_WORKING_HOURS_PER_DAY, clock="working"),
    "complex": SlaPolicy(acknowledge_hours=8, resolve_hours=10 * DEFAULT_WORKING_HOURS_PER_DAY, clock="working"),
}

_POLICY_KEYS = {"acknowledge_hours", "acknowledge_days", "resolve_hours", "resolve_days", "clock"}


def policy_from_dict(
    data: Mapping[str, Any], *, working_hours_per_day: float = DEFAULT_WORKING_HOURS_PER_DAY
) -> SlaPolicy:
    """Read a catalogue entry like {"acknowledge_hours": 8, "resolve_days": 5, "clock": "working"}.

    Days are working days (× working_hours_per_day) on a working clock and 24 hours on
    the wall clock. Unknown keys are refused so a typo cannot silently drop a deadline.
    """
    if unknown := set(data) - _POLICY_KEYS:
        raise ValueError(f"unknown SLA policy keys: {sorted(unknown)}")
    clock = data.get("clock", "working")
    hours_per_day = working_hours_per_day if clock == "working" else 24.0

    def hours(stem: str) -> float:
        in_hours, in_days = f"{stem}_hours", f"{stem}_days"
        if (in_hours in data) == (in_days in data):
            raise ValueError(f"give exactly one of {in_hours} or {in_days}")
        return float(data[in_hours]) if in_hours in data else float(data[in_days]) * hours_per_day

    return SlaPolicy(acknowledge_hours=hours("acknowledge"), resolve_hours=hours("resolve"), clock=clock)


def _after(policy: SlaPolicy, calendar: WorkingCalendar, start: datetime, hours: float) -> datetime:
    if policy.clock == "working":
        return calendar.add_working_hours(start, hours)
    if start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware, got {start!r}")
    return start.astimezone(UTC) + timedelta(hours=hours)


def _hours_between(policy: SlaPolicy, calendar: WorkingCalendar, start: datetime, end: datetime) -> float:
    if policy.clock == "working":
        return calendar.working_hours_between(start, end)
    return (end - start).total_seconds() / 3600


def compute_deadlines(policy: SlaPolicy, calendar: WorkingCalendar, start: datetime) -> tuple[datetime, datetime]:
    """(acknowledge_due_at, resolve_due_at) in UTC for a report received at `start`."""
    return (
        _after(policy, calendar, start, policy.acknowledge_hours),
        _after(policy, calendar, start, policy.resolve_hours),
    )


def extend_for_pause(
    policy: SlaPolicy,
    calendar: WorkingCalendar,
    due_at: datetime,
    paused_at: datetime,
    resumed_at: datetime,
) -> datetime:
    """Move `due_at` later by the time, on the policy's clock, the ticket spent on_hold.

    A pause from Friday 16:00 to Monday 09:30 costs three working hours, not a weekend.
    """
    if resumed_at < paused_at:
        raise ValueError("resumed_at is before paused_at")
    paused_hours = _hours_between(policy, calendar, paused_at, resumed_at)
    if paused_hours == 0:
        # Keep the deadline exactly; re-adding zero hours would snap a deadline that sits
        # at 17:00 to the next morning.
        return due_at.astimezone(UTC)
    return _after(policy, calendar, due_at, paused_hours)


def sla_state(
    now: datetime,
    started_at: datetime,
    due_at: datetime,
    *,
    policy: SlaPolicy,
    calendar: WorkingCalendar,
    paused_seconds: float = 0.0,
    at_risk_ratio: float = 0.75,
) -> SlaState:
    """How far through its allowed time a ticket is, on the policy's clock.

    `due_at` already includes the extensions for past pauses; `paused_seconds` is the time
    on hold between started_at and now, measured on the policy's clock (working seconds
    for a working policy), and is taken out of both the elapsed and the allowed time.
    """
    if not 0 < at_risk_ratio <= 1:
        raise ValueError(f"at_risk_ratio must be in (0, 1], got {at_risk_ratio}")
    if now >= due_at:
        return "overdue"
    paused_hours = paused_seconds / 3600
    allowed = _hours_between(policy, calendar, started_at, due_at) - paused_hours
    elapsed = _hours_between(policy, calendar, started_at, now) - paused_hours
    if allowed <= 0:
        return "at_risk"
    fraction = elapsed / allowed
    if fraction >= 1:
        return "overdue"
    return "at_risk" if fraction >= at_risk_ratio else "on_track"
