"""The outbox: report events become webhook events in the same transaction as the change itself.

The lifecycle (service.lifecycle) calls `publish` with each timeline event's webhook events and the
report as it is after the change. The active subscriptions are read once per transaction (and shared
by a process for a second); one `webhook_events` row is added per matching subscription, and each
(subscription, report) stream is noted for the hand-off after the commit (service.handoff). The
sweep finds any hand-off that was lost.
"""

import asyncio
import logging
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from service import handoff
from service.auth.subject import DEPARTMENT_STAFF_ROLES
from service.lifecycle.events import WEBHOOK_TYPES
from service.models import (
    ApiClient,
    Department,
    Jurisdiction,
    Report,
    ReportRow,
    ServiceCategory,
    StaffUser,
    WebhookEvent,
    WebhookSubscription,
)

log = logging.getLogger(__name__)

EVENT_TYPES: dict[str, str] = {str(type_): description for type_, description in WEBHOOK_TYPES.items()}
DELIVER_WEBHOOKS = "deliver_webhooks"
FOLLOW_UP_SECONDS = 0.5

_SUBSCRIPTIONS = "webhooks.subscriptions"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Fields copied from the report when the event happens (nothing personal: no reporter, no description).
_SNAPSHOT_FIELDS = (
    "tracking_code",
    "status",
    "service_code",
    "department_code",
    "jurisdiction_code",
    "priority",
    "due_at",
    "sla_state",
    "created_at",
    "api_client_id",
)


def new_event_id() -> str:
    """`evt_` + a ULID: unique, and sorts by time."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "evt_" + "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass(frozen=True)
class Outgoing:
    """One webhook event of one report event: its type, and the report as it is after the change."""

    type: str
    event: Any  # a ReportEvent, or an EventRow inserted as a plain row
    snapshot: dict[str, Any]
    extra: dict[str, Any]  # what this type adds to the payload (previous status, departments, comment…)

    @property
    def departments(self) -> set[str]:
        """The report's department, and for a transfer both ends of it."""
        codes = {self.snapshot.get("department_code")}
        if self.type == "report.transferred":
            codes |= {self.extra.get("from_department"), self.extra.get("to_department")}
        return {code for code in codes if code}


@dataclass(frozen=True)
class SubscriptionView:
    id: UUID
    event_types: frozenset[str]
    scope: str
    scope_department_code: str | None
    scope_api_client_id: UUID | None
    filter_department_code: str | None
    filter_service_code: str | None
    filter_jurisdiction_code: str | None


def snapshot_of(report: Report | ReportRow | dict) -> dict[str, Any]:
    """The fields a payload shows, as they are now (nothing personal: no reporter, no description)."""
    if isinstance(report, dict):  # a row as intake inserts it: a column it leaves out is still NULL
        return {name: report.get(name) for name in _SNAPSHOT_FIELDS}
    return {name: getattr(report, name) for name in _SNAPSHOT_FIELDS}


def matches(subscription: SubscriptionView, item: Outgoing, jurisdictions: set[str]) -> bool:
    """Whether this subscription wants this event and may see its report. Pure."""
    if item.type not in subscription.event_types:
        return False
    departments = item.departments
    if subscription.scope == "department" and subscription.scope_department_code not in departments:
        return False
    if subscription.scope == "submitter" and item.snapshot.get("api_client_id") != subscription.scope_api_client_id:
        return False
    if subscription.filter_department_code and subscription.filter_department_code not in departments:
        return False
    if subscription.filter_service_code and subscription.filter_service_code != item.snapshot.get("service_code"):
        return False
    if subscription.filter_jurisdiction_code and subscription.filter_jurisdiction_code not in jurisdictions:  # noqa: SIM103 - one guard per filter
        return False
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _named(row: Any) -> dict | None:
    return {"code": row.code, "name_vi": row.name_vi, "name_en": row.name_en} if row is not None else None


