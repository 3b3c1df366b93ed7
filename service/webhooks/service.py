"""Subscriptions, their delivery log and redelivery. Functions here query and decide; they only flush."""

from datetime import UTC, datetime, timedelta
from enum import Enum
from uuid import UUID

from sqlalchemy import ColumnElement, delete, true
from sqlalchemy import update as sql_update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service import handoff
from service.auth.subject import AuthSubject
from service.db import lock_rows
from service.errors import Conflict, Forbidden, NotFound, Unprocessable
from service.models import (
    Department,
    Jurisdiction,
    ServiceCategory,
    WebhookDeliveryAttempt,
    WebhookEvent,
    WebhookStream,
    WebhookSubscription,
)
from service.models.types import utcnow
from service.settings import Settings
from service.webhooks import outbox, safety, signing
from service.webhooks.schemas import Filters, SubscriptionCreate, SubscriptionUpdate

SUBSCRIBER_ROLES = ("admin", "department_system", "officer", "supervisor", "citizen_app")
# Callers that hear only about their own department's tickets: its system's key and its staff.
DEPARTMENT_ROLES = ("department_system", "officer", "supervisor")
RESCHEDULE_BATCH = 500


def _scope_for(subject: AuthSubject) -> tuple[str, str | None, UUID | None]:
    """What an owner may hear about: everything (admin), its department (its system's key, its officers
    and supervisors), or the reports it submitted."""
    if subject.role == "admin":
        return "all", None, None
    if subject.role in DEPARTMENT_ROLES and subject.department_code:
        return "department", subject.department_code, None
    if subject.role == "citizen_app" and subject.kind == "api_client":
        return "submitter", None, subject.id
    raise Forbidden("webhook_scope_forbidden", "This caller may not subscribe to webhooks.")


def _readable(subject: AuthSubject) -> ColumnElement[bool]:
    if subject.role == "admin":
        return true()
    return (col(WebhookSubscription.owner_kind) == subject.kind) & (col(WebhookSubscription.owner_id) == subject.id)


async def _check_url(url: str, settings: Settings) -> str:
    try:
        await safety.check(url, settings)
    except safety.UnsafeUrl as exc:
        raise Unprocessable(exc.code, "url", exc.detail) from exc
    except safety.Unresolvable as exc:
        raise Unprocessable("webhook_url_unresolvable", "url", str(exc)) from exc
    return url


async def _check_filters(session: AsyncSession, filters: Filters, subject: AuthSubject) -> None:
    if subject.role in DEPARTMENT_ROLES and filters.department_code not in (None, subject.department_code):
        raise Forbidden("webhook_scope_forbidden", "Department staff and systems hear only about their own department.")
    for code, model, error, field in (
        (filters.department_code, Department, "unknown_department", "filters.department_code"),
        (filters.service_code, ServiceCategory, "unknown_service_code", "filters.service_code"),
    ):
        if code is not None and await session.get(model, code) is None:
            raise Unprocessable(error, field)
    if filters.jurisdiction_code is not None:
        # A ward, or a parent (the city, a district) that jurisdictions name.
        known = select(Jurisdiction.code).where(
            (col(Jurisdiction.code) == filters.jurisdiction_code)
            | (col(Jurisdiction.parent_code) == filters.jurisdiction_code)
        )
        if (await session.exec(known.limit(1))).first() is None:
            raise Unprocessable("unknown_jurisdiction", "filters.jurisdiction_code")


def _apply_filters(subscription: WebhookSubscription, filters: Filters) -> None:
    subscription.filter_department_code = filters.department_code
    subscription.filter_service_code = filters.service_code
    subscription.filter_jurisdiction_code = filters.jurisdiction_code


def filters_of(subscription: WebhookSubscription) -> Filters:
    return Filters(
        department_code=subscription.filter_department_code,
        service_code=subscription.filter_service_code,
        jurisdiction_code=subscription.filter_jurisdiction_code,
    )


async def create(
    session: AsyncSession, *, subject: AuthSubject, data: SubscriptionCreate, settings: Settings
) -> tuple[WebhookSubscription, str]:
    """The new subscription and its secret (returned once, never shown again)."""
    scope, department_code, api_client_id = _scope_for(subject)
    await _check_filters(session, data.filters, subject)
    secret = signing.new_secret()
    subscription = WebhookSubscription(
        url=await _check_url(data.url, settings),
        description=data.description,
        event_types=list(dict.fromkeys(data.event_types)),
        owner_kind=subject.kind,
        owner_id=subject.id,
        scope=scope,
        scope_department_code=department_code,
        scope_api_client_id=api_client_id,
        secret=secret,
    )
    _apply_filters(subscription, data.filters)
    session.add(subscription)
    outbox.subscriptions_changed(session)
    await session.flush()
    return subscription, secret


