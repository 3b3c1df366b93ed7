"""The ticket state machine: which status may follow which, and what each move requires. Pure rules."""

from dataclasses import dataclass

# status -> statuses it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("assigned", "needs_triage", "rejected", "duplicate"),
    "needs_triage": ("assigned", "rejected", "duplicate"),
    "assigned": ("in_progress", "on_hold", "resolved", "rejected", "duplicate"),
    "in_progress": ("on_hold", "resolved", "rejected"),
    "on_hold": ("in_progress",),
    "resolved": ("closed", "reopened"),
    "reopened": ("in_progress", "on_hold", "resolved", "rejected"),
    "closed": ("reopened",),
    "rejected": ("reopened",),
    "duplicate": ("reopened",),
}
# Moves only a supervisor (or admin) may make: undoing a closure or a rejection.
SUPERVISOR_ONLY = {("closed", "reopened"), ("rejected", "reopened"), ("duplicate", "reopened")}
OPEN = ("received", "needs_triage", "assigned", "in_progress", "on_hold", "reopened")


class IllegalTransition(Exception):
    def __init__(self, current: str, requested: str):
        self.current, self.requested = current, requested
        self.allowed = list(TRANSITIONS.get(current, ()))
        super().__init__(f"{current} → {requested}")


class MissingRequirement(Exception):
    def __init__(self, field: str, code: str):
        self.field, self.code = field, code
        super().__init__(code)


@dataclass(frozen=True)
class TransitionRequest:
    to: str
    reason: str | None = None  # rejection reason
    public_reply: str | None = None  # what the citizen reads (required to resolve)
    question: str | None = None  # what the citizen is asked (required for on_hold)


def check(current: str, request: TransitionRequest, *, role: str) -> None:
    """Raise when the move is not allowed or lacks what it needs."""
    if request.to not in TRANSITIONS.get(current, ()):
        raise IllegalTransition(current, request.to)
    if (current, request.to) in SUPERVISOR_ONLY and role not in ("supervisor", "admin"):
        raise IllegalTransition(current, request.to)
    if request.to == "resolved" and not (request.public_reply or "").strip():
        raise MissingRequirement("public_reply", "public_reply_required")
    if request.to == "rejected" and not (request.reason or "").strip():
        raise MissingRequirement("reason", "reason_required")
    if request.to == "on_hold" and not (request.question or "").strip():
        raise MissingRequirement("question", "question_required")


def allowed_from(current: str, *, role: str) -> list[str]:
    return [
        status for status in TRANSITIONS.get(current, ())
        if (current, status) not in SUPERVISOR_ONLY or role in ("supervisor", "admin")
    ]
