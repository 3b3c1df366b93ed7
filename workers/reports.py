"""Report jobs: each a few lines around a service call, each safe to run more than once."""

import logging
from datetime import timedelta
from uuid import UUID

from arq import Retry
from sqlmodel import col, select

from service.errors import is_outage
from service.jobs import enqueue_process_report
from service.models import Report
from service.models.types import utcnow
from service.pipeline import service as pipeline

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


async def process_report(ctx: dict, report_id: str) -> str:
    try:
        if ctx["serial"] is not None:
            async with ctx["serial"]:
                return await _process(ctx, UUID(report_id))
        return await _process(ctx, UUID(report_id))
    except Exception as exc:
        if is_outage(exc):
            # Exponential backoff: 5 s, 10 s, 20 s … while the database is away.
            raise Retry(defer=5 * 2 ** (ctx.get("job_try", 1) - 1)) from exc
        raise


async def _process(ctx: dict, report_id: UUID) -> str:
    async with ctx["sessions"]() as session:
        outcome = await pipeline.process(session, report_id, ctx["pipeline"])
        await session.commit()
        return outcome


async def sweep_stale_reports(ctx: dict) -> int:
    """Re-enqueue reports whose hand-off was lost. The job id de-duplicates what is still queued."""
    async with ctx["sessions"]() as session:
        ids = (
            await session.exec(
                select(Report.id)
                .where(Report.status == "received", col(Report.created_at) < utcnow() - timedelta(seconds=ctx["settings"].stale_report_seconds))
                .order_by(col(Report.created_at))
                .limit(SWEEP_BATCH)
            )
        ).all()
    for report_id in ids:
        await enqueue_process_report(ctx["redis"], ctx["settings"].queue_name, report_id)
    if ids:
        log.info("sweep re-enqueued %d stale reports", len(ids))
    return len(ids)
