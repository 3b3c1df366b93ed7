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
ENQUEUE_TIMEOUT_SECONDS = 1.0


def process_report_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_REPORT}:{report_id}"


async def enqueue_process_report(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    """Hand a committed report to the workers; False (and a log line) when Redis can't take it now."""
    try:
        await asyncio.wait_for(
            arq.enqueue_job(
                PROCESS_REPORT, str(report_id), _job_id=process_report_job_id(report_id), _queue_name=queue_name
            ),
            ENQUEUE_TIMEOUT_SECONDS,
        )
        return True
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("enqueue failed, the sweep will pick the report up: %s", type(exc).__name__,
                    extra={"report_id": str(report_id)})
        return False
