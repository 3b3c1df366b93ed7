"""arq worker settings: the jobs, the cron sweeps, and the resources built once per process."""

from arq import cron, func
from arq.connections import RedisSettings

from service.db import create_engine, session_factory
from service.jobs import PROCESS_REPORT
from service.photos.storage import LocalStorage
from service.settings import get_settings
from workers.reports import process_report, sweep_stale_reports

settings = get_settings()


async def on_startup(ctx: dict) -> None:
    ctx["settings"] = settings
    ctx["engine"] = create_engine(settings)
    ctx["sessions"] = session_factory(ctx["engine"])
    ctx["storage"] = LocalStorage(settings.media_dir)


async def on_shutdown(ctx: dict) -> None:
    await ctx["engine"].dispose()


class WorkerSettings:
    functions = [
        # keep_result=0: a finished job must not block the sweep from enqueueing the same id again.
        func(process_report, name=PROCESS_REPORT, keep_result=0, max_tries=8),
    ]
    cron_jobs = [
        # unique=True (the default) makes one worker among many run each tick.
        cron(sweep_stale_reports, second={5, 35}, run_at_startup=True, keep_result=0),
    ]
    on_startup = on_startup
    on_shutdown = on_shutdown
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    queue_name = settings.queue_name
    max_jobs = 10
    job_timeout = 120
    retry_jobs = True
    health_check_interval = 30
