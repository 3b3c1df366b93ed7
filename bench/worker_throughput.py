"""Worker throughput: reports fully processed per second by one `intake worker` process, beside a bare
arq job doing one UPDATE (bench/bare_worker.py), in the same run.

    .venv/bin/python bench/worker_throughput.py [--reports 2000]

The reports are filed first through the API (worker stopped), spread over the demo wards with
storm-like descriptions; then one worker process starts on the full queue. The rate is counted from
the first to the last `processed_at` (classification, priority, duplicates, jurisdiction, routing,
SLA and their events, one transaction per report), so the worker's start-up (loading the classifier)
is left out. The bare job gets the same number of rows and jobs and the same `max_jobs`.
"""

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

BARE_QUEUE = "intake-bench:bare"


@dataclass
class Throughput:
    jobs: int
    per_second: float
    wall_seconds: float  # from the worker's start to the last one done, start-up included


def processed_rate(table: str) -> tuple[int, float]:
    count = stack.sql(f"SELECT count(*) FROM {table} WHERE processed_at IS NOT NULL")
    span = stack.sql(f"SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM {table}")
    return count, (count - 1) / float(span) if span else 0.0


def intake_worker(reports: int) -> Throughput:
    stack.reset_reports()
    api_key = stack.create_api_key("bench worker")
    with stack.server("intake", 1) as running:
        created = stack.submit_reports(running.url, api_key, reports)
    assert created == reports, f"only {created} of {reports} reports were accepted"
    started = time.monotonic()
    workers = stack.start_workers(1)
    try:
        done = stack.wait_until(
            lambda: stack.sql("SELECT count(*) FROM reports WHERE processed_at IS NOT NULL") >= reports, 600)
        wall = time.monotonic() - started
    finally:
        for process in workers:
            stack.stop_process(process)
    if not done:
        raise RuntimeError("the worker did not process every report in 10 minutes")
    count, rate = processed_rate("reports")
    stack.log(f"intake worker: {count} reports, {rate:.1f}/s ({wall:.1f} s with start-up)")
    return Throughput(count, rate, wall)


def bare_worker(jobs: int) -> Throughput:
    from arq.connections import RedisSettings, create_pool

    # The table comes from the bare app; create it here too when the intake benchmark did not run.
    stack.sql("""CREATE TABLE IF NOT EXISTS bench_bare_reports (id uuid PRIMARY KEY, description text NOT NULL,
                 lat double precision, lon double precision, photo_path text,
                 created_at timestamptz NOT NULL DEFAULT now(), processed_at timestamptz)""")
    stack.reset_reports()
    ids = [uuid.uuid4() for _ in range(jobs)]

    async def fill() -> None:
        import asyncpg

        connection = await asyncpg.connect(stack.database_url())
        try:
            await connection.executemany(
                "INSERT INTO bench_bare_reports (id, description) VALUES ($1, $2)",
                [(report_id, "bare report for the worker benchmark") for report_id in ids],
            )
        finally:
            await connection.close()
        redis = await create_pool(RedisSettings.from_dsn(stack.REDIS_URL))
        for report_id in ids:
            await redis.enqueue_job("bare_update", str(report_id), _queue_name=BARE_QUEUE, _job_id=f"bare:{report_id}")
        await redis.aclose()

    asyncio.run(fill())
    started = time.monotonic()
    log = open(stack.WORK / "bare-worker.log", "w")
    process = subprocess.Popen([str(stack.BIN / "arq"), "bench.bare_worker.WorkerSettings"], cwd=stack.ROOT,
                               env=stack.bench_env(BARE_QUEUE_NAME=BARE_QUEUE), stdout=log, stderr=subprocess.STDOUT)
    try:
        done = stack.wait_until(
            lambda: stack.sql("SELECT count(*) FROM bench_bare_reports WHERE processed_at IS NOT NULL") >= jobs, 300, 0.2)
        wall = time.monotonic() - started
    finally:
        stack.stop_process(process)
    if not done:
        raise RuntimeError("the bare worker did not finish in 5 minutes")
    count, rate = processed_rate("bench_bare_reports")
    stack.log(f"bare worker: {count} jobs, {rate:.1f}/s ({wall:.1f} s with start-up)")
    return Throughput(count, rate, wall)


def run(reports: int = 2000) -> tuple[Throughput, Throughput]:
    result = intake_worker(reports), bare_worker(reports)
    stack.reset_reports()
    return result


def render(intake: Throughput, bare: Throughput) -> str:
    return "\n".join([
        f"One worker process (`max_jobs` 10) on a full queue of {intake.jobs:,} reports filed through the API; "
        "rate from the first to the last `processed_at`.",
        "",
        "| job | jobs | per second | ratio to bare | wall time incl. start-up |",
        "|---|---|---|---|---|",
        f"| `process_report` (classify, priority, duplicates, jurisdiction, route, SLA, events) | {intake.jobs:,} | "
        f"{intake.per_second:,.1f} | {intake.per_second / bare.per_second:.2f} | {intake.wall_seconds:.1f} s |",
        f"| bare arq job: one UPDATE | {bare.jobs:,} | {bare.per_second:,.1f} | 1 | {bare.wall_seconds:.1f} s |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    args = parser.parse_args()
    if not stack.sql_database_exists():
        stack.fresh_database()
    print(render(*run(args.reports)))


if __name__ == "__main__":
    main()
