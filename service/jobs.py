"""Job names, and how a job is noted for the hand-off after the commit (service.handoff).

The database stays the truth: a report whose hand-off fails (Redis down, worker killed) is still
`received`, and the worker's sweep enqueues it again. Enqueueing twice is harmless: the job id
de-duplicates while queued, and every job is idempotent.

Reports committed together go to the workers as one `process_report` job carrying all their ids (its
id is that of the first), and the job processes them as one batch: a job per report would cost the
queue's own round trips once per report.
"""

from collections.abc import Sequence
from uuid import UUID

from arq.connections import ArqRedis
from sqlmodel.ext.asyncio.session import AsyncSession

from service import handoff

PROCESS_REPORT = "process_report"
PROCESS_PHOTOS = "process_photos"


def process_report_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_REPORT}:{report_id}"


def process_photos_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_PHOTOS}:{report_id}"


def report_job(session: AsyncSession, report_id: UUID) -> None:
    """Process this new report once the session commits (in one job with the others of the transaction)."""
    handoff.batched_job(session, PROCESS_REPORT, str(report_id), job_id_of=process_report_job_id)


def photos_job(session: AsyncSession, report_id: UUID) -> None:
    """Photos added after intake (after-photos, citizen answers) need their metadata stripped too."""
    handoff.job(session, PROCESS_PHOTOS, str(report_id), job_id=process_photos_job_id(report_id))


async def enqueue_process_reports(arq: ArqRedis, queue_name: str, report_ids: Sequence[UUID]) -> bool:
    """The sweep's hand-off of reports whose first one was lost: a job per `handoff.BATCH_JOB_MAX` of them."""
    if not report_ids:
        return True
    sent = [
        await handoff.enqueue(arq, queue_name, PROCESS_REPORT, *chunk, job_id=process_report_job_id(chunk[0]))
        for chunk in handoff.chunks([str(report_id) for report_id in report_ids], handoff.BATCH_JOB_MAX)
    ]
    return all(sent)


async def enqueue_process_photos(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    return await handoff.enqueue(
        arq, queue_name, PROCESS_PHOTOS, str(report_id), job_id=process_photos_job_id(report_id)
    )
