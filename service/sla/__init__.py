"""SLA rules: the working calendar and deadline policies (pure, no I/O)."""

from service.sla.calendar import WorkingCalendar
from service.sla.rules import (
    DEFAULT_POLICIES,
    SlaPolicy,
    SlaState,
    compute_deadlines,
    extend_for_pause,
    policy_from_dict,
    sla_state,
)

__all__ = [
    "DEFAULT_POLICIES",
    "SlaPolicy",
    "SlaState",
    "WorkingCalendar",
    "compute_deadlines",
    "extend_for_pause",
    "policy_from_dict",
    "sla_state",
]
