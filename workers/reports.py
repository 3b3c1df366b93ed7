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

# A report still `received` this long after intake lost its hand-off (Redis down, worker killed).
STALE_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 500


async def process_report(ctx: dict, report_id: str) -> str:
    try:
        async with ctx["sessions"]() as session:
            outcome = await pipeline.process(session, UUID(report_id), ctx)
            await session.commit()
            return outcome
    except Exception as exc:
        if is_outage(exc):
            # Exponential backoff: 5 s, 10 s, 20 s … while the database is away.
            raise Retry(defer=5 * 2 ** (ctx.get("job_try", 1) - 1)) from exc
        raise


async def sweep_stale_reports(ctx: dict) -> int:
    """Re-enqueue reports whose hand-off was lost. The job id de-duplicates what is still queued."""
    async with ctx["sessions"]() as session:
        ids = (
            await session.exec(
                select(Report.id)
                .where(Report.status == "received", col(Report.created_at) < utcnow() - STALE_AFTER)
                .order_by(col(Report.created_at))
                .limit(SWEEP_BATCH)
            )
        ).all()
    for report_id in ids:
        await enqueue_process_report(ctx["redis"], ctx["settings"].queue_name, report_id)
    if ids:
        log.info("sweep re-enqueued %d stale reports", len(ids))
    return len(ids)
