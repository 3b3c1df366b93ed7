"""arq worker settings: the jobs, the cron sweeps, and the resources built once per process."""

import asyncio
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings

from service import privacy
from service.classify.model import Classifier
from service.db import create_engine, session_factory
from service.jobs import PROCESS_PHOTOS, PROCESS_REPORT
from service.jurisdictions.service import JurisdictionCache
from service.photos.storage import LocalStorage
from service.pipeline.service import PipelineResources
from service.settings import Settings, get_settings
from service.webhooks import outbox
from service.webhooks.delivery import build_http_client
from workers.ioc import refresh_ioc_rollup
from workers.lifecycle import close_resolved_tickets, erase_personal_data
from workers.reports import process_photos, process_report, sweep_stale_reports
from workers.sla import sweep_sla
from workers.webhooks import deliver_webhooks, job_timeout_seconds, sweep_webhooks


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
            jurisdictions=JurisdictionCache(),
            storage=LocalStorage(settings.media_dir),
        )
        ctx["http"] = build_http_client(settings)  # webhook deliveries
        outbox.bind_queue(ctx["engine"], ctx["redis"], settings.queue_name, settings.public_base_url)

    async def on_shutdown(ctx: dict) -> None:
        await outbox.wait_for_handoffs()
        await ctx["http"].aclose()
        await ctx["engine"].dispose()

    async def on_job_end(ctx: dict) -> None:
        # Webhook events a job committed reach the queue before the job counts as done.
        await outbox.wait_for_handoffs()

    return {
        "functions": [
            # keep_result=0: a finished job must not block the sweep from enqueueing the same id again.
            func(process_report, name=PROCESS_REPORT, keep_result=0, max_tries=8),
            func(process_photos, name=PROCESS_PHOTOS, keep_result=0, max_tries=5),
            # Retries are arq Retry deferrals of the stream's one job, hence the generous max_tries.
            func(deliver_webhooks, name=outbox.DELIVER_WEBHOOKS, keep_result=0, max_tries=1000,
                 timeout=job_timeout_seconds(settings)),
        ],
        "cron_jobs": [
            # Cron jobs are unique per tick: with many workers, each sweep still runs once.
            cron(sweep_stale_reports, second={5, 35}, run_at_startup=True, keep_result=0),
            cron(sweep_sla, second={20}, run_at_startup=True, keep_result=0),
            cron(close_resolved_tickets, minute={7}, second={0}, keep_result=0),
            cron(erase_personal_data, hour={2}, minute={15}, second={0}, keep_result=0),
            cron(sweep_webhooks, second={10, 25, 40, 55}, run_at_startup=True, keep_result=0),
            cron(refresh_ioc_rollup, second={0, 15, 30, 45}, run_at_startup=True, keep_result=0),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_end": on_job_end,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": 10,
        # Also bounds how long a job lost with a killed worker waits before arq runs it again.
        "job_timeout": settings.job_timeout_seconds,
        "retry_jobs": True,
        "health_check_interval": 30,
    }


class WorkerSettings:
    """What `intake worker` (arq) runs, configured from the environment."""


for _name, _value in worker_options(get_settings()).items():
    setattr(WorkerSettings, _name, _value)
