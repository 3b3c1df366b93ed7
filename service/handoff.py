"""The one hand-off of committed work to the workers: jobs and webhook streams, after the commit.

A service function that wants work done after its transaction notes it on the session (`job`, `batched_job`,
`webhook_stream`, `after_commit`); nothing is sent then. The boundary that owns the transaction (the
request's session dependency, a worker job, the intake writer) commits through `Handoff.commit`, which
sends what was noted only once the commit succeeded, and `discard` drops it when the transaction is
rolled back. The database stays the truth: when Redis cannot take the work, the sweeps find it
(reports still `received`, webhook events still pending) and hand it on again.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from service.breaker import CircuitBreaker

log = logging.getLogger(__name__)

ENQUEUE_TIMEOUT_SECONDS = 1.0
BATCH_JOB_MAX = 100  # arguments of one batched job (service.jobs: the reports one job starts with)
HANDOFF_SLOW_SECONDS = 0.25

_PENDING = "handoff.pending"


@dataclass(frozen=True)
class Job:
    name: str
    args: tuple[str, ...]
    job_id: str


@dataclass(frozen=True)
class WebhookStream:
    subscription_id: UUID
    report_id: UUID


@dataclass
class Pending:
    work: dict[Job | WebhookStream, None]  # ordered and without repeats
    callbacks: list[Callable[[], None]]
    # name -> (its job id from the first argument, the arguments so far): one job per `BATCH_JOB_MAX`
    batches: dict[str, tuple[Callable[[str], str], dict[str, None]]] = field(default_factory=dict)

    def jobs(self) -> list[Job | WebhookStream]:
        batched = [
            Job(name, tuple(chunk), job_id=job_id_of(chunk[0]))
            for name, (job_id_of, args) in self.batches.items()
            for chunk in chunks(list(args), BATCH_JOB_MAX)
        ]
        return [*batched, *self.work]


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _pending(session: AsyncSession) -> Pending:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = Pending({}, [])
    return pending


def job(session: AsyncSession, name: str, *args: str, job_id: str) -> None:
    """Enqueue this arq job once the session commits."""
    _pending(session).work[Job(name, args, job_id)] = None


def batched_job(session: AsyncSession, name: str, arg: str, *, job_id_of: Callable[[str], str]) -> None:
    """Give this argument to a job of this name once the session commits, together with the other
    arguments the transaction noted for it: a transaction of many reports hands on a few jobs, not one
    each. The job's id is that of its first argument."""
    _, args = _pending(session).batches.setdefault(name, (job_id_of, {}))
    args[arg] = None


def batched_jobs(session: AsyncSession, name: str, args: list[str], *, job_id_of: Callable[[str], str]) -> None:
    """`batched_job` for each of these arguments."""
    _, noted = _pending(session).batches.setdefault(name, (job_id_of, {}))
    noted.update(dict.fromkeys(args))


