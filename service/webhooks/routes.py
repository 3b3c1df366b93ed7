"""Webhook subscriptions: register a URL for report events, read the delivery log, redeliver."""

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from service import city_time
from service.auth.subject import AuthSubject, require_roles
from service.city_time import CityTime, CityZone
from service.db import SessionDep
from service.errors import problem_responses
from service.models import WebhookSubscription
from service.webhooks import service
from service.webhooks.outbox import EVENT_TYPES
from service.webhooks.schemas import (
    DeliveryAttemptPage,
    DeliveryAttemptPublic,
    EventTypeInfo,
    Redelivery,
    RotateSecret,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionPublic,
    SubscriptionUpdate,
    WebhookEventPage,
    WebhookEventPublic,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Subscriber = Annotated[AuthSubject, Depends(require_roles(*service.SUBSCRIBER_ROLES))]
PageLimit = Annotated[int, Query(ge=1, le=200)]


def _public(subscription: WebhookSubscription) -> dict:
    return {
        **subscription.model_dump(exclude={"secret", "previous_secret"}),
        "filters": service.filters_of(subscription),
    }


async def _owned(session: SessionDep, subject: Subscriber, subscription_id: UUID) -> WebhookSubscription:
    return await service.get(session, subject=subject, subscription_id=subscription_id)


async def _owned_to_change(session: SessionDep, subject: Subscriber, subscription_id: UUID) -> WebhookSubscription:
    return await service.get(session, subject=subject, subscription_id=subscription_id, lock=service.Lock.CHANGE)


async def _owned_to_delete(session: SessionDep, subject: Subscriber, subscription_id: UUID) -> WebhookSubscription:
    return await service.get(session, subject=subject, subscription_id=subscription_id, lock=service.Lock.DELETE)


Owned = Annotated[WebhookSubscription, Depends(_owned)]
# Held until the commit: a change racing a delete goes first, or answers 404 after it.
OwnedToChange = Annotated[WebhookSubscription, Depends(_owned_to_change)]
OwnedToDelete = Annotated[WebhookSubscription, Depends(_owned_to_delete)]


@router.get("/event-types", response_model=list[EventTypeInfo], summary="The event types one can subscribe to")
async def event_types() -> list[EventTypeInfo]:
    return [EventTypeInfo(type=type_, description=text) for type_, text in EVENT_TYPES.items()]


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    summary="Register a URL for report events (the signing secret is shown only in this answer)",
    responses=problem_responses(401, 403, 422),
)
async def create_subscription(
    data: SubscriptionCreate, request: Request, session: SessionDep, subject: Subscriber
) -> SubscriptionCreated:
    subscription, secret = await service.create(
        session, subject=subject, data=data, settings=request.app.state.settings
    )
    return SubscriptionCreated(**_public(subscription), secret=secret)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    summary="Your subscriptions (an admin sees all)",
    responses=problem_responses(401, 403),
)
async def list_subscriptions(session: SessionDep, subject: Subscriber) -> SubscriptionList:
    subscriptions = await service.list_(session, subject=subject)
    return SubscriptionList(items=[SubscriptionPublic(**_public(item)) for item in subscriptions])


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionPublic,
    summary="One subscription, with why it was disabled if it was",
    responses=problem_responses(401, 403, 404),
)
async def get_subscription(subscription: Owned) -> SubscriptionPublic:
    return SubscriptionPublic(**_public(subscription))


@router.patch(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionPublic,
    summary="Change the URL, event types or filters; `active: true` re-enables a disabled subscription",
    responses=problem_responses(401, 403, 404, 422),
)
async def update_subscription(
    data: SubscriptionUpdate, subscription: OwnedToChange, request: Request, session: SessionDep, subject: Subscriber
) -> SubscriptionPublic:
    updated = await service.update(
        session, subject=subject, subscription=subscription, data=data, settings=request.app.state.settings
    )
    return SubscriptionPublic(**_public(updated))


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    summary="Stop and forget a subscription, its undelivered events and its log",
    responses=problem_responses(401, 403, 404),
)
async def delete_subscription(subscription: OwnedToDelete, session: SessionDep) -> Response:
    await service.delete_(session, subscription=subscription)
    return Response(status_code=204)


@router.post(
    "/subscriptions/{subscription_id}/rotate-secret",
    response_model=SecretRotated,
    summary="A new signing secret; the old one keeps signing alongside it during the overlap",
    responses=problem_responses(401, 403, 404, 422),
)
async def rotate_secret(
    subscription: OwnedToChange,
    request: Request,
    session: SessionDep,
    data: Annotated[RotateSecret | None, Body()] = None,
) -> SecretRotated:
    overlap = data.overlap_seconds if data and data.overlap_seconds is not None else None
    if overlap is None:
        overlap = request.app.state.settings.webhook_secret_overlap_seconds
    secret = await service.rotate_secret(session, subscription=subscription, overlap_seconds=overlap)
    return SecretRotated(secret=secret, previous_secret_expires_at=subscription.previous_secret_expires_at)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryAttemptPage,
    summary="The delivery log: every attempt, newest first",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_deliveries(
    subscription: Owned,
    session: SessionDep,
    limit: PageLimit = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    event_id: Annotated[str | None, Query(max_length=40)] = None,
) -> DeliveryAttemptPage:
    items, next_cursor = await service.list_attempts(
        session, subscription=subscription, limit=limit, cursor=cursor, event_id=event_id
    )
    return DeliveryAttemptPage(
        items=[DeliveryAttemptPublic.model_validate(item, from_attributes=True) for item in items],
        next_cursor=next_cursor,
    )


@router.get(
    "/subscriptions/{subscription_id}/events",
    response_model=WebhookEventPage,
    summary="Events for this subscription and where each stands (pending, delivered, failed), newest first",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_events(
    subscription: Owned,
    session: SessionDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: PageLimit = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> WebhookEventPage:
    items, next_cursor = await service.list_events(
        session, subscription=subscription, status=status, limit=limit, cursor=cursor
    )
    return WebhookEventPage(
        items=[WebhookEventPublic.model_validate(item, from_attributes=True) for item in items], next_cursor=next_cursor
    )


@router.post(
    "/subscriptions/{subscription_id}/events/{event_id}/redeliver",
    status_code=202,
    response_model=Redelivery,
    summary="Send one event again (with the same webhook-id)",
    responses=problem_responses(401, 403, 404, 409),
)
async def redeliver_event(subscription: OwnedToChange, event_id: str, session: SessionDep) -> Redelivery:
    await service.redeliver_event(session, subscription=subscription, event_id=event_id)
    return Redelivery(scheduled=1)


@router.post(
    "/subscriptions/{subscription_id}/redeliver",
    status_code=202,
    response_model=Redelivery,
    summary="Send again every event that was given up since a time",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def redeliver_failed(
    subscription: OwnedToChange,
    session: SessionDep,
    zone: CityZone,
    since: Annotated[CityTime, Query(description=f"Events given up at or after this. {city_time.LOWER_BOUND_HELP}")],
) -> Redelivery:
    count = await service.redeliver_failed(session, subscription=subscription, since=city_time.start_of(since, zone))
    return Redelivery(scheduled=count)
