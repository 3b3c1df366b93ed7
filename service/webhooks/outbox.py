"""The outbox: report events become webhook events in the same transaction as the change itself.

`record_event` (service.reports.service) calls `capture` for every timeline event. Capture only
notes the event and a snapshot of the report (no I/O: record_event is synchronous); just before the
session flushes, the pending notes are matched against the active subscriptions (one indexed query
per transaction) and one `webhook_events` row is added per match, inside that same flush. After the
commit the (subscription, report) streams are handed to arq; the sweep finds any hand-off that was lost.
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
from sqlalchemy import event as sa_event
from sqlalchemy import exists, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlmodel import col

from service.models import ApiClient, Department, Jurisdiction, Report, ReportEvent, ServiceCategory, WebhookEvent, WebhookSubscription

log = logging.getLogger(__name__)

EVENT_TYPES: dict[str, str] = {
    "report.created": "A citizen filed a report.",
    "report.classified": "The report's category was decided.",
    "report.assigned": "The report was routed to a department.",
    "report.status_changed": "The report's status changed.",
    "report.transferred": "The report moved to another department.",
    "report.commented": "Staff posted a public reply.",
    "report.sla_at_risk": "Most of the time to resolve has passed.",
    "report.sla_breached": "The report is past its due date.",
    "report.resolved": "The department resolved the report.",
    "report.closed": "The report was closed.",
    "report.reopened": "The report was reopened.",
}
# ReportEvent.type -> webhook event type (events not listed here are internal steps, never sent).
REPORT_EVENT_TYPES = {
    "received": "report.created",
    "classified": "report.classified",
    "assigned": "report.assigned",
    "needs_triage": "report.status_changed",
    "duplicate": "report.status_changed",
    "status_changed": "report.status_changed",
    "transferred": "report.transferred",
    "public_reply": "report.commented",
    "sla_at_risk": "report.sla_at_risk",
    "sla_breached": "report.sla_breached",
    "resolved": "report.resolved",
    "closed": "report.closed",
    "reopened": "report.reopened",
}
DELIVER_WEBHOOKS = "deliver_webhooks"
FOLLOW_UP_SECONDS = 0.5

_PENDING = "webhooks.captured"
_SUBSCRIPTIONS = "webhooks.subscriptions"
_STREAMS = "webhooks.streams"
_CHANGED = "webhooks.subscriptions_changed"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Fields copied from the report when the event happens (nothing personal: no reporter, no description).
_SNAPSHOT_FIELDS = (
    "tracking_code", "status", "service_code", "department_code", "jurisdiction_code", "priority", "due_at",
    "sla_state", "created_at", "api_client_id",
)


def new_event_id() -> str:
    """`evt_` + a ULID: unique, and sorts by time."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "evt_" + "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def webhook_type_for(event: ReportEvent) -> str | None:
    type_ = REPORT_EVENT_TYPES.get(event.type)
    if type_ == "report.classified" and not (event.data or {}).get("service_code"):
        return None  # sent to a dispatcher for triage: nothing was decided yet
    if type_ == "report.commented" and not event.public:
        return None
    return type_


@dataclass
class Captured:
    """A report event noted by capture(), waiting for the flush that writes it."""

    event: ReportEvent
    type: str
    event_id: str
    snapshot: dict[str, Any]
    report: Report | None = None

    @property
    def departments(self) -> set[str]:
        """The report's department, and for a transfer both ends of it."""
        codes = {self.snapshot.get("department_code")}
        if self.type == "report.transferred":
            codes |= {(self.event.data or {}).get("from"), (self.event.data or {}).get("to")}
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


def capture(session: Any, report: Report | dict, event: ReportEvent) -> None:
    """Note a report event for the webhooks; the rows are written by the next flush of this session.

    `report` is a Report, or the row values of one being inserted (the intake writer's plain insert)."""
    type_ = webhook_type_for(event)
    if type_ is None:
        return
    if isinstance(report, dict):
        snapshot, report = {name: report[name] for name in _SNAPSHOT_FIELDS}, None
    else:
        loaded = inspect(report).dict  # what is loaded now, without I/O; the rest is read at flush time
        snapshot = {name: loaded[name] for name in _SNAPSHOT_FIELDS if name in loaded}
    session.info.setdefault(_PENDING, []).append(Captured(event, type_, new_event_id(), snapshot, report))


