"""The one door for a report's life: status, department, assignee and priority change only here.

`change` checks the move against the workflow table (states.MOVES), applies it, writes exactly one
timeline event with the before and after values, and writes the webhook outbox rows in the same
transaction, with the report as it is after the change. `note` writes a timeline event that changes
none of those (a step of the pipeline, a comment, an SLA mark). Both only add to the session; the
caller's boundary commits (and hands the webhook streams on, service.handoff).
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.lifecycle.events import NOTE_WEBHOOKS, STATUS_WEBHOOKS, EventCode, WebhookType
from service.lifecycle.states import MOVES, IllegalMove, Status, Via, check
from service.models import Report, ReportEvent
from service.models.types import utcnow
from service.webhooks import outbox

SYSTEM = "system"
CITIZEN = "citizen"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
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
    """Move the report; raise states.IllegalMove (and change nothing) when the workflow forbids it."""
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
    session.add(report)
    event_data = {
        **(data or {}),
        "status": {"from": before["status"], "to": report.status},
        **{name: {"from": _plain(old), "to": _plain(new)} for name, (old, new) in moved.items() if name != "status"},
        "via": str(min(ways)),  # the way that allowed it (staff before supervisor)
    }
    event = _event(report, code, actor=actor, message=message, data=event_data, public=public, at=now)
    session.add(event)
    await outbox.publish(session, _webhooks(report, event, code, moved))
    if "status" in moved and report.supporter_count:
        await _tell_duplicates(session, report, before["status"], now)
    return Changed(event, moved)


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
    now = utcnow()
    event = _event(report, code, actor=actor, message=message, data=data or {}, public=public, at=now)
    session.add(event)
    if touch:  # what a reader of the ticket sees changed: its ETag must change too
        report.updated_at, report.revision = now, report.revision + 1
        session.add(report)
    type_ = NOTE_WEBHOOKS.get(code)
    if code == EventCode.CLASSIFIED and (data or {}).get("service_code"):
        type_ = WebhookType.CLASSIFIED  # sent to triage instead: nothing was decided yet
    if type_ is not None and (public or code != EventCode.PUBLIC_REPLY):
        extra = {"comment": message} if code == EventCode.PUBLIC_REPLY else webhook_extra
        await outbox.publish(session, [_outgoing(type_, event, report, extra)])
    return event


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


def _event(
    report: Report, code: EventCode, *, actor: str, message: str | None, data: dict, public: bool, at
) -> ReportEvent:
    # created_at given: pydantic would inspect the default factory's signature on every call.
    return ReportEvent(
        report_id=report.id, type=str(code), actor=actor, message=message, data=data, public=public, created_at=at
    )


def _outgoing(type_: WebhookType, event: Any, report: Report | dict, extra: dict | None = None) -> outbox.Outgoing:
    return outbox.Outgoing(str(type_), event, outbox.snapshot_of(report), extra or {})


def _webhooks(report: Report, event: ReportEvent, code: EventCode, moved: dict) -> list[outbox.Outgoing]:
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


async def _tell_duplicates(session: AsyncSession, original: Report, previous: str, at) -> None:
    """The reporters of duplicates follow the original: an event on each duplicate, and its webhook."""
    duplicates = (await session.exec(select(Report).where(col(Report.duplicate_of_id) == original.id))).all()
    for duplicate in duplicates:
        event = _event(
            duplicate,
            EventCode.ORIGINAL_STATUS_CHANGED,
            actor=SYSTEM,
            message=None,
            public=True,
            at=at,
            # Not `status`: that key means this report's own status moved.
            data={"original": original.tracking_code, "original_status": {"from": previous, "to": original.status}},
        )
        session.add(event)
        await outbox.publish(
            session,
            [
                _outgoing(
                    WebhookType.ORIGINAL_STATUS_CHANGED,
                    event,
                    duplicate,
                    {
                        "original": {
                            "tracking_code": original.tracking_code,
                            "status": original.status,
                            "previous_status": previous,
                        }
                    },
                )
            ],
        )


__all__ = ["CITIZEN", "SYSTEM", "UNSET", "Changed", "IllegalMove", "add_supporter", "change", "note"]
