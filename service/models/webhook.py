"""Status webhooks: who subscribed to what, the outbox of events per subscription, and every attempt."""

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models.types import utc_column, utcnow

WEBHOOK_EVENT_STATUSES = ("pending", "delivered", "failed")


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=200)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    filter_department_code: str | None = Field(default=None, max_length=64)
    filter_service_code: str | None = Field(default=None, max_length=64)
    filter_jurisdiction_code: str | None = Field(default=None, max_length=64)

    # Who registered it (a staff user or an API client) and which reports its events may describe:
    # all (admin), department (a department system's own), submitter (the app's own reports).
    owner_kind: str = Field(max_length=16)
    owner_id: UUID = Field(index=True)
    scope: str = Field(max_length=16)
    scope_department_code: str | None = Field(default=None, max_length=64)
    scope_api_client_id: UUID | None = Field(default=None)

    # `whsec_<base64>`; the previous one keeps signing until previous_secret_expires_at.
    secret: str = Field(max_length=128)
    previous_secret: str | None = Field(default=None, max_length=128)
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=utc_column())

    active: bool = Field(default=True, index=True)
    disabled_at: datetime | None = Field(default=None, sa_column=utc_column())
    disabled_reason: str | None = Field(default=None, max_length=500)
    failing_since: datetime | None = Field(default=None, sa_column=utc_column())
    consecutive_failures: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class WebhookEvent(SQLModel, table=True):
    """The outbox: one row per event per matching subscription, written with the change it describes.

    Rows of one (subscription, report) stream are sent in `id` order; `event_id` is the same for every
    subscription and every retry, so receivers use it to drop repeats.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_events_subscription_event"),
        Index("ix_webhook_events_stream", "subscription_id", "report_id", "status", "id"),
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
        Index("ix_webhook_events_subscription_created", "subscription_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=40)
    subscription_id: UUID = Field(foreign_key="webhook_subscriptions.id")
    report_id: UUID = Field(foreign_key="reports.id")
    type: str = Field(max_length=48)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=utc_column())
    last_error: str | None = Field(default=None, max_length=500)


class WebhookStream(SQLModel, table=True):
    """One subscription's events about one report, and which job may send them now (its lease).

    A job holds the lease from before an attempt until the attempt is recorded; another job that finds
    it held sends nothing. A lease its holder never gives back (a killed worker) ends at `claimed_until`.
    """

    __tablename__ = "webhook_streams"

    subscription_id: UUID = Field(foreign_key="webhook_subscriptions.id", primary_key=True)
    report_id: UUID = Field(foreign_key="reports.id", primary_key=True)
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = Field(default=None, sa_column=utc_column())


class WebhookDeliveryAttempt(SQLModel, table=True):
    """One HTTP attempt: what was sent to whom, what came back, how long it took."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (
        Index("ix_webhook_delivery_attempts_subscription", "subscription_id", "id"),
        Index("ix_webhook_delivery_attempts_event", "webhook_event_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: UUID = Field(foreign_key="webhook_subscriptions.id")
    webhook_event_id: int = Field(foreign_key="webhook_events.id")
    event_id: str = Field(max_length=40)
    event_type: str = Field(max_length=48)
    attempt: int
    attempted_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    succeeded: bool = Field(default=False)
    status_code: int | None = None
    latency_ms: int | None = None
    response_excerpt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, max_length=500)
