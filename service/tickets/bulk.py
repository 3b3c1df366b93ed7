"""Bulk actions: one action (assign, transfer, transition, comment) on up to 100 tickets.

Each ticket is its own transaction, committed (and its webhooks handed on) before the next one starts,
so one ticket that cannot move (not visible, a workflow the action breaks, a database hiccup) fails
alone and the others keep what was done to them. The caller gets one outcome per ticket. Before any
of that, the references are resolved to tickets at once: one ticket named twice (by its tracking code
and by its id) would get the action twice, so the whole request is refused as the schema refuses the
same reference twice.
"""

import logging
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import AuthSubject
from service.errors import AppError, ServiceUnavailable, Unprocessable, is_outage, is_unstorable_text
from service.handoff import Handoff, discard
from service.lifecycle import states
from service.models import Report
from service.settings import Settings
from service.tickets import service
from service.tickets.etag import etag_of
from service.tickets.schemas import BulkAction, BulkAssign, BulkComment, BulkTransfer, BulkTransition

log = logging.getLogger(__name__)


class InternalFailure(AppError):
    status, code = 500, "internal_error"


@dataclass(frozen=True)
class Outcome:
    ticket: str
    status: int
    etag: str | None = None
    error: AppError | None = None


async def run(
    sessions: async_sessionmaker,
    handoff: Handoff,
    settings: Settings,
    subject: AuthSubject,
    tickets: list[str],
    action: BulkAction,
) -> list[Outcome]:
    async with sessions() as session:
        ids = await service.visible_ids(session, subject, tickets)
    _each_ticket_once(tickets, ids)
    return [await _one(sessions, handoff, settings, subject, ticket, action) for ticket in tickets]


async def _one(
    sessions: async_sessionmaker,
    handoff: Handoff,
    settings: Settings,
    subject: AuthSubject,
    ticket: str,
    action: BulkAction,
) -> Outcome:
    async with sessions() as session:
        try:
            report = await service.get_visible(session, subject, ticket, for_update=True)
            await _apply(session, subject, report, action, settings)
            etag = etag_of(report)
            await handoff.commit(session)
        except Exception as exc:  # noqa: BLE001 - each ticket's failure is its own outcome
            discard(session)
            await session.rollback()
            error = _as_app_error(exc)
            return Outcome(ticket, error.status, error=error)
    return Outcome(ticket, 201 if isinstance(action, BulkComment) else 200, etag=etag)


async def _apply(
    session: AsyncSession, subject: AuthSubject, report: Report, action: BulkAction, settings: Settings
) -> None:
    """The same service call the single-ticket endpoint makes."""
    if isinstance(action, BulkAssign):
        await service.assign(session, subject, report, username=action.assignee_username)
    elif isinstance(action, BulkTransfer):
        await service.transfer(
            session, subject, report, department_code=action.department_code, reason=action.reason, settings=settings
        )
    elif isinstance(action, BulkTransition):
        move = states.StaffMove(
            to=states.Status(action.to),
            reason=action.reason,
            public_reply=action.public_reply,
            question=action.question,
        )
        await service.transition(session, subject, report, move, settings, duplicate_of=action.duplicate_of)
    else:
        await service.comment(session, subject, report, body=action.body, visibility=action.visibility)


def _each_ticket_once(tickets: list[str], ids: dict[str, UUID]) -> None:
    first_named: dict[UUID, str] = {}
    for ticket in tickets:
        if (report_id := ids.get(ticket)) is None:
            continue  # not visible: its own 404, whatever else is listed
        if report_id in first_named:
            message = f"ticket {ticket!r} is the ticket {first_named[report_id]!r} already listed"
            raise Unprocessable(
                "validation_error", "tickets", message, fields=[("tickets", "validation_error", message)]
            )
        first_named[report_id] = ticket


def _as_app_error(exc: Exception) -> AppError:
    """What the single-ticket endpoint would have answered (service.errors' handlers, per ticket)."""
    if isinstance(exc, AppError):
        return exc
    if is_unstorable_text(exc):
        return Unprocessable("text_not_storable", "action")
    if is_outage(exc):
        log.warning("dependency unavailable during a bulk action: %s", type(exc).__name__)
        return ServiceUnavailable()
    log.error("unexpected error in a bulk action", exc_info=exc)
    return InternalFailure()