async def list_(session: AsyncSession, *, subject: AuthSubject) -> list[WebhookSubscription]:
    rows = await session.exec(
        select(WebhookSubscription).where(_readable(subject)).order_by(col(WebhookSubscription.created_at))
    )
    return list(rows.all())


class Lock(Enum):
    """How a subscription read for a change is held until the commit, so that a concurrent delete either
    waits for the change or is waited for (and the change then finds nothing): never a change of a row
    deleted meanwhile. PostgreSQL locks the row; SQLite takes its one write lock (service.db.lock_rows)."""

    CHANGE = "change"  # FOR NO KEY UPDATE: deliveries and new events, which only refer to it, go on
    DELETE = "delete"  # FOR UPDATE: whatever refers to it waits, or finds it gone
    KEEP = "keep"  # FOR KEY SHARE: a delivery taking its lease or recording an attempt; only a delete waits


async def _load(
    session: AsyncSession, subscription_id: UUID, *, where: ColumnElement[bool] | None = None, lock: Lock | None = None
) -> WebhookSubscription | None:
    match = col(WebhookSubscription.id) == subscription_id
    statement = select(WebhookSubscription).where(match, true() if where is None else where)
    if lock is not None:
        await lock_rows(session, col(WebhookSubscription.updated_at), match)
        statement = statement.with_for_update(key_share=lock is not Lock.DELETE, read=lock is Lock.KEEP)
        statement = statement.execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


async def get(
    session: AsyncSession, *, subject: AuthSubject, subscription_id: UUID, lock: Lock | None = None
) -> WebhookSubscription:
    found = await _load(session, subscription_id, where=_readable(subject), lock=lock)
    if found is None:
        raise NotFound("webhook_subscription_not_found")
    return found


async def kept(session: AsyncSession, subscription_id: UUID) -> WebhookSubscription | None:
    """The subscription, safe from a delete until the commit (Lock.KEEP), or None when it is gone."""
    return await _load(session, subscription_id, lock=Lock.KEEP)


async def update(
    session: AsyncSession,
    *,
    subject: AuthSubject,
    subscription: WebhookSubscription,
    data: SubscriptionUpdate,
    settings: Settings,
) -> WebhookSubscription:
    now = utcnow()
    if data.url is not None:
        subscription.url = await _check_url(data.url, settings)
    if data.event_types is not None:
        subscription.event_types = list(dict.fromkeys(data.event_types))
    if data.filters is not None:
        await _check_filters(session, data.filters, subject)
        _apply_filters(subscription, data.filters)
    if "description" in data.model_fields_set:
        subscription.description = data.description
    if data.active is True and not subscription.active:
        await _enable(session, subscription, now)
    elif data.active is False and subscription.active:
        disable(subscription, "Disabled by its owner.", now)
    subscription.updated_at = now
    session.add(subscription)
    outbox.subscriptions_changed(session)
    await session.flush()
    return subscription


def disable(subscription: WebhookSubscription, reason: str, now: datetime) -> None:
    subscription.active = False
    subscription.disabled_at = now
    subscription.disabled_reason = reason[:500]
    subscription.updated_at = now
    # Events from now on are not written for it: this process reads the list again at once (the
    # others within WEBHOOK_SUBSCRIPTION_CACHE_SECONDS), even before a delivery job's commit.
    outbox.forget_subscriptions()


async def _enable(session: AsyncSession, subscription: WebhookSubscription, now: datetime) -> None:
    """Resume where delivery stopped: waiting events are due now and their streams are queued."""
    subscription.active = True
    subscription.disabled_at = subscription.disabled_reason = None
    subscription.failing_since = None
    subscription.consecutive_failures = 0
    pending = (col(WebhookEvent.subscription_id) == subscription.id) & (col(WebhookEvent.status) == "pending")
    # A fresh retry schedule: the receiver is presumed fixed.
    await session.execute(sql_update(WebhookEvent).where(pending).values(next_attempt_at=now, attempts=0))
    reports = (
        await session.exec(select(WebhookEvent.report_id).where(pending).distinct().limit(RESCHEDULE_BATCH))
    ).all()
    for report_id in reports:
        handoff.webhook_stream(session, subscription.id, report_id)


