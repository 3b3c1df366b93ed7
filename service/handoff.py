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

        results: list[Any] = await asyncio.gather(
            *(
                enqueue(self.arq, self.queue_name, item.name, *item.args, job_id=item.job_id)
                if isinstance(item, Job)
                else enqueue_stream(self.arq, self.webhook_queue_name, item.subscription_id, item.report_id)
                for item in work
            ),
            return_exceptions=True,
        )
        failed = sum(1 for result in results if result is not True)
        if failed:
            log.warning("%d of %d hand-offs to the workers failed; the sweeps will hand them on", failed, len(work))

    async def drain(self) -> None:
        """Wait until what was sent so far reached Redis (or failed): before a job ends, at shutdown."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


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
        await asyncio.wait_for(send(), ENQUEUE_TIMEOUT_SECONDS)
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
    return await guarded(arq, job_id, lambda: arq.enqueue_job(job, *args, _job_id=job_id, _queue_name=queue_name))
