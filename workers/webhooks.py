"""Webhook jobs: deliver one (subscription, report) stream in order, and sweep up lost hand-offs."""

import logging
from datetime import timedelta
from uuid import UUID

from arq import Retry

from service.errors import is_outage
from service.models.types import utcnow
from service.webhooks import delivery, outbox
from service.webhooks import service as webhooks

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


def stream_budget_seconds(settings) -> float:
    return settings.webhook_total_timeout_seconds


def job_timeout_seconds(settings) -> float:
    # A run starts no attempt after its budget, so one more full attempt still fits. Kept short because
    # arq re-runs a killed worker's jobs only after the longest job timeout.
    return stream_budget_seconds(settings) + settings.webhook_total_timeout_seconds + 5


async def deliver_webhooks(ctx: dict, subscription_id: str, report_id: str) -> str:
    settings = ctx["settings"]
    job_id = ctx.get("job_id") or outbox.deliver_job_id(subscription_id, report_id)
    try:
        run = await delivery.run_stream(
            ctx["sessions"],
            ctx["http"],
            settings,
            UUID(subscription_id),
            UUID(report_id),
            holder=job_id,
            budget_seconds=stream_budget_seconds(settings),
        )
    except Exception as exc:
        if is_outage(exc):
            raise Retry(defer=5 * 2 ** min(ctx.get("job_try", 1) - 1, 6)) from exc
        raise
    if run.retry_in is None:
        return f"{run.outcome}, {run.sent} sent"
    if run.outcome != "busy" and job_id.endswith(":follow-up"):
        # The stream's own job waits for a retry, so the follow-up's id is free for the next hand-off.
        handed = await ctx["redis"].enqueue_job(
            outbox.DELIVER_WEBHOOKS,
            subscription_id,
            report_id,
            _job_id=outbox.deliver_job_id(subscription_id, report_id),
            _queue_name=settings.webhook_queue_name,
            _defer_by=timedelta(seconds=run.retry_in),
        )
        if handed is not None:
            return f"{run.outcome}, {run.sent} sent, the stream's job waits"
    # A busy stream is the lease holder's to send: this job comes back only in case the holder died.
    raise Retry(defer=timedelta(seconds=run.retry_in))


async def sweep_webhooks(ctx: dict) -> int:
    """Queue every stream with an event overdue for sending: its hand-off was lost (Redis, a killed worker)."""
    settings = ctx["settings"]
    async with ctx["sessions"]() as session:
        streams = await webhooks.due_streams(
            session, older_than=utcnow() - timedelta(seconds=settings.webhook_stale_seconds), limit=SWEEP_BATCH
        )
    for subscription_id, report_id in streams:
        if not await outbox.enqueue_stream(
            ctx["redis"], settings.webhook_queue_name, subscription_id, report_id, follow_up=False
        ):
            break
    if streams:
        log.info("webhook sweep queued %d streams", len(streams))
    return len(streams)
