"""The one door for a report's life: status, department, assignee and priority change only here.

`change` checks the move against the workflow table (states.MOVES), applies it, writes exactly one
timeline event with the before and after values, and writes the webhook outbox rows in the same
transaction, with the report as it is after the change. `note` writes a timeline event that changes
none of those (a step of the pipeline, a comment, an SLA mark). Both only add to the session; the
caller's boundary commits (and hands the webhook streams on, service.handoff). `Batch` is the same
door for many reports at once: the same decisions, events and webhook events, written in bulk.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import bindparam, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.lifecycle.events import NOTE_WEBHOOKS, STATUS_WEBHOOKS, EventCode, WebhookType
from service.lifecycle.states import MOVES, IllegalMove, Status, Via, check
from service.models import Report, ReportEvent, ReportRow
from service.models.types import utcnow
from service.webhooks import outbox

SYSTEM = "system"
CITIZEN = "citizen"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
E = TypeVar(
    "E", "ReportEvent", "TimelineRow"
)  # a timeline event: a ReportEvent added to the session, or a TimelineRow of a Batch
_TRACKED = ("status", "department_code", "assignee_id", "priority")


@dataclass(frozen=True)
class Changed:
    """What a change did: the event it wrote, and each field's (before, after) where it moved."""

    event: ReportEvent
    fields: dict[str, tuple[Any, Any]]

    @property
    def status_changed(self) -> bool:
        return "status" in self.fields


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


async def change(
    session: AsyncSession,
    report: Report,
    *,
    via: Via | frozenset[Via],
    code: EventCode = EventCode.STATUS_CHANGED,
    actor: str = SYSTEM,
    status: Status | str | None = None,
    department_code: str | None = UNSET,
    assignee_id: UUID | None = UNSET,
    priority: str = UNSET,
    message: str | None = None,
    data: dict | None = None,
    public: bool = True,
) -> Changed:
    """Move the report; raise states.IllegalMove (and change nothing) when the workflow forbids it.
    A duplicate moved out of `duplicate` leaves its original (see `_release`)."""
    original = await _original_left(session, report, status)
    if original is not None:
        data = {**(data or {}), "former_original": original.tracking_code}
    moved, previous, event, items = _move(
        report,
        make=_event,
        via=via,
        code=code,
        actor=actor,
        status=status,
        department_code=department_code,
        assignee_id=assignee_id,
        priority=priority,
        message=message,
        data=data,
        public=public,
    )
    if original is not None:
        await _release(session, original, report, actor=actor)
    session.add(report)
    session.add(event)
    await outbox.publish(session, items)
    if "status" in moved and report.supporter_count:
        for told, told_items in await _tell_duplicates(session, report, previous, event.created_at, make=_event):
            session.add(told)
            await outbox.publish(session, told_items)
    return Changed(event, moved)


def _move(
    report: Report | ReportRow,
    *,
    make: Callable[..., E],
    via: Via | frozenset[Via],
    code: EventCode = EventCode.STATUS_CHANGED,
    actor: str = SYSTEM,
    status: Status | str | None = None,
    department_code: str | None = UNSET,
    assignee_id: UUID | None = UNSET,
    priority: str = UNSET,
    message: str | None = None,
    data: dict | None = None,
    public: bool = True,
) -> tuple[dict[str, tuple[Any, Any]], str, E, list[outbox.Outgoing]]:
    """A change applied to the report: what moved, the status before, its event and its webhook events."""
    ways = via if isinstance(via, frozenset) else frozenset({via})
    before = {name: getattr(report, name) for name in _TRACKED}
    if status is not None:
        check(report.status, status, ways)
        ways = MOVES[(Status(report.status), Status(status))] & ways
    wanted = {
        "status": Status(status) if status is not None else UNSET,
        "department_code": department_code,
        "assignee_id": assignee_id,
        "priority": priority,
    }
    for name, value in wanted.items():
        if value is not UNSET:
            setattr(report, name, str(value) if isinstance(value, Status) else value)
    moved = {name: (before[name], getattr(report, name)) for name in _TRACKED if getattr(report, name) != before[name]}
    now = utcnow()
    report.updated_at, report.revision = now, report.revision + 1
    event_data = {
        **(data or {}),
        "status": {"from": before["status"], "to": report.status},
        **{name: {"from": _plain(old), "to": _plain(new)} for name, (old, new) in moved.items() if name != "status"},
        "via": str(min(ways)),  # the way that allowed it (staff before supervisor)
    }
    event = make(report, code, actor=actor, message=message, data=event_data, public=public, at=now)
    return moved, before["status"], event, _webhooks(report, event, code, moved)


async def note(
    session: AsyncSession,
    report: Report,
    code: EventCode,
    *,
    actor: str = SYSTEM,
    message: str | None = None,
    data: dict | None = None,
    public: bool = False,
    touch: bool = True,
    webhook_extra: dict | None = None,
) -> ReportEvent:
    """A timeline event that changes none of the tracked fields (webhooks for the codes that have one,
    with `webhook_extra` added to their payload)."""
    event, items = _noted(report, code, _event, actor, message, data, public, touch, webhook_extra)
    session.add(event)
    if touch:
        session.add(report)
    await outbox.publish(session, items)
    return event


