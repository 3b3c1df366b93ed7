"""Job names and the hand-off to the arq queue, always after the database commit.

The database stays the truth: a report whose hand-off fails (Redis down, worker killed) is still
`received`, and the worker's sweep enqueues it again. Enqueueing twice is harmless: the job id
de-duplicates while queued, and every job is idempotent.
"""

import asyncio
import logging
from uuid import UUID

from arq.connections import ArqRedis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PROCESS_REPORT = "process_report"
PROCESS_PHOTOS = "process_photos"
ENQUEUE_TIMEOUT_SECONDS = 1.0


def process_report_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_REPORT}:{report_id}"


async def enqueue(arq: ArqRedis, queue_name: str, job: str, *args: str, job_id: str) -> bool:
    """Hand committed work to the workers; False (and a log line) when Redis can't take it now."""
    try:
        await asyncio.wait_for(arq.enqueue_job(job, *args, _job_id=job_id, _queue_name=queue_name), ENQUEUE_TIMEOUT_SECONDS)
        return True
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("enqueue of %s failed, a sweep will pick it up: %s", job_id, type(exc).__name__)
        return False


async def enqueue_process_report(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    return await enqueue(arq, queue_name, PROCESS_REPORT, str(report_id), job_id=process_report_job_id(report_id))


async def enqueue_process_photos(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    """Photos added after intake (after-photos, citizen answers) need their metadata stripped too."""
    return await enqueue(arq, queue_name, PROCESS_PHOTOS, str(report_id), job_id=f"{PROCESS_PHOTOS}:{report_id}")
