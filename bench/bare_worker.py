"""The bare arq job: one UPDATE per job, the yardstick for the report pipeline's throughput.

    .venv/bin/arq bench.bare_worker.WorkerSettings

Same Redis as `intake worker`; the job marks one bench_bare_reports row processed. `max_jobs` and the
poll interval come from BARE_MAX_JOBS and BARE_POLL_SECONDS (bench/worker_throughput.py runs it with
the intake worker's own values, and tuned).
"""

import os
from uuid import UUID

import asyncpg
from arq.connections import RedisSettings

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/intake_bench_intake").replace(
    "postgresql+asyncpg://", "postgresql://"
)
QUEUE_NAME = os.environ.get("BARE_QUEUE_NAME", "intake-bench:bare")


async def startup(ctx: dict) -> None:
    size = int(os.environ.get("DB_POOL_SIZE", "20")) + int(os.environ.get("DB_MAX_OVERFLOW", "0"))
    ctx["pool"] = await asyncpg.create_pool(DSN, min_size=2, max_size=size)


async def shutdown(ctx: dict) -> None:
    await ctx["pool"].close()


async def bare_update(ctx: dict, report_id: str) -> None:
    await ctx["pool"].execute(
        "UPDATE bench_bare_reports SET processed_at = clock_timestamp() WHERE id = $1", UUID(report_id)
    )


class WorkerSettings:
    functions = [bare_update]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    queue_name = QUEUE_NAME
    max_jobs = int(os.environ.get("BARE_MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("BARE_POLL_SECONDS", "0.5"))
    keep_result = 0