def webhook_stream(session: AsyncSession, subscription_id: UUID, report_id: UUID) -> None:
    """Hand this (subscription, report) stream of webhook events to the workers once the session commits."""
    _pending(session).work[WebhookStream(subscription_id, report_id)] = None


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run a callback of this process (a cache to forget) once the session commits."""
    _pending(session).callbacks.append(callback)


def discard(session: AsyncSession) -> None:
    """The transaction was rolled back: what it noted never happened."""
    session.info.pop(_PENDING, None)


class Handoff:
    """Built once per process (the API's lifespan, the worker's startup) around its arq pool. Jobs go to
    `queue_name`, webhook streams to `webhook_queue_name`: a delivery waits on its receiver, and must never
    hold a slot that a report's processing is waiting for."""

    def __init__(self, arq: ArqRedis, queue_name: str, webhook_queue_name: str):
        self.arq, self.queue_name, self.webhook_queue_name = arq, queue_name, webhook_queue_name
        self._tasks: set[asyncio.Task] = set()

    async def commit(self, session: AsyncSession) -> None:
        """Commit, then send what the transaction noted (in the background: no answer waits for Redis)."""
        try:
            if session.in_transaction():
                await session.commit()
        except BaseException:
            discard(session)
            raise
        self.send(session.info.pop(_PENDING, None))

    def send(self, pending: Pending | None) -> None:
        if pending is None:
            return
        for callback in pending.callbacks:
            callback()
        work = pending.jobs()
        if work:
            task = asyncio.get_running_loop().create_task(self._send(work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, work: list[Job | WebhookStream]) -> None:
        from service.webhooks.outbox import enqueue_stream  # the stream's job and its follow-up live there

        jobs = [item for item in work if isinstance(item, Job)]
        # (how many hand-offs, the call making them): the jobs in one call, a stream's job each
        sends: list[tuple[int, Awaitable[bool]]] = []
        if jobs:
            sends.append((len(jobs), enqueue_jobs(self.arq, self.queue_name, jobs)))
        sends += [
            (1, enqueue_stream(self.arq, self.webhook_queue_name, item.subscription_id, item.report_id))
            for item in work
            if isinstance(item, WebhookStream)
        ]
        # Mostly one call (a commit's jobs): awaited here, not wrapped in a task of its own by gather.
        results: list[Any] = (
            [await _settled(sends[0][1])]
            if len(sends) == 1
            else await asyncio.gather(*(send for _, send in sends), return_exceptions=True)
        )
        failed = sum(count for (count, _), result in zip(sends, results, strict=True) if result is not True)
        if failed:
            log.warning("%d of %d hand-offs to the workers failed; the sweeps will hand them on", failed, len(work))

    async def drain(self) -> None:
        """Wait until what was sent so far reached Redis (or failed): before a job ends, at shutdown."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _settled(send: Awaitable[bool]) -> bool | BaseException:
    """What `asyncio.gather(..., return_exceptions=True)` gives for one awaitable."""
    try:
        return await send
    except Exception as exc:  # noqa: BLE001 - counted as a failed hand-off, as gather's would be
        return exc


_breakers: "WeakKeyDictionary[ArqRedis, CircuitBreaker]" = WeakKeyDictionary()


def breaker_for(arq: ArqRedis) -> CircuitBreaker:
    """One breaker per pool (per app or worker), so one Redis hanging does not silence another."""
    breaker = _breakers.get(arq)
    if breaker is None:
        # A job is one quick round trip when Redis is well; 250 ms unanswered is a hang.
        breaker = _breakers[arq] = CircuitBreaker("job hand-off", slow_seconds=HANDOFF_SLOW_SECONDS)
    return breaker


async def guarded(arq: ArqRedis, what: str, send: Callable[[], Awaitable[Any]]) -> bool:
    """Send to Redis unless it is known to be away or hanging (then the sweeps hand the work on later):
    when Redis hangs, one hand-off waiting for its timeout is enough."""
    breaker = breaker_for(arq)
    call = breaker.allow()
    if call is None:
        return False
    try:
        async with asyncio.timeout(ENQUEUE_TIMEOUT_SECONDS):  # not wait_for: no task of its own
            await send()
    except (RedisError, OSError, TimeoutError) as exc:
        breaker.failed(exc)
        log.warning("hand-off of %s failed, a sweep will pick it up: %s", what, type(exc).__name__)
        return False
    finally:
        breaker.done(call)
    breaker.succeeded()
    return True


async def enqueue(arq: ArqRedis, queue_name: str, job: str, *args: str, job_id: str) -> bool:
    """One arq job (its id de-duplicates while queued); False when Redis can't take it now."""
    return await enqueue_jobs(arq, queue_name, [Job(job, args, job_id)])


async def enqueue_jobs(arq: ArqRedis, queue_name: str, jobs: list[Job]) -> bool:
    """These arq jobs, in one round trip; each id de-duplicates as `ArqRedis.enqueue_job`'s does. False
    when Redis can't take them now."""
    if not jobs:
        return True
    what = jobs[0].job_id if len(jobs) == 1 else f"{len(jobs)} jobs"
    return await guarded(arq, what, lambda: _enqueue(arq, queue_name, jobs))


# `ArqRedis.enqueue_job` without a deferral, for several jobs: a job whose key or result key exists is
# left alone; otherwise its definition is set to expire as arq's does and its id queued at its enqueue
# time. arq's own way (WATCH, EXISTS, then MULTI…EXEC) costs three round trips a job; a script is atomic
# as that transaction is, and keeps the keys, the definition and the score arq writes and reads.
_ENQUEUE = """
local queued = {}
for index = 1, #ARGV - 2, 2 do
    local job_key, result_key = KEYS[index + 1], KEYS[index + 2]
    if redis.call('EXISTS', job_key, result_key) == 0 then
        redis.call('PSETEX', job_key, ARGV[#ARGV], ARGV[index + 1])
        redis.call('ZADD', KEYS[1], ARGV[#ARGV - 1], ARGV[index])
        queued[#queued + 1] = 1
    else
        queued[#queued + 1] = 0
    end
end
return queued
"""
_scripts: "WeakKeyDictionary[ArqRedis, AsyncScript]" = WeakKeyDictionary()


def _enqueue_script(arq: ArqRedis) -> AsyncScript:
    """Registered once per pool: then sent by its digest (EVALSHA), and loaded again if Redis forgot it."""
    script = _scripts.get(arq)
    if script is None:
        script = _scripts[arq] = arq.register_script(_ENQUEUE)
    return script


async def _enqueue(arq: ArqRedis, queue_name: str, jobs: list[Job]) -> list[int]:
    """Which of these jobs were queued (1) or already there (0)."""
    enqueue_time_ms = timestamp_ms()
    keys: list[str] = [queue_name]
    args: list[Any] = []
    for job in jobs:
        keys += (job_key_prefix + job.job_id, result_key_prefix + job.job_id)
        definition = serialize_job(job.name, job.args, {}, None, enqueue_time_ms, serializer=arq.job_serializer)
        args += (job.job_id, definition)
    # Not deferred: scored at its enqueue time, it expires `expires_extra_ms` later, as arq's would.
    args += (enqueue_time_ms, arq.expires_extra_ms)
    return await _enqueue_script(arq)(keys=keys, args=args)
