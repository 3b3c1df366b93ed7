"""Jobs handed to arq in one round trip (service.handoff.enqueue_jobs) are the jobs arq's own
`enqueue_job` would have queued: the same keys, definition, expiry and score, run by an arq worker,
and never queued twice while queued or once their result is kept.

Redis only (no database): a pool and a queue of its own per test, on the tests' Redis.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from arq import func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job
from arq.worker import Worker

from service.handoff import Job, enqueue, enqueue_jobs
from tests.conftest import TEST_REDIS_URL
from tests.processes import RedisServer


def with_pool(work: Callable[[ArqRedis, str], Awaitable[Any]]) -> Any:
    """Run `work(pool, queue_name)` on a fresh pool and queue, then take the queue and its jobs away."""

    async def runner() -> Any:
        pool = await create_pool(RedisSettings.from_dsn(TEST_REDIS_URL))
        queue_name = f"handoff-test:{uuid.uuid4().hex}"
        try:
            return await work(pool, queue_name)
        finally:
            job_ids = [job_id.decode() for job_id in await pool.zrange(queue_name, 0, -1)]
            await pool.delete(queue_name, *(job_key_prefix + job_id for job_id in job_ids))
            await pool.aclose()

    return asyncio.run(runner())


def job_id() -> str:
    return f"test-job:{uuid.uuid4().hex}"


async def run_worker(pool: ArqRedis, queue_name: str) -> list[tuple]:
    """The calls a burst-mode arq worker made of `record` until the queue was empty."""
    calls: list[tuple] = []

    async def record(ctx: dict, *args: str) -> None:
        calls.append((ctx["job_id"], *args))

    worker = Worker(
        functions=[func(record, name="record")],
        redis_pool=pool,
        queue_name=queue_name,
        burst=True,
        poll_delay=0.05,
        handle_signals=False,
        keep_result=60,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    return calls


def test_jobs_handed_on_together_are_each_run_by_an_arq_worker():
    first, second = job_id(), job_id()

    async def work(pool: ArqRedis, queue_name: str) -> list[tuple]:
        assert await enqueue_jobs(pool, queue_name, [Job("record", ("a", "b"), first), Job("record", ("c",), second)])
        return await run_worker(pool, queue_name)

    assert sorted(with_pool(work)) == sorted([(first, "a", "b"), (second, "c")])


def test_job_handed_on_is_stored_as_arq_would_store_it():
    ours, arqs = job_id(), job_id()

    async def work(pool: ArqRedis, queue_name: str) -> None:
        assert await enqueue(pool, queue_name, "record", "a", "b", job_id=ours)
        assert await pool.enqueue_job("record", "a", "b", _job_id=arqs, _queue_name=queue_name)
        mine, theirs = [deserialize_job(await pool.get(job_key_prefix + job)) for job in (ours, arqs)]
        assert (mine.function, mine.args, mine.kwargs, mine.job_try) == ("record", ("a", "b"), {}, None)
        assert (theirs.function, theirs.args, theirs.kwargs, theirs.job_try) == ("record", ("a", "b"), {}, None)
        assert abs(mine.enqueue_time.timestamp() - theirs.enqueue_time.timestamp()) < 1
        # Queued at its enqueue time, and kept as long as arq keeps a job that is not deferred.
        assert await pool.zscore(queue_name, ours) == int(mine.enqueue_time.timestamp() * 1000)
        assert abs(await pool.pttl(job_key_prefix + ours) - await pool.pttl(job_key_prefix + arqs)) < 1000
        assert abs(await pool.zscore(queue_name, ours) - await pool.zscore(queue_name, arqs)) < 1000

    with_pool(work)


def test_job_already_queued_is_not_queued_twice():
    queued = job_id()

    async def work(pool: ArqRedis, queue_name: str) -> list[tuple]:
        assert await pool.enqueue_job("record", "first", _job_id=queued, _queue_name=queue_name)
        score = await pool.zscore(queue_name, queued)
        await asyncio.sleep(0.01)
        # Handed on again, alone and with another: the one queued stays as it was.
        assert await enqueue(pool, queue_name, "record", "second", job_id=queued)
        other = job_id()
        assert await enqueue_jobs(pool, queue_name, [Job("record", ("third",), queued), Job("record", ("x",), other)])
        assert await pool.zcard(queue_name) == 2
        assert await pool.zscore(queue_name, queued) == score
        return await run_worker(pool, queue_name)

    calls = with_pool(work)
    assert sorted(call for call in calls if call[0] == queued) == [(queued, "first")]
    assert len(calls) == 2


def test_job_whose_result_is_kept_is_not_queued_again():
    done = job_id()

    async def work(pool: ArqRedis, queue_name: str) -> tuple[list[tuple], int, int]:
        assert await enqueue(pool, queue_name, "record", "once", job_id=done)
        calls = await run_worker(pool, queue_name)
        assert await pool.exists(result_key_prefix + done)
        try:
            assert await enqueue(pool, queue_name, "record", "again", job_id=done)
            return calls, await pool.zcard(queue_name), await pool.exists(job_key_prefix + done)
        finally:
            await pool.delete(result_key_prefix + done)

    calls, queued, definitions = with_pool(work)
    assert calls == [(done, "once")]
    assert (queued, definitions) == (0, 0)


def test_job_handed_on_after_redis_restarted_is_queued(tmp_path):
    """A restarted Redis has forgotten the script: it is loaded again, and the job queued."""
    server = RedisServer(tmp_path)
    server.start()
    first, second = job_id(), job_id()

    async def work() -> list[bytes]:
        pool = await create_pool(RedisSettings.from_dsn(server.url))
        try:
            assert await enqueue(pool, "restart-queue", "record", "a", job_id=first)
            await pool.script_flush()  # as a restart leaves it
            assert await enqueue(pool, "restart-queue", "record", "b", job_id=second)
            return await pool.zrange("restart-queue", 0, -1)
        finally:
            await pool.aclose()

    try:
        assert sorted(asyncio.run(work())) == sorted([first.encode(), second.encode()])
    finally:
        server.stop()
