"""Job names, and how a job is noted for the hand-off after the commit (service.handoff).

The database stays the truth: a report whose hand-off fails (Redis down, worker killed) is still
`received`, and the worker's sweep enqueues it again. Enqueueing twice is harmless: the job id
de-duplicates while queued, and every job is idempotent.

Reports committed together go to the workers as one `process_report` job carrying all their ids (its
id is that of the first), and the job processes them as one batch: a job per report would cost the
queue's own round trips once per report. A batch also takes reports of other jobs still queued; once
it has committed, `withdraw_report_jobs` takes out of the queue those jobs it left nothing to do.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from uuid import UUID

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import DeserializationError, deserialize_job
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from service import handoff

log = logging.getLogger(__name__)

PROCESS_REPORT = "process_report"
PROCESS_PHOTOS = "process_photos"


def process_report_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_REPORT}:{report_id}"


def process_photos_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_PHOTOS}:{report_id}"


def report_job(session: AsyncSession, report_id: UUID) -> None:
    """Process this new report once the session commits (in one job with the others of the transaction)."""
    handoff.batched_job(session, PROCESS_REPORT, str(report_id), job_id_of=process_report_job_id)


def report_jobs(session: AsyncSession, report_ids: list[UUID]) -> None:
    """`report_job` for each of these reports."""
    handoff.batched_jobs(
        session, PROCESS_REPORT, [str(report_id) for report_id in report_ids], job_id_of=process_report_job_id
    )


def photos_job(session: AsyncSession, report_id: UUID) -> None:
    """Photos added after intake (after-photos, citizen answers) need their metadata stripped too."""
    handoff.job(session, PROCESS_PHOTOS, str(report_id), job_id=process_photos_job_id(report_id))


async def enqueue_process_reports(arq: ArqRedis, queue_name: str, report_ids: Sequence[UUID]) -> bool:
    """The sweep's hand-off of reports whose first one was lost: a job per `handoff.BATCH_JOB_MAX` of them."""
    if not report_ids:
        return True
    return await handoff.enqueue_jobs(
        arq,
        queue_name,
        [
            handoff.Job(PROCESS_REPORT, tuple(chunk), job_id=process_report_job_id(chunk[0]))
            for chunk in handoff.chunks([str(report_id) for report_id in report_ids], handoff.BATCH_JOB_MAX)
        ],
    )


async def enqueue_process_photos(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    return await handoff.enqueue(
        arq, queue_name, PROCESS_PHOTOS, str(report_id), job_id=process_photos_job_id(report_id)
    )


# Each job not started yet leaves the queue with its definition. arq starts a job by setting its
# in-progress key in a transaction that watches that key: a job it has started is left alone here, and
# the key written here makes a start that read the queue just before fail cleanly (arq skips it, as a
# job started elsewhere), so no job ever starts without its definition.
_WITHDRAW = """
local removed = 0
for index = 2, #ARGV do
    local job_key, in_progress_key = KEYS[2 * index - 2], KEYS[2 * index - 1]
    if redis.call('EXISTS', in_progress_key) == 0 and redis.call('ZREM', KEYS[1], ARGV[index]) == 1 then
        redis.call('DEL', job_key)
        redis.call('SET', in_progress_key, 'withdrawn', 'PX', ARGV[1])
        removed = removed + 1
    end
end
return removed
"""
WITHDRAWN_MARK_MS = 2000  # outlives any start in flight; nothing enqueues a withdrawn job's id again


async def withdraw_report_jobs(
    arq: ArqRedis, queue_name: str, first_report_ids: Sequence[UUID], *, done: Callable[[list[UUID]], bool]
) -> int:
    """Take out of the queue the `process_report` jobs starting with these reports whose every report is
    `done` (committed as processed), unless they have started; how many were taken out. Only saves the
    queue's work: a job left in the queue finds its reports processed and ends."""
    job_ids = [process_report_job_id(report_id) for report_id in first_report_ids]
    if not job_ids:
        return 0
    try:
        return await asyncio.wait_for(_withdraw(arq, queue_name, job_ids, done), handoff.ENQUEUE_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as exc:
        log.info("queued jobs of processed reports left in the queue (%s)", type(exc).__name__)
        return 0


async def _withdraw(arq: ArqRedis, queue_name: str, job_ids: list[str], done: Callable[[list[UUID]], bool]) -> int:
    definitions = await arq.mget([job_key_prefix + job_id for job_id in job_ids])
    finished = []
    for job_id, definition in zip(job_ids, definitions, strict=True):
        if definition is None:
            continue
        try:
            job = deserialize_job(definition)
        except DeserializationError:
            continue
        if job.function == PROCESS_REPORT and done([UUID(report_id) for report_id in job.args]):
            finished.append(job_id)
    if not finished:
        return 0
    keys = [key for job_id in finished for key in (job_key_prefix + job_id, in_progress_key_prefix + job_id)]
    withdraw = arq.register_script(_WITHDRAW)  # sent by its digest (EVALSHA) once Redis knows it
    return int(await withdraw(keys=[queue_name, *keys], args=[WITHDRAWN_MARK_MS, *finished]))
