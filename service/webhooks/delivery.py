"""Sending: one HTTP attempt, how its outcome is judged, and when to try again.

A stream is one subscription's events about one report. Its events go out oldest first; the next
one is sent only after the previous one succeeded or was given up, so receivers see them in order,
and only the job holding the stream's lease (service.webhooks.lease) sends, so an event goes out once
unless an attempt really failed (a timeout, a worker killed mid-attempt).
"""

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import WebhookDeliveryAttempt, WebhookEvent, WebhookSubscription
from service.models.types import utcnow
from service.settings import Settings
from service.webhooks import lease, safety, signing
from service.webhooks.service import disable, kept

log = logging.getLogger(__name__)

USER_AGENT = "citizen-intake-webhooks/1"


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """One per worker process. No redirects, no proxies from the environment, bounded waits."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.webhook_connect_timeout_seconds,
            read=settings.webhook_read_timeout_seconds,
            write=settings.webhook_read_timeout_seconds,
            pool=settings.webhook_connect_timeout_seconds,
        ),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
    )


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    latency_ms: int | None = None
    excerpt: str | None = None
    error: str | None = None
    retry_after: float | None = None
    refused: bool = False  # the target failed the safety check: never sent

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Timeouts, connection errors, 408, 429 and 5xx are worth another try; other answers are final."""
        if self.refused:
            return False
        if self.status_code is None:
            return True
        return self.status_code in (408, 429) or self.status_code >= 500

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def serialize(payload: dict) -> str:
    """The exact text that is signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year too large for a datetime overflows
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def retry_delay(attempts: int, outcome: Outcome, settings: Settings, rng: random.Random | None = None) -> float | None:
    """Seconds until the next try after `attempts` failed ones, or None when the event is given up."""
    schedule = settings.webhook_retry_schedule_seconds
    if not outcome.retryable or attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    jitter = settings.webhook_retry_jitter
    delay = base * (1 + (rng or random).uniform(-jitter, jitter))
    if outcome.retry_after is not None:
        # Never earlier than the receiver asked; a far-off date is capped so the event is not parked forever.
        delay = max(delay, min(outcome.retry_after, settings.webhook_max_retry_after_seconds))
    return max(delay, 0.0)


async def _read_capped(response: httpx.Response, limit: int) -> str:
    body = bytearray()
    if limit > 0:
        # Raw bytes: a compressed answer is never inflated, and reading stops at the cap.
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) >= limit:
                break
    return bytes(body[:limit]).decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    """`Type: message`; for a group (anyio's connection attempts), its members' instead of "1 sub-exception"."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(member) for member in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def attempt(http: httpx.AsyncClient, url: str, body: str, headers: dict[str, str], settings: Settings) -> Outcome:
    """POST the body once; every failure becomes an Outcome, never an exception.

    One nobody foresaw (from a library, a check) is a failed attempt like a connection error: logged
    with the event, retried and counted toward disabling the subscription. Raised, it would end the
    job and leave the event pending with the stream's lease held."""
    started = time.perf_counter()
    try:
        return await _send(http, url, body, headers, settings, started)
    except Exception as exc:
        log.exception("a webhook attempt failed unexpectedly")
        return Outcome(error=_describe(exc)[:500], latency_ms=int((time.perf_counter() - started) * 1000))


async def _send(
    http: httpx.AsyncClient, url: str, body: str, headers: dict[str, str], settings: Settings, started: float
) -> Outcome:
    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        target = await safety.check(url, settings)
    except safety.UnsafeUrl as exc:
        return Outcome(error=f"refused: {exc.detail}"[:500], refused=True)
    except safety.Unresolvable as exc:
        return Outcome(error=f"dns: {exc}"[:500], latency_ms=elapsed())
    request_headers = {
        **headers,
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        **({"Host": target.host_header} if target.host_header else {}),
    }
    try:
        async with asyncio.timeout(settings.webhook_total_timeout_seconds):
            async with http.stream("POST", target.url, content=body.encode(), headers=request_headers) as response:
                excerpt = await _read_capped(response, settings.webhook_response_excerpt_bytes)
                retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
                return Outcome(
                    status_code=response.status_code, latency_ms=elapsed(), excerpt=excerpt, retry_after=retry_after
                )
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(error="timeout", latency_ms=elapsed())
    except (httpx.HTTPError, OSError) as exc:
        return Outcome(error=_describe(exc)[:500], latency_ms=elapsed())


def disable_reason(
    subscription: WebhookSubscription, outcome: Outcome, now: datetime, settings: Settings
) -> str | None:
    """Why a failing subscription should stop receiving events, or None. Pure."""
    if outcome.gone:
        return "The endpoint answered 410 Gone: it no longer wants these events."
    last = outcome.error or f"HTTP {outcome.status_code}"
    limit = settings.webhook_disable_after_failures
    if limit and subscription.consecutive_failures >= limit:
        return f"{subscription.consecutive_failures} deliveries in a row failed (last: {last})."
    if (
        subscription.failing_since
        and (now - subscription.failing_since).total_seconds() >= settings.webhook_disable_after_seconds
    ):
        return f"Every delivery has failed since {subscription.failing_since:%Y-%m-%d %H:%M} UTC (last: {last})."
    return None


async def record_outcome(
    session: AsyncSession,
    *,
    subscription_id: UUID,
    event_pk: int,
    started_at: datetime,
    outcome: Outcome,
    settings: Settings,
) -> float | None:
    """Log the attempt and move the event on; returns the seconds until its retry, None when it is settled."""
    # The subscription first, kept from a delete until the commit: then its event cannot vanish either.
    subscription = await kept(session, subscription_id)
    event = await session.get(WebhookEvent, event_pk) if subscription is not None else None
    if event is None or subscription is None:
        return None  # the subscription was deleted meanwhile
    now = utcnow()
    event.attempts += 1
    session.add(
        WebhookDeliveryAttempt(
            subscription_id=event.subscription_id,
            webhook_event_id=event_pk,
            event_id=event.event_id,
            event_type=event.type,
            attempt=event.attempts,
            attempted_at=started_at,
            succeeded=outcome.succeeded,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
        )
    )
    delay = None
    # Only a pending event moves: a concurrent redelivery that already succeeded is not undone.
    if outcome.succeeded:
        if event.status == "pending":
            event.status, event.delivered_at, event.last_error = "delivered", now, None
        subscription.consecutive_failures, subscription.failing_since = 0, None
    else:
        event.last_error = (outcome.error or f"HTTP {outcome.status_code}")[:500]
        subscription.consecutive_failures += 1
        subscription.failing_since = subscription.failing_since or started_at
        delay = retry_delay(event.attempts, outcome, settings)
        if event.status == "pending":
            if delay is None:
                event.status = "failed"
            else:
                event.next_attempt_at = now + timedelta(seconds=delay)
        if subscription.active and (reason := disable_reason(subscription, outcome, now, settings)):
            disable(subscription, reason, now)
    session.add_all([event, subscription])
    await session.flush()
    return delay


# A job that finds its stream busy looks again this soon (or when the holder's lease ends, if sooner):
# a live holder sees every event committed before that look, so this only bounds how long a stream
# whose holder died, or whose holder was just finishing, waits.
BUSY_RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class StreamRun:
    outcome: str  # drained, waiting, retrying, inactive, budget, busy
    sent: int
    retry_in: float | None = None


@dataclass(frozen=True)
class _Send:
    event_pk: int
    url: str
    body: str
    headers: dict[str, str]
    at: datetime


async def _next_send(
    session: AsyncSession, subscription: WebhookSubscription, report_id: UUID, *, deadline: float, sent: int
) -> _Send | StreamRun:
    """The stream's oldest pending event, signed and ready, or why nothing goes now."""
    event = (
        await session.exec(
            select(WebhookEvent)
            .where(
                WebhookEvent.subscription_id == subscription.id,
                WebhookEvent.report_id == report_id,
                WebhookEvent.status == "pending",
            )
            .order_by(col(WebhookEvent.id))
            .limit(1)
        )
    ).first()
    if event is None:
        return StreamRun("drained", sent)
    now = utcnow()
    if event.next_attempt_at > now:
        return StreamRun("waiting", sent, (event.next_attempt_at - now).total_seconds())
    if time.monotonic() > deadline:
        return StreamRun("budget", sent, 0.0)
    body = serialize(event.payload)
    headers = signing.signature_headers(
        message_id=event.event_id,
        body=body,
        secrets=signing.active_secrets(
            subscription.secret, subscription.previous_secret, subscription.previous_secret_expires_at, now
        ),
        at=now,
    )
    assert event.id is not None
    return _Send(event.id, subscription.url, body, headers, now)


async def run_stream(
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    settings: Settings,
    subscription_id: UUID,
    report_id: UUID,
    *,
    holder: str,
    budget_seconds: float,
) -> StreamRun:
    """Send the stream's pending events oldest first, stopping at the first one that must wait.

    Every attempt is made under the stream's lease, taken as `holder` (the job): when another holds it,
    nothing is sent and the run ends "busy" with when to look again."""
    deadline = time.monotonic() + budget_seconds
    sent = 0
    while True:
        async with sessions() as session:
            subscription = await kept(session, subscription_id)  # a delete waits for the lease to be taken
            if subscription is None or not subscription.active:
                return StreamRun("inactive", sent)
            busy_for = await lease.claim(
                session, subscription_id, report_id, holder=holder, seconds=lease.lease_seconds(settings)
            )
            if busy_for is not None:
                return StreamRun("busy", sent, max(min(busy_for, BUSY_RECHECK_SECONDS), 0.2))
            send = await _next_send(session, subscription, report_id, deadline=deadline, sent=sent)
            if isinstance(send, StreamRun):
                await lease.release(session, subscription_id, report_id, holder=holder)
            await session.commit()  # the lease is taken before the HTTP call, which holds no connection
        if isinstance(send, StreamRun):
            return send
        outcome = await attempt(http, send.url, send.body, send.headers, settings)
        async with sessions() as session:
            retry_in = await record_outcome(
                session,
                subscription_id=subscription_id,
                event_pk=send.event_pk,
                started_at=send.at,
                outcome=outcome,
                settings=settings,
            )
            stops = not outcome.succeeded and retry_in is not None
            if stops:
                await lease.release(session, subscription_id, report_id, holder=holder)
            await session.commit()
        if outcome.succeeded:
            sent += 1
        elif stops:
            return StreamRun("retrying", sent, retry_in)
        # Given up: the next event may go (or the subscription was just disabled: the loop sees it).
