"""What staff send and receive for tickets."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.errors import Problem
from service.reports.codes import normalise_tracking_code
from service.tickets.worklist import MAX_BULK_TICKETS


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TransitionIn(_In):
    to: Literal["assigned", "in_progress", "on_hold", "resolved", "closed", "rejected", "reopened", "duplicate"]
    reason: str | None = Field(default=None, max_length=2000, description="Required to reject")
    public_reply: str | None = Field(
        default=None, max_length=5000, description="Required to resolve; the citizen reads it"
    )
    question: str | None = Field(
        default=None, max_length=2000, description="Required for on_hold; asked of the citizen"
    )
    duplicate_of: str | None = Field(default=None, description="Tracking code of the original, to mark a duplicate")


class TriageIn(_In):
    service_code: str = Field(max_length=64)
    department_code: str | None = Field(default=None, max_length=64, description="Default: the routing rules decide")
    priority: Literal["urgent", "normal", "low"] | None = None
    note: str | None = Field(default=None, max_length=2000)


class TransferIn(_In):
    department_code: str = Field(max_length=64)
    reason: str = Field(min_length=3, max_length=2000)


class CommentIn(_In):
    body: str = Field(min_length=1, max_length=5000)
    visibility: Literal["public", "internal"]


class AssignIn(_In):
    # Required (null to unassign): an empty body from a buggy client must not take the ticket from its officer.
    assignee_username: str | None = Field(max_length=100, description="Required; null to unassign")


class TimelineEvent(BaseModel):
    id: int
    code: str = Field(
        description="Stable code of what happened (status_changed, public_reply, transferred…); see the README's event table"
    )
    at: datetime
    actor: str
    public: bool
    message: str | None = Field(description="In the language of Accept-Language (vi by default, en)")
    data: dict = Field(description="The details; a change carries `status: {from, to}` and each other field it moved")


class AttributeAnswer(BaseModel):
    """The citizen's answer to one of the category's extra questions."""

    code: str
    question: str | None = Field(description="The question, in the reader's language (none if since dropped)")
    value: str | int | float | list[str] = Field(description="As stored: a datetime in UTC, a list's keys")
    value_names: list[str] | None = Field(description="For a list: the names of the chosen keys")


class Contact(BaseModel):
    name: str | None
    phone: str | None
    email: str | None


class AssigneeRef(BaseModel):
    id: UUID
    username: str
    name: str = Field(description="The full name (the username when none is recorded)")


class TicketSummary(BaseModel):
    id: UUID
    etag: str = Field(description="The ticket's version, as in the ETag header; send it back in If-Match")
    tracking_code: str
    status: str
    service_code: str | None
    department_code: str | None
    jurisdiction_code: str | None
    priority: str
    sla_state: str | None
    title: str | None
    description: str
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    time_left_seconds: int | None = Field(
        description="Seconds until due_at, negative once overdue; frozen while on hold; null without a deadline "
        "or once the ticket is no longer open"
    )
    address: str | None
    assignee: AssigneeRef | None = Field(description="The officer holding the ticket")
    transfer_count: int
    supporter_count: int


class TicketDetail(TicketSummary):
    lat: float | None
    lon: float | None
    channel: str
    is_public: bool
    classification_confidence: float | None
    category_source: str | None
    acknowledge_due_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    on_hold_since: datetime | None
    escalated_to_department_code: str | None
    assignee_id: UUID | None
    duplicate_of_id: UUID | None
    rejection_reason: str | None
    citizen_rating: int | None
    citizen_feedback: str | None
    reporter: Contact | None = Field(description="Only for roles that need to call back")
    allowed_transitions: list[str]
    attributes: list[AttributeAnswer] = Field(description="Answers to the citizen's category's questions")
    photos: list[dict]
    timeline: list[TimelineEvent]


class TicketPage(BaseModel):
    items: list[TicketSummary]
    next_cursor: str | None


class OfficerOut(BaseModel):
    id: UUID
    username: str
    name: str = Field(description="The full name (the username when none is recorded)")
    role: str
    open_tickets: int = Field(description="Open tickets this officer already holds")


class BulkAssign(AssignIn):
    type: Literal["assign"]


class BulkTransfer(TransferIn):
    type: Literal["transfer"]


class BulkTransition(TransitionIn):
    type: Literal["transition"]


class BulkComment(CommentIn):
    type: Literal["comment"]


BulkAction = Annotated[BulkAssign | BulkTransfer | BulkTransition | BulkComment, Field(discriminator="type")]


class BulkIn(_In):
    tickets: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=MAX_BULK_TICKETS, description="Ids or tracking codes, at most 100, each once"
    )
    action: BulkAction = Field(
        description="What to do to each ticket: the body of the single-ticket endpoint, with its `type`"
    )

    @field_validator("tickets")
    @classmethod
    def _each_ticket_once(cls, tickets: list[str]) -> list[str]:
        # The same ticket twice would get the action twice (two notes, two timeline entries).
        seen: set[str] = set()
        for ticket in tickets:
            key = normalise_tracking_code(ticket) or ticket.strip().lower()
            if key in seen:
                raise ValueError(f"ticket {ticket!r} is listed more than once")
            seen.add(key)
        return tickets


class BulkItem(BaseModel):
    ticket: str = Field(description="As sent")
    status: int = Field(description="What the single-ticket endpoint would have answered")
    etag: str | None = Field(default=None, description="The ticket's new ETag, when it changed")
    problem: Problem | None = None


class BulkResult(BaseModel):
    succeeded: int
    failed: int
    results: list[BulkItem] = Field(description="One per ticket, in the order sent")