def build_payload(item: Outgoing, *, category: Any, department: Any, public_base_url: str) -> dict:
    """The body receivers get: public facts about the report, never the reporter or internal notes."""
    snap = item.snapshot
    data: dict[str, Any] = {
        "tracking_code": snap["tracking_code"],
        "status": snap["status"],
        "category": _named(category),
        "department": _named(department),
        "jurisdiction_code": snap.get("jurisdiction_code"),
        "priority": snap.get("priority"),
        "due_at": _iso(snap.get("due_at")),
        "sla_state": snap.get("sla_state"),
        "created_at": _iso(snap.get("created_at")),
        "url": f"{public_base_url.rstrip('/')}/v1/reports/{snap['tracking_code']}",
        "event_code": item.event.type,
        **item.extra,
    }
    return {"id": new_event_id(), "type": item.type, "timestamp": _iso(item.event.created_at), "data": data}


@dataclass
class _Config:
    public_base_url: str
    subscription_cache_seconds: float = 0
    # (valid until, on the monotonic clock; _generation; the active subscriptions), shared by the engine's sessions
    subscriptions: tuple[float, int, list[SubscriptionView]] | None = None


_configs: "weakref.WeakKeyDictionary[Engine, _Config]" = weakref.WeakKeyDictionary()
_generation = 0  # bumped by every committed change to a subscription or an API key in this process


def configure(engine: AsyncEngine, public_base_url: str, *, subscription_cache_seconds: float = 0) -> None:
    """Payload links on this engine use `public_base_url`; its sessions share one list of active
    subscriptions for `subscription_cache_seconds` (the API's lifespan, the worker's startup)."""
    _configs[engine.sync_engine] = _Config(public_base_url, subscription_cache_seconds)


def _config(session: AsyncSession) -> _Config:
    bind = session.bind.sync_engine if isinstance(session.bind, AsyncEngine) else None
    config = _configs.get(bind) if bind is not None else None
    if config is None:
        from service.settings import get_settings

        config = _Config(get_settings().public_base_url)
    return config


async def _active_subscriptions(session: AsyncSession) -> list[SubscriptionView]:
    """Once per transaction, and from the process-wide cache while it is fresh."""
    cached = session.info.get(_SUBSCRIPTIONS)
    if cached is None:
        config = _config(session)
        shared = config.subscriptions
        if shared is not None and shared[0] > time.monotonic() and shared[1] == _generation:
            cached = shared[2]
        else:
            generation = _generation  # read before the query: a change committed meanwhile invalidates this load
            cached = await _load_subscriptions(session)
            if config.subscription_cache_seconds:
                config.subscriptions = (time.monotonic() + config.subscription_cache_seconds, generation, cached)
        session.info[_SUBSCRIPTIONS] = cached
    return cached


async def _load_subscriptions(session: AsyncSession) -> list[SubscriptionView]:
    rows = (
        await session.execute(
            select(
                col(WebhookSubscription.id),
                col(WebhookSubscription.event_types),
                col(WebhookSubscription.scope),
                col(WebhookSubscription.scope_department_code),
                col(WebhookSubscription.scope_api_client_id),
                col(WebhookSubscription.filter_department_code),
                col(WebhookSubscription.filter_service_code),
                col(WebhookSubscription.filter_jurisdiction_code),
            ).where(
                col(WebhookSubscription.active).is_(True),
                # A revoked key's subscriptions hear nothing more.
                ~exists().where(
                    col(ApiClient.id) == col(WebhookSubscription.owner_id), col(ApiClient.revoked_at).is_not(None)
                ),
                # Nor does a staff member's once they may no longer see what it reaches: deactivated,
                # out of its department, or no longer in a role that may hear about it.
                ~exists().where(
                    col(WebhookSubscription.owner_kind) == "staff",
                    col(StaffUser.id) == col(WebhookSubscription.owner_id),
                    or_(
                        col(StaffUser.active).is_(False),
                        and_(col(WebhookSubscription.scope) == "all", col(StaffUser.role) != "admin"),
                        and_(
                            col(WebhookSubscription.scope) == "department",
                            or_(
                                col(StaffUser.role).not_in(DEPARTMENT_STAFF_ROLES),
                                col(StaffUser.department_code).is_(None),
                                col(StaffUser.department_code) != col(WebhookSubscription.scope_department_code),
                            ),
                        ),
                    ),
                ),
            )
        )
    ).all()
    return [SubscriptionView(row[0], frozenset(row[1] or ()), *row[2:]) for row in rows]


def forget_subscriptions() -> None:
    """Make every engine of this process read the subscriptions again (the API's and the worker's may
    share a process, as in the tests)."""
    global _generation
    _generation += 1