def matches(subscription: SubscriptionView, item: Captured, jurisdictions: set[str]) -> bool:
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
    if subscription.filter_jurisdiction_code and subscription.filter_jurisdiction_code not in jurisdictions:
        return False
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _named(row: Any) -> dict | None:
    return {"code": row.code, "name_vi": row.name_vi, "name_en": row.name_en} if row is not None else None


def build_payload(item: Captured, *, category: Any, department: Any, public_base_url: str) -> dict:
    """The body receivers get: public facts about the report, never the reporter or internal notes."""
    snap, event_data = item.snapshot, item.event.data or {}
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
    }
    if item.type == "report.status_changed":
        data["previous_status"] = event_data.get("from") or ("received" if item.event.type in ("needs_triage", "duplicate") else None)
        if item.event.type == "duplicate":
            data["duplicate_of"] = event_data.get("original")
    elif item.type == "report.transferred":
        data["from_department"] = event_data.get("from")
        data["to_department"] = event_data.get("to")
    elif item.type == "report.commented":
        data["comment"] = item.event.message
    return {"id": item.event_id, "type": item.type, "timestamp": _iso(item.event.created_at), "data": data}


def _active_subscriptions(session: Session) -> list[SubscriptionView]:
    """Once per transaction, and from the process-wide cache when the bound queue allows one."""
    cached = session.info.get(_SUBSCRIPTIONS)
    if cached is None:
        queue = _queues.get(session.bind) if session.bind is not None else None
        shared = queue.subscriptions if queue is not None else None
        if shared is not None and shared[0] > time.monotonic() and shared[1] == _generation:
            cached = shared[2]
        else:
            generation = _generation  # read before the query: a change committed meanwhile invalidates this load
            cached = _load_subscriptions(session)
            if queue is not None and queue.subscription_cache_seconds:
                queue.subscriptions = (time.monotonic() + queue.subscription_cache_seconds, generation, cached)
        session.info[_SUBSCRIPTIONS] = cached
    return cached


def _load_subscriptions(session: Session) -> list[SubscriptionView]:
    rows = session.execute(
        select(
            WebhookSubscription.id, WebhookSubscription.event_types, WebhookSubscription.scope,
            WebhookSubscription.scope_department_code, WebhookSubscription.scope_api_client_id,
            WebhookSubscription.filter_department_code, WebhookSubscription.filter_service_code,
            WebhookSubscription.filter_jurisdiction_code,
        ).where(
            col(WebhookSubscription.active).is_(True),
            # A revoked key's subscriptions hear nothing more.
            ~exists().where(
                col(ApiClient.id) == col(WebhookSubscription.owner_id), col(ApiClient.revoked_at).is_not(None)
            ),
        )
    ).all()
    return [SubscriptionView(row[0], frozenset(row[1] or ()), *row[2:]) for row in rows]


@sa_event.listens_for(Session, "before_flush")
def _note_subscription_changes(session: Session, _flush_context: Any, _instances: Any) -> None:
    """A flush that writes a subscription or an API key makes this process's cached list stale at commit."""
    if any(isinstance(row, (WebhookSubscription, ApiClient)) for row in (*session.new, *session.dirty, *session.deleted)):
        session.info[_CHANGED] = True


def forget_subscriptions() -> None:
    """Make every engine of this process read the subscriptions again (the API's and the worker's may
    share a process, as in the tests)."""
    global _generation
    _generation += 1


def _jurisdiction_and_parents(session: Session, code: str | None) -> set[str]:
    found: set[str] = set()
    while code and code not in found and len(found) < 8:
        found.add(code)
        row = session.get(Jurisdiction, code)
        code = row.parent_code if row else None
    return found


@sa_event.listens_for(Session, "before_flush")
def _write_captured_on_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    write_captured(session)