async def delete_(session: AsyncSession, *, subscription: WebhookSubscription) -> None:
    await session.execute(
        delete(WebhookDeliveryAttempt).where(col(WebhookDeliveryAttempt.subscription_id) == subscription.id)
    )
    await session.execute(delete(WebhookEvent).where(col(WebhookEvent.subscription_id) == subscription.id))
    await session.execute(delete(WebhookStream).where(col(WebhookStream.subscription_id) == subscription.id))
    await session.delete(subscription)
    outbox.subscriptions_changed(session)
    await session.flush()


async def rotate_secret(session: AsyncSession, *, subscription: WebhookSubscription, overlap_seconds: float) -> str:
    """A new secret; the current one keeps signing alongside it for `overlap_seconds`."""
    now = utcnow()
    new = signing.new_secret()
    if overlap_seconds > 0:
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_expires_at = now + timedelta(seconds=overlap_seconds)
    else:
        subscription.previous_secret = subscription.previous_secret_expires_at = None
    subscription.secret = new
    subscription.updated_at = now
    session.add(subscription)
    await session.flush()
    return new


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise Unprocessable("invalid_cursor", "cursor")
    return int(value)


async def list_attempts(
    session: AsyncSession,
    *,
    subscription: WebhookSubscription,
    limit: int,
    cursor: str | None,
    event_id: str | None = None,
) -> tuple[list[WebhookDeliveryAttempt], str | None]:
    """Attempts, newest first; `cursor` continues where the previous page ended."""
    query = select(WebhookDeliveryAttempt).where(WebhookDeliveryAttempt.subscription_id == subscription.id)
    if (before := _cursor(cursor)) is not None:
        query = query.where(col(WebhookDeliveryAttempt.id) < before)
    if event_id:
        query = query.where(WebhookDeliveryAttempt.event_id == event_id)
    rows = list((await session.exec(query.order_by(col(WebhookDeliveryAttempt.id).desc()).limit(limit + 1))).all())
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def list_events(
    session: AsyncSession, *, subscription: WebhookSubscription, status: str | None, limit: int, cursor: str | None
) -> tuple[list[WebhookEvent], str | None]:
    query = select(WebhookEvent).where(WebhookEvent.subscription_id == subscription.id)
    if status:
        query = query.where(WebhookEvent.status == status)
    if (before := _cursor(cursor)) is not None:
        query = query.where(col(WebhookEvent.id) < before)
    rows = list((await session.exec(query.order_by(col(WebhookEvent.id).desc()).limit(limit + 1))).all())
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _require_active(subscription: WebhookSubscription) -> None:
    if not subscription.active:
        raise Conflict("webhook_subscription_disabled", subscription.disabled_reason)


def _requeue(event: WebhookEvent, now: datetime) -> None:
    event.status = "pending"
    event.attempts = 0
    event.next_attempt_at = now


async def redeliver_event(session: AsyncSession, *, subscription: WebhookSubscription, event_id: str) -> WebhookEvent:
    _require_active(subscription)
    event = (
        await session.exec(
            select(WebhookEvent).where(
                WebhookEvent.subscription_id == subscription.id, WebhookEvent.event_id == event_id
            )
        )
    ).first()
    if event is None:
        raise NotFound("webhook_event_not_found")
    _requeue(event, utcnow())
    session.add(event)
    handoff.webhook_stream(session, subscription.id, event.report_id)
    await session.flush()
    return event


async def redeliver_failed(session: AsyncSession, *, subscription: WebhookSubscription, since: datetime) -> int:
    """Queue again every event given up since `since`; returns how many."""
    _require_active(subscription)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    events = (
        await session.exec(
            select(WebhookEvent)
            .where(
                WebhookEvent.subscription_id == subscription.id,
                WebhookEvent.status == "failed",
                col(WebhookEvent.created_at) >= since,
            )
            .order_by(col(WebhookEvent.id))
        )
    ).all()
    now = utcnow()
    for event in events:
        _requeue(event, now)
        session.add(event)
        handoff.webhook_stream(session, subscription.id, event.report_id)
    await session.flush()
    return len(events)


async def due_streams(session: AsyncSession, *, older_than: datetime, limit: int) -> list[tuple[UUID, UUID]]:
    """Streams of active subscriptions with an event due since `older_than`: what the sweep re-queues."""
    rows = await session.exec(
        select(WebhookEvent.subscription_id, WebhookEvent.report_id)
        .join(WebhookSubscription, col(WebhookSubscription.id) == col(WebhookEvent.subscription_id))
        .where(
            WebhookEvent.status == "pending",
            col(WebhookEvent.next_attempt_at) <= older_than,
            col(WebhookSubscription.active).is_(True),
        )
        .distinct()
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows.all()]
