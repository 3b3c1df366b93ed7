"""A report's statuses, the moves between them and who may make each one. Pure rules, no I/O.

Every path that changes a report's status (the pipeline, staff, triage, transfer, the citizen, the
sweeps) asks `check` with the way it moves the report; one table says what each way may do.
"""

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    RECEIVED = "received"
    NEEDS_TRIAGE = "needs_triage"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    REOPENED = "reopened"


# "open" and "closed", defined once: Open311's status, the IOC's backlog and the SLA sweeps read these.
OPEN_STATUSES: tuple[Status, ...] = (
    Status.RECEIVED,
    Status.NEEDS_TRIAGE,
    Status.ASSIGNED,
    Status.IN_PROGRESS,
    Status.ON_HOLD,
    Status.REOPENED,
)
CLOSED_STATUSES: tuple[Status, ...] = tuple(status for status in Status if status not in OPEN_STATUSES)
# Open and being worked: the SLA clock runs (it stops while on hold).
CLOCK_RUNNING_STATUSES: tuple[Status, ...] = tuple(status for status in OPEN_STATUSES if status != Status.ON_HOLD)


class Via(StrEnum):
    """The way a report is moved: who or what asks for the change."""

    PIPELINE = "pipeline"  # the worker's first processing
    STAFF = "staff"  # POST /v1/tickets/{id}/transitions by an officer, dispatcher or supervisor
    SUPERVISOR = "supervisor"  # the same endpoint, moves that only a supervisor or admin may make
    TRIAGE = "triage"  # a dispatcher decides the field (and so the department)
    TRANSFER = "transfer"  # chuyển đơn vị: the ticket starts again at another department
    CITIZEN = "citizen"  # the citizen answers a question or reopens a resolution
    SWEEP = "sweep"  # housekeeping: auto-close after the reopen window
    POISON = "poison"  # processing kept failing: a dispatcher must look at it


S, V = Status, Via
_STAFF = frozenset({V.STAFF})
_SUPERVISOR = frozenset({V.SUPERVISOR})

# (from, to) -> the ways that may make this move. Nothing else moves a report.
MOVES: dict[tuple[Status, Status], frozenset[Via]] = {
    # A received report is the pipeline's until it is processed (it locates, prioritises, checks for
    # duplicates and routes only `received` reports): staff may only reject it (spam) meanwhile.
    (S.RECEIVED, S.ASSIGNED): frozenset({V.PIPELINE}),
    (S.RECEIVED, S.NEEDS_TRIAGE): frozenset({V.PIPELINE, V.POISON}),
    (S.RECEIVED, S.REJECTED): _STAFF,
    (S.RECEIVED, S.DUPLICATE): frozenset({V.PIPELINE}),
    (S.NEEDS_TRIAGE, S.ASSIGNED): frozenset({V.STAFF, V.TRIAGE, V.TRANSFER}),
    (S.NEEDS_TRIAGE, S.REJECTED): _STAFF,
    (S.NEEDS_TRIAGE, S.DUPLICATE): _STAFF,
    (S.ASSIGNED, S.ASSIGNED): frozenset({V.TRANSFER, V.TRIAGE}),  # a new department, the same status
    (S.ASSIGNED, S.IN_PROGRESS): _STAFF,
    (S.ASSIGNED, S.ON_HOLD): _STAFF,
    (S.ASSIGNED, S.RESOLVED): _STAFF,
    (S.ASSIGNED, S.REJECTED): _STAFF,
    (S.ASSIGNED, S.DUPLICATE): _STAFF,
    (S.IN_PROGRESS, S.ASSIGNED): frozenset({V.TRANSFER}),
    (S.IN_PROGRESS, S.ON_HOLD): _STAFF,
    (S.IN_PROGRESS, S.RESOLVED): _STAFF,
    (S.IN_PROGRESS, S.REJECTED): _STAFF,
    (S.ON_HOLD, S.IN_PROGRESS): frozenset({V.STAFF, V.CITIZEN}),
    (S.ON_HOLD, S.ASSIGNED): frozenset({V.TRANSFER}),
    (S.RESOLVED, S.CLOSED): frozenset({V.STAFF, V.SWEEP}),
    (S.RESOLVED, S.REOPENED): frozenset({V.STAFF, V.CITIZEN}),
    (S.REOPENED, S.ASSIGNED): frozenset({V.TRANSFER}),
    (S.REOPENED, S.IN_PROGRESS): _STAFF,
    (S.REOPENED, S.ON_HOLD): _STAFF,
    (S.REOPENED, S.RESOLVED): _STAFF,
    (S.REOPENED, S.REJECTED): _STAFF,
    # Undoing a closure, a rejection or a duplicate decision is a supervisor's call.
    (S.CLOSED, S.REOPENED): _SUPERVISOR,
    (S.REJECTED, S.REOPENED): _SUPERVISOR,
    (S.DUPLICATE, S.REOPENED): _SUPERVISOR,
}
SUPERVISOR_ROLES = frozenset({"supervisor", "admin"})


class IllegalMove(Exception):
    def __init__(self, current: Status, requested: Status, allowed: list[Status]):
        self.current, self.requested, self.allowed = current, requested, allowed
        super().__init__(f"{current} → {requested}")


class NotYetProcessed(IllegalMove):
    """The move is refused because the pipeline has not processed the report yet: it may be allowed
    once the report leaves `received`."""


class MissingRequirement(Exception):
    def __init__(self, field: str, code: str):
        self.field, self.code = field, code
        super().__init__(code)


def ways_for(role: str) -> frozenset[Via]:
    """The ways a staff member of this role moves a ticket through the transitions endpoint."""
    return frozenset({V.STAFF, V.SUPERVISOR}) if role in SUPERVISOR_ROLES else frozenset({V.STAFF})


def allowed(current: str, ways: frozenset[Via]) -> list[Status]:
    return [to for (start, to), by in MOVES.items() if start == current and by & ways]


def check(current: str, to: str, ways: frozenset[Via]) -> None:
    """Raise IllegalMove unless one of these ways may move a `current` report to `to` (NotYetProcessed
    when the report is still waiting for the pipeline, which alone may take it out of `received`)."""
    if not MOVES.get((Status(current), Status(to)), frozenset()) & ways:
        refused = NotYetProcessed if awaits_pipeline(current, ways) else IllegalMove
        raise refused(Status(current), Status(to), allowed(current, ways))


def awaits_pipeline(current: str, ways: frozenset[Via]) -> bool:
    """A report these ways cannot act on (beyond rejecting it) until the pipeline has processed it."""
    return current == S.RECEIVED and not ways & {V.PIPELINE, V.POISON}


@dataclass(frozen=True)
class StaffMove:
    """What a staff member asks for on the transitions endpoint."""

    to: Status
    reason: str | None = None  # rejection reason
    public_reply: str | None = None  # what the citizen reads (required to resolve)
    question: str | None = None  # what the citizen is asked (required for on_hold)


def check_requirements(move: StaffMove) -> None:
    if move.to == S.RESOLVED and not (move.public_reply or "").strip():
        raise MissingRequirement("public_reply", "public_reply_required")
    if move.to == S.REJECTED and not (move.reason or "").strip():
        raise MissingRequirement("reason", "reason_required")
    if move.to == S.ON_HOLD and not (move.question or "").strip():
        raise MissingRequirement("question", "question_required")
