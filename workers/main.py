"""arq worker settings: the jobs, the cron sweeps, and the resources built once per process."""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.cron import CronJob
from arq.typing import StartupShutdown, WorkerCoroutine
from arq.worker import Function
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


def worker_options(settings: Settings) -> dict[str, Any]:
    """Everything arq's Worker needs; tests build an in-process worker from the same options."""

    async def on_startup(ctx: dict) -> None:
        ctx["settings"] = settings
        privacy.configure(settings.pii_encryption_keys, settings.secret_key)
        ctx["engine"] = create_engine(settings)
        ctx["sessions"] = session_factory(ctx["engine"])
        # SQLite has one writer: processing one report at a time keeps duplicate decisions race-free.
        ctx["serial"] = asyncio.Lock() if settings.is_sqlite else None
        classifier = await asyncio.to_thread(Classifier.load_or_train, settings.model_cache_dir)
        ctx["pipeline"] = PipelineResources(
            settings=settings,
            classifier=classifier,
            catalogue=CatalogueCache(),
            storage=build_storage(settings),
        )
        ctx["http"] = build_http_client(settings)  # webhook deliveries
        ctx["handoff"] = Handoff(ctx["redis"], settings.queue_name)  # what a job's commit hands on
        ctx["processed_here"] = ProcessedHere()  # each job gets a copy of ctx: shared state is made here
        outbox.configure(
            ctx["engine"],
            settings.public_base_url,
            subscription_cache_seconds=settings.webhook_subscription_cache_seconds,
        )
        if settings.gc_tuning:
            tune_after_start_up()  # the classifier's vocabularies are large: collections should skip them

    async def on_shutdown(ctx: dict) -> None:
        # arq calls this after a failed start-up too, with only part of ctx built: release what exists,
        # and never let one failure hide the error that stopped the worker (or skip the next release).
        steps = []
        if "handoff" in ctx:
            steps.append(("hand-offs to the queue", ctx["handoff"].drain))
        if "http" in ctx:
            steps.append(("HTTP client", ctx["http"].aclose))
        if "engine" in ctx:
            steps.append(("database engine", ctx["engine"].dispose))
        for what, step in steps:
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - shutting down: log and go on
                log.warning("worker shutdown: %s not released cleanly (%s)", what, type(exc).__name__)

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
            # Retries are arq Retry deferrals of the stream's one job, hence the generous max_tries.
            func(
                deliver_webhooks,
                name=outbox.DELIVER_WEBHOOKS,
                keep_result=0,
                max_tries=1000,
                timeout=job_timeout_seconds(settings),
            ),
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


class WorkerSettings:
    """What `intake worker` (arq) runs, configured from the environment."""

    # Set just below from worker_options(); declared for arq's WorkerSettingsBase protocol.
    functions: Sequence[WorkerCoroutine | Function]
    cron_jobs: Sequence[CronJob] | None
    on_startup: StartupShutdown | None
    on_shutdown: StartupShutdown | None
    poll_delay: float


for _name, _value in worker_options(get_settings()).items():
    setattr(WorkerSettings, _name, _value)
# arq starts new jobs only when it polls (default every 0.5 s): with short jobs that, not the CPU,
# capped a worker at max_jobs / 0.5 s. (Tests' in-process workers choose their own poll_delay.)
WorkerSettings.poll_delay = get_settings().worker_poll_seconds