def _noted(
    report: Report | ReportRow,
    code: EventCode,
    make: Callable[..., E],
    actor: str,
    message: str | None,
    data: dict | None,
    public: bool,
    touch: bool,
    webhook_extra: dict | None,
) -> tuple[E, list[outbox.Outgoing]]:
    now = utcnow()
    event = make(report, code, actor=actor, message=message, data=data or {}, public=public, at=now)
    if touch:  # what a reader of the ticket sees changed: its ETag must change too
        report.updated_at, report.revision = now, report.revision + 1
    type_ = NOTE_WEBHOOKS.get(code)
    if code == EventCode.CLASSIFIED and (data or {}).get("service_code"):
        type_ = WebhookType.CLASSIFIED  # sent to triage instead: nothing was decided yet
    if type_ is not None and (public or code != EventCode.PUBLIC_REPLY):
        extra = {"comment": message} if code == EventCode.PUBLIC_REPLY else webhook_extra
        return event, [_outgoing(type_, event, report, extra)]
    return event, []


async def received(session: AsyncSession, new: list[tuple[dict, Any]]) -> None:
    """Reports just inserted as plain rows (the intake writer), each with its "received" event row."""
    await outbox.publish(session, [_outgoing(WebhookType.CREATED, event, values) for values, event in new])


async def add_supporter(session: AsyncSession, original: Report, duplicate: Report, *, actor: str, data: dict) -> None:
    """A duplicate joins the original: one UPDATE, not read-modify-write, so concurrent duplicates each count."""
    await session.exec(
        update(Report)
        .where(col(Report.id) == original.id)
        .values(supporter_count=Report.supporter_count + 1, revision=Report.revision + 1)
    )
    session.add(
        _event(
            original,
            EventCode.SUPPORTER_ADDED,
            actor=actor,
            message=None,
            data={"duplicate": duplicate.tracking_code, **data},
            public=False,
            at=utcnow(),
        )
    )


async def _original_left(session: AsyncSession, report: Report, status: Status | str | None) -> Report | None:
    """The original a duplicate stops repeating when this change takes it out of `duplicate` (only a
    supervisor's reopening does; the pipeline's Batch only moves `received` reports)."""
    if status is None or report.duplicate_of_id is None or report.status != Status.DUPLICATE:
        return None
    if Status(status) == Status.DUPLICATE:
        return None
    return await session.get(Report, report.duplicate_of_id)


async def _release(session: AsyncSession, original: Report, duplicate: Report, *, actor: str) -> None:
    """A duplicate reopened is a report of its own again: unlinked (its page, Open311 and its webhooks
    no longer follow the original), and the original counts one supporter fewer."""
    duplicate.duplicate_of_id = None
    await session.exec(
        update(Report)
        .where(col(Report.id) == original.id, col(Report.supporter_count) > 0)
        .values(supporter_count=Report.supporter_count - 1, revision=Report.revision + 1)
    )
    session.add(
        _event(
            original,
            EventCode.SUPPORTER_REMOVED,
            actor=actor,
            message=None,
            data={"duplicate": duplicate.tracking_code},
            public=False,
            at=utcnow(),
        )
    )


@dataclass(frozen=True)
class TimelineRow:
    """A timeline event written as a plain row (Batch): it reads like a ReportEvent to the outbox."""

    report_id: UUID
    type: str
    actor: str
    message: str | None
    data: dict
    public: bool
    created_at: datetime


def _row(
    report: Report | ReportRow,
    code: EventCode,
    *,
    actor: str,
    message: str | None,
    data: dict,
    public: bool,
    at: datetime,
) -> TimelineRow:
    return TimelineRow(report.id, str(code), actor, message, data, public, at)


def _event(
    report: Report, code: EventCode, *, actor: str, message: str | None, data: dict, public: bool, at
) -> ReportEvent:
    # created_at given: pydantic would inspect the default factory's signature on every call.
    return ReportEvent(
        report_id=report.id, type=str(code), actor=actor, message=message, data=data, public=public, created_at=at
    )


def _outgoing(
    type_: WebhookType, event: Any, report: Report | ReportRow | dict, extra: dict | None = None
) -> outbox.Outgoing:
    return outbox.Outgoing(str(type_), event, outbox.snapshot_of(report), extra or {})


def _webhooks(
    report: Report | ReportRow, event: ReportEvent | TimelineRow, code: EventCode, moved: dict
) -> list[outbox.Outgoing]:
    """The webhook events of one change, decided by what moved, whatever path moved it."""
    items = []
    if "status" in moved:
        previous = moved["status"][0]
        extra = {"previous_status": previous}
        if report.status == Status.DUPLICATE:
            extra["duplicate_of"] = (event.data or {}).get("original")
        items.append(_outgoing(WebhookType.STATUS_CHANGED, event, report, extra))
        if (specific := STATUS_WEBHOOKS.get(Status(report.status))) is not None:
            items.append(_outgoing(specific, event, report, {"previous_status": previous}))
    if code == EventCode.TRANSFERRED and "department_code" in moved:
        old, new = moved["department_code"]
        items.append(_outgoing(WebhookType.TRANSFERRED, event, report, {"from_department": old, "to_department": new}))
    if report.status == Status.ASSIGNED and ("status" in moved or "department_code" in moved):
        items.append(_outgoing(WebhookType.ASSIGNED, event, report))
    return items


