"""Worker throughput: reports fully processed per second by one `intake worker` process, beside a bare
arq job doing one UPDATE (bench/bare_worker.py), in the same run.

    .venv/bin/python bench/worker_throughput.py [--reports 2000]

The reports are filed first through the API (worker stopped), spread over the demo wards with
storm-like descriptions; then one worker process starts on the full queue. The rate is counted from
the first to the last `processed_at` (classification, priority, duplicates, jurisdiction, routing,
SLA, their events and webhook outbox rows, in batches of reports per transaction), so the worker's
start-up (loading the classifier) is left out. The bare job gets the same number of rows and jobs,
once with the intake worker's `max_jobs` and poll interval and once tuned (max_jobs 200, poll 0.05 s);
the ratio is to the tuned one.
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
TUNED = (200, 0.05)  # the bare job's best on this machine kind: max_jobs, poll interval (s)


def intake_worker_settings() -> tuple[int, float]:
    """`intake worker`'s defaults: max_jobs and poll interval."""
    from service.settings import Settings

    return Settings.model_fields["worker_max_jobs"].default, Settings.model_fields["worker_poll_seconds"].default


@dataclass
class Throughput:
    jobs: int
    per_second: float
    wall_seconds: float  # from the worker's start to the last one done, start-up included
    max_jobs: int = 0
    poll_seconds: float = 0.0
    cpu_ms: float = 0.0  # the worker process's CPU per report or job, start-up left out: steadier on a busy machine


def cpu_seconds(pid: int) -> float:
    times = stack.psutil.Process(pid).cpu_times()
    return times.user + times.system


def drain(pid: int, table: str, count: int, timeout: float) -> tuple[bool, float]:
    """Wait until `count` rows of `table` are processed: (done, the worker's CPU ms per row after its first)."""
    query = f"SELECT count(*) FROM {table} WHERE processed_at IS NOT NULL"
    stack.wait_until(lambda: stack.sql(query) > 0, timeout, 0.05)
    first, cpu_before = stack.sql(query), cpu_seconds(pid)
    done = stack.wait_until(lambda: stack.sql(query) >= count, timeout, 0.1)
    cpu_after, last = cpu_seconds(pid), stack.sql(query)
    return done, (cpu_after - cpu_before) * 1000 / max(last - first, 1)


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
        done, cpu_ms = drain(workers[0].pid, "reports", reports, 600)
        wall = time.monotonic() - started
    finally:
        for process in workers:
            stack.stop_process(process)
    if not done:
        raise RuntimeError("the worker did not process every report in 10 minutes")
    count, rate = processed_rate("reports")
    stack.log(f"intake worker: {count} reports, {rate:.1f}/s, {cpu_ms:.2f} ms CPU each ({wall:.1f} s with start-up)")
    return Throughput(count, rate, wall, *intake_worker_settings(), cpu_ms)


def bare_worker(jobs: int, max_jobs: int, poll_seconds: float) -> Throughput:
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
                               env=stack.bench_env(BARE_QUEUE_NAME=BARE_QUEUE, BARE_MAX_JOBS=str(max_jobs),
                                                   BARE_POLL_SECONDS=str(poll_seconds)), stdout=log, stderr=subprocess.STDOUT)
    try:
        done, cpu_ms = drain(process.pid, "bench_bare_reports", jobs, 300)
        wall = time.monotonic() - started
    finally:
        stack.stop_process(process)
    if not done:
        raise RuntimeError("the bare worker did not finish in 5 minutes")
    count, rate = processed_rate("bench_bare_reports")
    stack.log(f"bare worker (max_jobs {max_jobs}, poll {poll_seconds} s): {count} jobs, {rate:.1f}/s, "
              f"{cpu_ms:.2f} ms CPU each ({wall:.1f} s with start-up)")
    return Throughput(count, rate, wall, max_jobs, poll_seconds, cpu_ms)


def run(reports: int = 2000) -> tuple[Throughput, Throughput, Throughput]:
    result = intake_worker(reports), bare_worker(reports, *intake_worker_settings()), bare_worker(reports, *TUNED)
    stack.reset_reports()
    return result


def render(intake: Throughput, bare_same: Throughput, bare_tuned: Throughput) -> str:
    def row(name: str, figures: Throughput) -> str:
        return (f"| {name} | {figures.max_jobs} / {figures.poll_seconds:g} s | {figures.jobs:,} | "
                f"{figures.per_second:,.1f} | {figures.per_second / bare_tuned.per_second:.2f} | "
                f"{figures.cpu_ms:.2f} ms | {figures.wall_seconds:.1f} s |")

    ratio = intake.per_second / bare_tuned.per_second
    return "\n".join([
        f"One worker process on a full queue of {intake.jobs:,} reports filed through the API; rate from the first "
        "to the last `processed_at`. The bare arq job runs with the intake worker's settings and tuned. Worker CPU "
        "each: the worker process's user + system CPU per report or job after its first (PostgreSQL's and "
        "Redis's not counted), the steadier figure on a busy machine.",
        "",
        "| job | max_jobs / poll | reports or jobs | per second | ratio to the tuned bare job | worker CPU each "
        "| wall time incl. start-up |",
        "|---|---|---|---|---|---|---|",
        row("`process_report` (classify, priority, duplicates, jurisdiction, route, SLA, events, outbox), batched",
            intake),
        row("bare arq job: one UPDATE, the intake worker's settings", bare_same),
        row("bare arq job: one UPDATE, tuned", bare_tuned),
        "",
        f"Goal (worker ≥ 0.7 × the tuned bare job): {'met' if ratio >= 0.7 else 'not met'} ({ratio:.2f}).",
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