def subscriptions_changed(session: AsyncSession) -> None:
    """This transaction changes who hears what (a subscription, an API key): forget the cached list at commit."""
    session.info.pop(_SUBSCRIPTIONS, None)
    handoff.after_commit(session, forget_subscriptions)


async def _jurisdiction_and_parents(session: AsyncSession, code: str | None) -> set[str]:
    found: set[str] = set()
    while code and code not in found and len(found) < 8:
        found.add(code)
        row = await session.get(Jurisdiction, code)
        code = row.parent_code if row else None
    return found


async def _still_there(session: AsyncSession, subscription_ids: set[UUID]) -> set[UUID]:
    """Which of these subscriptions still exist, kept from a delete until the commit (FOR KEY SHARE, the
    lock the events' foreign key takes anyway; on SQLite the change's own writes, flushed before this
    read, hold the one write lock). The list they came from may be older than a delete: read earlier in
    this transaction, or a process's cached copy."""
    rows = await session.execute(
        select(col(WebhookSubscription.id))
        .where(col(WebhookSubscription.id).in_(subscription_ids))
        .with_for_update(read=True, key_share=True)
    )
    return set(rows.scalars().all())


async def publish(session: AsyncSession, items: list[Outgoing]) -> None:
    """Write the webhook rows of these events, in the transaction of the change itself, and note their
    streams for the hand-off after the commit."""
    if not items:
        return
    subscriptions = await _active_subscriptions(session)
    if not subscriptions:
        return
    public_base_url = _config(session).public_base_url
    planned: list[tuple[Outgoing, list[SubscriptionView]]] = []
    for item in items:
        jurisdictions = (
            await _jurisdiction_and_parents(session, item.snapshot.get("jurisdiction_code"))
            if any(sub.filter_jurisdiction_code for sub in subscriptions)
            else set()
        )
        if targets := [sub for sub in subscriptions if matches(sub, item, jurisdictions)]:
            planned.append((item, targets))
    if not planned:
        return
    remaining = await _still_there(session, {sub.id for _, targets in planned for sub in targets})
    for item, targets in planned:
        targets = [sub for sub in targets if sub.id in remaining]
        if not targets:
            continue
        snap = item.snapshot
        category = await session.get(ServiceCategory, snap["service_code"]) if snap.get("service_code") else None
        department = await session.get(Department, snap["department_code"]) if snap.get("department_code") else None
        payload = build_payload(item, category=category, department=department, public_base_url=public_base_url)
        report_id = item.event.report_id
        for subscription in targets:
            session.add(
                WebhookEvent(
                    event_id=payload["id"],
                    subscription_id=subscription.id,
                    report_id=report_id,
                    type=item.type,
                    payload=payload,
                    created_at=item.event.created_at,
                    next_attempt_at=item.event.created_at,
                )
            )
            handoff.webhook_stream(session, subscription.id, report_id)


# --- after the commit: the stream's job ----------------------------------------------------------


def deliver_job_id(subscription_id: UUID | str, report_id: UUID | str) -> str:
    return f"{DELIVER_WEBHOOKS}:{subscription_id}:{report_id}"


async def enqueue_stream(
    arq: ArqRedis, queue_name: str, subscription_id: UUID | str, report_id: UUID | str, *, follow_up: bool = True
) -> bool:
    """Queue the stream's job. The job id keeps one job per stream; when one already exists (it may be
    running and past its last look for new events), a short follow-up makes sure nothing waits for the sweep.
    The two may run at once: only the one holding the stream's lease sends (service.webhooks.lease)."""
    job_id = deliver_job_id(subscription_id, report_id)
    args = (DELIVER_WEBHOOKS, str(subscription_id), str(report_id))
    try:
        job = await asyncio.wait_for(arq.enqueue_job(*args, _job_id=job_id, _queue_name=queue_name), 2)
        if job is None and follow_up:
            await asyncio.wait_for(
                arq.enqueue_job(
                    *args, _job_id=job_id + ":follow-up", _queue_name=queue_name, _defer_by=FOLLOW_UP_SECONDS
                ),
                2,
            )
        return True
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("webhook hand-off failed, the sweep will pick it up: %s", type(exc).__name__)
        return False
