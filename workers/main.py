"""The `intake worker` process: two arq workers, the jobs, the cron sweeps, and the resources they share.

Webhook deliveries wait on their receivers (up to the read and total timeouts, for a receiver that is
slow or never answers), so they have a queue and slots of their own: `worker_options` serves the
reports' queue (processing, photos, the sweeps), `webhook_worker_options` the deliveries' queue, and
`serve` runs both in one process, with one database engine, one shutdown and one signal handling.
"""

import asyncio
import contextlib
import logging
import signal
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import Function, Worker
from redis.exceptions import RedisError

from service import privacy
from service.catalogue.snapshot import CatalogueCache
from service.classify.model import Classifier
from service.db import create_engine, session_factory
from service.gc_tuning import tune_after_start_up
from service.handoff import Handoff
from service.jobs import PROCESS_PHOTOS, PROCESS_REPORT
from service.photos.storage import build_storage
from service.pipeline.service import PipelineResources
from service.settings import Settings, get_settings
from service.webhooks import outbox
from service.webhooks.delivery import build_http_client
from workers.ioc import refresh_ioc_rollup
from workers.lifecycle import announce_deadlines_near, close_resolved_tickets, erase_personal_data, sweep_sla
from workers.reports import ProcessedHere, process_photos, process_report, sweep_stale_reports
from workers.webhooks import deliver_webhooks, job_timeout_seconds, sweep_webhooks

log = logging.getLogger("service.worker")

# How long a finished cron tick is remembered (see cron_jobs below).
CRON_RESULT_SECONDS = 300


class SharedResources:
    """What the two workers of a process share: the database engine and the HTTP client. The first
    start-up builds them, the last shutdown releases them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.users = 0
        self.built: dict[str, Any] = {}

    def acquire(self, ctx: dict) -> None:
        if not self.built:
            settings = self.settings
            privacy.configure(settings.pii_encryption_keys, settings.secret_key)
            engine = create_engine(settings)
            self.built = {"engine": engine, "sessions": session_factory(engine)}
            self.built["http"] = build_http_client(settings)  # webhook deliveries
            outbox.configure(
                engine, settings.public_base_url, subscription_cache_seconds=settings.webhook_subscription_cache_seconds
            )
        self.users += 1
        ctx.update(settings=self.settings, **self.built)

    def release(self) -> bool:
        """Whether the caller was the last user, and should release what its ctx holds."""
        self.users = max(self.users - 1, 0)
        if self.users == 0:
            self.built = {}
            return True
        return False


async def _release(ctx: dict, shared: SharedResources) -> None:
    # arq calls on_shutdown after a failed start-up too, with only part of ctx built: release what exists,
    # and never let one failure hide the error that stopped the worker (or skip the next release).
    steps = []
    if "handoff" in ctx:
        steps.append(("hand-offs to the queue", ctx["handoff"].drain))
    if shared.release():
        if "http" in ctx:
            steps.append(("HTTP client", ctx["http"].aclose))
        if "engine" in ctx:
            steps.append(("database engine", ctx["engine"].dispose))
    for what, step in steps:
        try:
            await step()
        except Exception as exc:  # noqa: BLE001 - shutting down: log and go on
            log.warning("worker shutdown: %s not released cleanly (%s)", what, type(exc).__name__)


def worker_options(settings: Settings, shared: SharedResources | None = None) -> dict[str, Any]:
    """The reports' worker (processing, photos, the sweeps), as arq's Worker takes it; tests build an
    in-process worker from the same options."""
    shared = shared or SharedResources(settings)

    async def on_startup(ctx: dict) -> None:
        shared.acquire(ctx)
        # SQLite has one writer: processing one report at a time keeps duplicate decisions race-free.
        ctx["serial"] = asyncio.Lock() if settings.is_sqlite else None
        classifier = await asyncio.to_thread(Classifier.load_or_train, settings.model_cache_dir)
        ctx["pipeline"] = PipelineResources(
            settings=settings,
            classifier=classifier,
            catalogue=CatalogueCache(),
            storage=build_storage(settings),
        )
        # What a job's commit hands on.
        ctx["handoff"] = Handoff(ctx["redis"], settings.queue_name, settings.webhook_queue_name)
        ctx["processed_here"] = ProcessedHere()  # each job gets a copy of ctx: shared state is made here
        if settings.gc_tuning:
            tune_after_start_up()  # the classifier's vocabularies are large: collections should skip them

    async def on_shutdown(ctx: dict) -> None:
        await _release(ctx, shared)

    # arq hides a started job from other workers for the longest timeout of any function plus 10 s, and the
    # IOC rollup's 900 s sets that: a killed worker's reports would wait 15 minutes. Each job (crons aside)
    # shortens its own mark to the longest timeout of the non-cron jobs + 10 s (in_progress_ms, set below).

    async def on_job_start(ctx: dict) -> None:
        if not ctx["job_id"].startswith("cron:"):
            with contextlib.suppress(RedisError, OSError):  # the long mark stays: slower recovery, nothing lost
                await ctx["redis"].pexpire(in_progress_key_prefix + ctx["job_id"], in_progress_ms)

    async def on_job_end(ctx: dict) -> None:
        # What a job committed (webhook streams, jobs) reaches the queue before the job counts as done.
        if "handoff" in ctx:
            await ctx["handoff"].drain()

    options: dict[str, Any] = {
        "functions": [
            # keep_result=0: a finished job must not block the sweep from enqueueing the same id again.
            func(process_report, name=PROCESS_REPORT, keep_result=0, max_tries=8),
            func(process_photos, name=PROCESS_PHOTOS, keep_result=0, max_tries=5),
            # Only for deliveries queued here before they had a queue of their own (an upgrade): unknown
            # to this worker, they would fail and their ids stay taken for an hour. New ones never come here.
            _delivery(settings),
        ],
        "cron_jobs": [
            # Cron jobs are unique per tick (job id = name + tick time): with many workers, each sweep still
            # runs once. The result is kept for a while so that a worker whose loop runs late cannot
            # enqueue a tick that already ran; the sweeps also lock the rows they change (SKIP LOCKED),
            # so the startup runs (one per worker) never do the same work twice.
            cron(sweep_stale_reports, second={5, 35}, run_at_startup=True, keep_result=CRON_RESULT_SECONDS),
            cron(sweep_sla, second={20}, run_at_startup=True, keep_result=CRON_RESULT_SECONDS),
            cron(announce_deadlines_near, second={50}, keep_result=CRON_RESULT_SECONDS),
            cron(close_resolved_tickets, minute={7}, second={0}, keep_result=CRON_RESULT_SECONDS),
            cron(erase_personal_data, hour={2}, minute={15}, second={0}, keep_result=CRON_RESULT_SECONDS),
            cron(sweep_webhooks, second={10, 25, 40, 55}, run_at_startup=True, keep_result=CRON_RESULT_SECONDS),
            # arq retries a killed worker's jobs only after the longest job timeout, so this one stays short;
            # the first build of a large rollup belongs to `intake seed` or a quiet hour (see README).
            cron(
                refresh_ioc_rollup,
                second={0, 15, 30, 45},
                run_at_startup=True,
                keep_result=CRON_RESULT_SECONDS,
                timeout=settings.ioc_rollup_timeout_seconds,
            ),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_start": on_job_start,
        "on_job_end": on_job_end,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_max_jobs,
        # Also bounds how long a job lost with a killed worker waits before arq runs it again.
        "job_timeout": settings.job_timeout_seconds,
        "retry_jobs": True,
        "health_check_interval": 30,
    }
    in_progress_ms = int((max(f.timeout_s or settings.job_timeout_seconds for f in options["functions"]) + 10) * 1000)
    return options


def _delivery(settings: Settings) -> Function:
    # Retries are arq Retry deferrals of the stream's one job, hence the generous max_tries.
    # keep_result=0: a finished stream must not block its next hand-off.
    return func(
        deliver_webhooks,
        name=outbox.DELIVER_WEBHOOKS,
        keep_result=0,
        max_tries=1000,
        timeout=job_timeout_seconds(settings),
    )


def webhook_worker_options(settings: Settings, shared: SharedResources | None = None) -> dict[str, Any]:
    """The deliveries' worker: its own queue and slots, so that receivers that are slow or never answer
    only ever wait for each other, never hold back a report's processing."""
    shared = shared or SharedResources(settings)

    async def on_startup(ctx: dict) -> None:
        shared.acquire(ctx)

    async def on_shutdown(ctx: dict) -> None:
        await _release(ctx, shared)

    return {
        "functions": [_delivery(settings)],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.webhook_queue_name,
        "max_jobs": settings.webhook_max_jobs,
        # arq runs a killed worker's stream again after this job's timeout + 10 s (the stream's lease
        # keeps a second sender out meanwhile).
        "job_timeout": job_timeout_seconds(settings),
        "retry_jobs": True,
        "health_check_interval": 30,
    }


