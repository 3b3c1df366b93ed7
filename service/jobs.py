"""Job names and the hand-off to the arq queue, always after the database commit.

The database stays the truth: a report whose hand-off fails (Redis down, worker killed) is still
`received`, and the worker's sweep enqueues it again. Enqueueing twice is harmless: the job id
de-duplicates while queued, and every job is idempotent. So when Redis hangs, one hand-off waiting
for its timeout is enough: a circuit breaker per connection pool leaves the rest to the sweep at once.
"""

import asyncio
import logging
from uuid import UUID
from weakref import WeakKeyDictionary

from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from service.breaker import CircuitBreaker

log = logging.getLogger(__name__)

PROCESS_REPORT = "process_report"
PROCESS_PHOTOS = "process_photos"
ENQUEUE_TIMEOUT_SECONDS = 1.0
HANDOFF_SLOW_SECONDS = 0.25


_breakers: WeakKeyDictionary[ArqRedis, CircuitBreaker] = WeakKeyDictionary()


def breaker_for(arq: ArqRedis) -> CircuitBreaker:
    """One breaker per pool (per app or worker), so one Redis hanging does not silence another."""
    breaker = _breakers.get(arq)
    if breaker is None:
        # A batch of jobs in one round trip is quick when Redis is well; 250 ms unanswered is a hang.
        breaker = _breakers[arq] = CircuitBreaker("job hand-off", slow_seconds=HANDOFF_SLOW_SECONDS)
    return breaker


def process_report_job_id(report_id: UUID | str) -> str:
    return f"{PROCESS_REPORT}:{report_id}"


async def enqueue(arq: ArqRedis, queue_name: str, job: str, *args: str, job_id: str) -> bool:
    """Hand committed work to the workers; False (and a log line) when Redis can't take it now."""
    breaker = breaker_for(arq)
    call = breaker.allow()
    if call is None:
        return False
    try:
        await asyncio.wait_for(arq.enqueue_job(job, *args, _job_id=job_id, _queue_name=queue_name), ENQUEUE_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as exc:
        breaker.failed(exc)
        log.warning("enqueue of %s failed, a sweep will pick it up: %s", job_id, type(exc).__name__)
        return False
    finally:
        breaker.done(call)
    breaker.succeeded()
    return True


async def enqueue_process_report(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    return await enqueue(arq, queue_name, PROCESS_REPORT, str(report_id), job_id=process_report_job_id(report_id))


async def enqueue_process_photos(arq: ArqRedis, queue_name: str, report_id: UUID) -> bool:
    """Photos added after intake (after-photos, citizen answers) need their metadata stripped too."""
    return await enqueue(arq, queue_name, PROCESS_PHOTOS, str(report_id), job_id=f"{PROCESS_PHOTOS}:{report_id}")


async def enqueue_new_reports(arq: ArqRedis, queue_name: str, report_ids: list[UUID]) -> bool:
    """Hand many just-committed reports to the workers in one Redis round trip.

    The jobs are the ones `enqueue_process_report` makes (same ids, same arq format), but written in
    one pipeline: arq's `enqueue_job` spends three round trips per job checking for an existing job,
    which a brand-new report cannot have. SET NX still leaves a job the sweep queued meanwhile alone.
    """
    if not report_ids:
        return True
    breaker = breaker_for(arq)
    call = breaker.allow()
    if call is None:
        return False
    now = timestamp_ms()
    try:
        async with arq.pipeline(transaction=False) as pipe:
            for report_id in report_ids:
                job_id = process_report_job_id(report_id)
                job = serialize_job(PROCESS_REPORT, (str(report_id),), {}, None, now, serializer=arq.job_serializer)
                pipe.set(job_key_prefix + job_id, job, px=arq.expires_extra_ms, nx=True)
                pipe.zadd(queue_name, {job_id: now})
            await asyncio.wait_for(pipe.execute(), ENQUEUE_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as exc:
        breaker.failed(exc)
        log.warning("enqueue of %d new reports failed, the sweep will pick them up: %s", len(report_ids), type(exc).__name__)
        return False
    finally:
        breaker.done(call)
    breaker.succeeded()
    return True
