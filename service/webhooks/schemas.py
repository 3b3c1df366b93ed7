"""Request and response bodies of the webhook subscription API."""

from datetime import datetime
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from service.lifecycle.events import WebhookType
from service.webhooks.outbox import EVENT_TYPES

# The webhook event types, defined once with the lifecycle (service.lifecycle.events.WebhookType).
if TYPE_CHECKING:
    EventType = str  # a Literal built at run time is no static type
else:
    EventType = Literal[tuple(str(type_) for type_ in WebhookType)]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department_code: str | None = Field(default=None, max_length=64)
    service_code: str | None = Field(default=None, max_length=64, description="The category")
    jurisdiction_code: str | None = Field(
        default=None,
        max_length=64,
        description="A ward, or a parent (the city, a district) standing for everything under it",
    )


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="Where events are POSTed; https in production")
    event_types: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES), min_length=1, description="Default: every event type"
    )
    filters: Filters = Field(default_factory=Filters)
    description: str | None = Field(default=None, max_length=200)


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    filters: Filters | None = Field(default=None, description="Replaces the filters when given")
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = Field(default=None, description="true re-enables a disabled subscription")


class SubscriptionPublic(BaseModel):
    id: UUID
    url: str
    description: str | None
    event_types: list[str]
    filters: Filters
    scope: Literal["all", "department", "submitter"] = Field(
        description="Which reports its events may describe: all, the department's, or the app's own"
    )
    scope_department_code: str | None
    active: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None = Field(description="Until then the old secret also signs")
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(description="`whsec_…` signing secret; shown only now")


class SubscriptionList(BaseModel):
    items: list[SubscriptionPublic]


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: float | None = Field(
        default=None, ge=0, le=7 * 24 * 3600, description="How long the old secret keeps signing (default: the setting)"
    )


class SecretRotated(BaseModel):
    secret: str = Field(description="The new `whsec_…` secret; shown only now")
    previous_secret_expires_at: datetime | None


class DeliveryAttemptPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    attempt: int
    attempted_at: datetime
    succeeded: bool
    status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None = Field(description="The first bytes of the answer (1 KB by default)")
    error: str | None


class DeliveryAttemptPage(BaseModel):
    items: list[DeliveryAttemptPublic]
    next_cursor: str | None


class WebhookEventPublic(BaseModel):
    event_id: str
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    payload: dict


class WebhookEventPage(BaseModel):
    items: list[WebhookEventPublic]
    next_cursor: str | None


class Redelivery(BaseModel):
    scheduled: int = Field(description="How many events were queued again")


class EventTypeInfo(BaseModel):
    type: str
    description: str