def build_workers(settings: Settings, *, crons: bool = True, **worker_arguments: Any) -> tuple[Worker, Worker]:
    """The process's two workers (reports, then webhook deliveries), sharing one engine and HTTP client.
    Build them inside the event loop that runs them."""
    shared = SharedResources(settings)
    reports = worker_options(settings, shared)
    if not crons:
        reports.pop("cron_jobs")
    webhooks = webhook_worker_options(settings, shared)
    return Worker(**reports, **worker_arguments), Worker(**webhooks, **worker_arguments)


async def serve(settings: Settings) -> None:
    """Run both workers until SIGINT or SIGTERM, or until one of them stops (Redis lost: its error is
    raised once both are closed, so the caller can start again)."""
    # arq starts new jobs only when it polls (default every 0.5 s): with short jobs that, not the CPU,
    # capped a worker at max_jobs / 0.5 s. One signal handler for both, below, instead of one each.
    workers = build_workers(settings, poll_delay=settings.worker_poll_seconds, handle_signals=False)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    runs = [asyncio.ensure_future(worker.async_run()) for worker in workers]
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait([*runs, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        # As arq does on a signal: running jobs are cancelled (and run again later), then each worker closes.
        closed = [await _close(worker) for worker in workers]
        ended = await asyncio.gather(*runs, return_exceptions=True)
    failures = [error for error in [*ended, *closed] if isinstance(error, Exception)]
    if failures:
        raise failures[0]


async def _close(worker: Worker) -> Exception | None:
    # Stop polling and cancel the running jobs first, waiting for them here: a job cancelled between arq's
    # own steps (not inside its error handling) must not break off the close that releases the resources.
    if worker.main_task is not None:
        worker.main_task.cancel()
    running = [task for task in worker.tasks.values() if not task.done()]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    worker.tasks = {}
    try:
        await worker.close()
    except Exception as exc:  # noqa: BLE001 - the other worker still closes; serve raises it afterwards
        return exc
    return None


def run(settings: Settings | None = None) -> None:
    """`intake worker`: both workers, configured from the environment."""
    asyncio.run(serve(settings or get_settings()))