def write_captured(session: Session) -> None:
    """Add the webhook rows for the events noted so far. Runs before every flush; called directly
    after events inserted as plain rows (service.reports.service.add_new), which no flush would see."""
    pending: list[Captured] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    subscriptions = _active_subscriptions(session)
    if not subscriptions:
        return
    public_base_url = _bound_base_url(session)
    streams: set[tuple[UUID, UUID]] = session.info.setdefault(_STREAMS, set())
    for item in pending:
        if isinstance(item.event, ReportEvent) and item.event not in session:
            continue  # its report event was rolled back with a savepoint
        for name in _SNAPSHOT_FIELDS:
            if name not in item.snapshot and item.report is not None:
                item.snapshot[name] = getattr(item.report, name)  # inside the flush: loading is allowed here
        snap = item.snapshot
        jurisdictions = (
            _jurisdiction_and_parents(session, snap.get("jurisdiction_code"))
            if any(sub.filter_jurisdiction_code for sub in subscriptions)
            else set()
        )
        targets = [sub for sub in subscriptions if matches(sub, item, jurisdictions)]
        if not targets:
            continue
        category = session.get(ServiceCategory, snap["service_code"]) if snap.get("service_code") else None
        department = session.get(Department, snap["department_code"]) if snap.get("department_code") else None
        payload = build_payload(item, category=category, department=department, public_base_url=public_base_url)
        report_id = item.event.report_id
        for subscription in targets:
            session.add(
                WebhookEvent(
                    event_id=item.event_id,
                    subscription_id=subscription.id,
                    report_id=report_id,
                    type=item.type,
                    payload=payload,
                    created_at=item.event.created_at,
                    next_attempt_at=item.event.created_at,
                )
            )
            streams.add((subscription.id, report_id))


def schedule(session: Any, subscription_id: UUID, report_id: UUID) -> None:
    """Hand this stream to the workers once the session commits (redeliveries, re-enabling)."""
    session.info.setdefault(_STREAMS, set()).add((subscription_id, report_id))


# --- after the commit: the hand-off to arq ---------------------------------------------------------


@dataclass
class _Queue:
    arq: ArqRedis
    queue_name: str
    public_base_url: str
    subscription_cache_seconds: float = 0
    # (valid until, on the monotonic clock; _generation; the active subscriptions), shared by the engine's sessions
    subscriptions: tuple[float, int, list[SubscriptionView]] | None = None


_queues: "weakref.WeakKeyDictionary[Engine, _Queue]" = weakref.WeakKeyDictionary()
_generation = 0  # bumped by every committed change to a subscription or an API key in this process
_handoffs: set[asyncio.Task] = set()


def bind_queue(
    engine: AsyncEngine, arq: ArqRedis, queue_name: str, public_base_url: str, *, subscription_cache_seconds: float = 0
) -> None:
    """Sessions on this engine hand committed webhook events to this queue (API lifespan, worker startup)
    and share one list of active subscriptions for `subscription_cache_seconds`."""
    _queues[engine.sync_engine] = _Queue(arq, queue_name, public_base_url, subscription_cache_seconds)


def _bound_base_url(session: Session) -> str:
    queue = _queues.get(session.bind) if session.bind is not None else None
    if queue is not None:
        return queue.public_base_url
    from service.settings import get_settings

    return get_settings().public_base_url


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
                arq.enqueue_job(*args, _job_id=job_id + ":follow-up", _queue_name=queue_name, _defer_by=FOLLOW_UP_SECONDS),
                2,
            )
        return True
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("webhook hand-off failed, the sweep will pick it up: %s", type(exc).__name__)
        return False


async def _hand_off(queue: _Queue, streams: set[tuple[UUID, UUID]]) -> None:
    for subscription_id, report_id in sorted(streams, key=str):
        if not await enqueue_stream(queue.arq, queue.queue_name, subscription_id, report_id):
            return


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    session.info.pop(_SUBSCRIPTIONS, None)
    if session.info.pop(_CHANGED, None):
        forget_subscriptions()
    streams = session.info.pop(_STREAMS, None)
    if not streams:
        return
    queue = _queues.get(session.bind) if session.bind is not None else None
    if queue is None:
        return  # no queue bound (a script, a migration): the sweep delivers
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(_hand_off(queue, streams))
    _handoffs.add(task)
    task.add_done_callback(_handoffs.discard)


@sa_event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        for key in (_PENDING, _SUBSCRIPTIONS, _STREAMS, _CHANGED):
            session.info.pop(key, None)


async def wait_for_handoffs() -> None:
    """Wait until the hand-offs started by commits so far have reached Redis (or failed)."""
    while _handoffs:
        await asyncio.gather(*list(_handoffs), return_exceptions=True)
