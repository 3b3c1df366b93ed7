"""The officer's work-list, as pure rules: which statuses a filter names, how a list is sorted, how much
time a ticket has left. No I/O; service.py turns these into queries."""

from dataclasses import dataclass
from datetime import datetime

from service.lifecycle.states import CLOSED_STATUSES, OPEN_STATUSES, Status, Via, allowed

# A bulk action's tickets at most: each is its own transaction, all within one request.
MAX_BULK_TICKETS = 100
# Names that stand for several statuses at once.
STATUS_GROUPS: dict[str, tuple[Status, ...]] = {"open": OPEN_STATUSES, "closed": CLOSED_STATUSES}
_STATUS_NAMES = frozenset(str(status) for status in Status)
STATUS_HELP = (
    "A status, or a group: `open` (received, needs_triage, assigned, in_progress, on_hold, reopened) or `closed` "
    "(resolved, closed, rejected, duplicate). Comma-separated or repeated for several; an unknown one is a 422."
)

# Most urgent first when sorting by `priority`; an unknown priority after all of them.
PRIORITY_RANK = {"urgent": 0, "normal": 1, "low": 2}
SORT_KEYS = ("priority", "due_at", "created_at", "updated_at")
MAX_SORT_KEYS = 3
SORT_PATTERN = rf"^-?({'|'.join(SORT_KEYS)})(,-?({'|'.join(SORT_KEYS)})){{0,{MAX_SORT_KEYS - 1}}}$"
SORT_HELP = (
    "Comma-separated keys, each ascending or descending with a leading `-`: "
    f"{', '.join(SORT_KEYS)}. `priority` puts the most urgent first; `due_at` the nearest deadline first "
    "(tickets without one last). E.g. `priority,due_at` for the work-list, `-created_at` (the default) for the newest."
)


class UnknownStatus(ValueError):
    pass


def statuses(values: list[str] | None) -> list[str] | None:
    """The statuses a filter names (each value a status, a group or a comma list of them), or None for all."""
    if not values:
        return None
    found: dict[str, None] = {}  # ordered, without repeats
    for value in values:
        for name in (part.strip().lower() for part in value.split(",")):
            if not name:
                continue
            if name in STATUS_GROUPS:
                found.update(dict.fromkeys(str(status) for status in STATUS_GROUPS[name]))
            elif name in _STATUS_NAMES:
                found[name] = None
            else:
                raise UnknownStatus(name)
    return list(found) or None


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


def sort_keys(sort: str) -> list[SortKey]:
    """`priority,-due_at` -> its keys; a field named twice (`priority,-priority`) is refused: which
    direction was meant?"""
    keys: dict[str, SortKey] = {}
    for part in sort.split(","):
        field = part.strip().lstrip("-")
        if field not in SORT_KEYS:
            raise ValueError(f"unknown sort key {part!r}")
        if field in keys:
            raise ValueError(f"sort key {field!r} given more than once")
        keys[field] = SortKey(field, part.strip().startswith("-"))
    return list(keys.values())


def time_left_seconds(
    *, status: str, due_at: datetime | None, on_hold_since: datetime | None, now: datetime
) -> int | None:
    """Seconds until the deadline, negative once it has passed; None without a deadline or once the ticket
    is no longer open. On hold the clock is stopped: the time left is what it was when it stopped."""
    if due_at is None or status not in OPEN_STATUSES:
        return None
    at = on_hold_since if status == Status.ON_HOLD and on_hold_since is not None else now
    return int((due_at - at).total_seconds())


def claim_starts_work(status: str, ways: frozenset[Via]) -> bool:
    """Taking a ticket starts the work where the workflow lets this role move it to in_progress; a ticket
    on hold waits for the citizen's answer, whoever holds it."""
    return status != Status.ON_HOLD and Status.IN_PROGRESS in allowed(status, ways)