async def _tell_duplicates(
    session: AsyncSession, original: Report | ReportRow, previous: str, at: datetime, *, make: Callable[..., E]
) -> list[tuple[E, list[outbox.Outgoing]]]:
    """The reporters of duplicates follow the original: an event on each duplicate, and its webhook."""
    duplicates = (await session.exec(select(Report).where(col(Report.duplicate_of_id) == original.id))).all()
    told = []
    for duplicate in duplicates:
        event = make(
            duplicate,
            EventCode.ORIGINAL_STATUS_CHANGED,
            actor=SYSTEM,
            message=None,
            public=True,
            at=at,
            # Not `status`: that key means this report's own status moved.
            data={"original": original.tracking_code, "original_status": {"from": previous, "to": original.status}},
        )
        extra = {
            "original": {
                "tracking_code": original.tracking_code,
                "status": original.status,
                "previous_status": previous,
            }
        }
        told.append((event, [_outgoing(WebhookType.ORIGINAL_STATUS_CHANGED, event, duplicate, extra)]))
    return told


class Batch:
    """The same door for many reports at once (the pipeline's batches): each change and note is checked
    and decided exactly as by `change` and `note`, with the same events and webhook events, but the
    writes are gathered, and `write` makes them in a few statements: the reports (plain `ReportRow`s,
    locked by the caller's claim) in one UPDATE executemany, every timeline event in one INSERT, the
    supporters' counters in one executemany, and the outbox rows in one pass."""

    def __init__(self, session: AsyncSession):
        self.session = session
        self._reports: dict[UUID, ReportRow] = {}
        self._events: list[TimelineRow] = []
        self._webhooks: list[outbox.Outgoing] = []
        self._supporters: dict[UUID, int] = {}

    def note(
        self,
        report: ReportRow,
        code: EventCode,
        *,
        actor: str = SYSTEM,
        message: str | None = None,
        data: dict | None = None,
        public: bool = False,
        touch: bool = True,
        webhook_extra: dict | None = None,
    ) -> None:
        """As `note`."""
        event, items = _noted(report, code, _row, actor, message, data, public, touch, webhook_extra)
        self._events.append(event)
        self._webhooks += items
        self._keep(report)

    async def change(self, report: ReportRow, **move: Any) -> dict[str, tuple[Any, Any]]:
        """As `change` (the same keywords); returns what moved."""
        moved, previous, event, items = _move(report, make=_row, **move)
        self._keep(report)
        self._events.append(event)
        self._webhooks += items
        if "status" in moved and report.supporter_count:
            for told, told_items in await _tell_duplicates(self.session, report, previous, event.created_at, make=_row):
                self._events.append(told)
                self._webhooks += told_items
        return moved

    def _keep(self, report: ReportRow) -> None:
        self._reports[report.id] = report

    def add_supporter(self, original_id: UUID, duplicate: ReportRow, *, actor: str, data: dict) -> None:
        """As `add_supporter`, for an original this batch may itself have just processed (its counter
        is added with a relative UPDATE after the batch's own writes, so concurrent duplicates each count)."""
        self._supporters[original_id] = self._supporters.get(original_id, 0) + 1
        self._events.append(
            TimelineRow(
                original_id,
                str(EventCode.SUPPORTER_ADDED),
                actor,
                None,
                {"duplicate": duplicate.tracking_code, **data},
                False,
                utcnow(),
            )
        )

    async def write(self) -> None:
        session = self.session
        reports = Report.__table__  # type: ignore[attr-defined]
        await session.flush()  # what else the batch changed as table models (its photos)
        if self._reports:  # the counters below land on top of these writes
            await session.execute(
                update(reports).where(reports.c.id == bindparam("report_id")),
                # In id order, as the counters: two transactions never wait for each other crosswise.
                [{"report_id": report_id, **report.written()} for report_id, report in sorted(self._reports.items())],
            )
        if self._events:
            await session.execute(insert(ReportEvent.__table__), [vars(event) for event in self._events])  # type: ignore[attr-defined]
        if self._supporters:
            await session.execute(
                update(reports)
                .where(reports.c.id == bindparam("original"))
                .values(
                    supporter_count=reports.c.supporter_count + bindparam("added"),
                    revision=reports.c.revision + bindparam("added"),
                ),
                # In id order: two transactions never wait for each other's originals crosswise.
                [{"original": original, "added": added} for original, added in sorted(self._supporters.items())],
            )
        await outbox.publish(session, self._webhooks)
        self._reports, self._events, self._webhooks, self._supporters = {}, [], [], {}


__all__ = [
    "CITIZEN",
    "SYSTEM",
    "UNSET",
    "Batch",
    "Changed",
    "IllegalMove",
    "add_supporter",
    "change",
    "note",
]
