"""CPU of the intake writer's group commit, in process: `add_new` + commit, and the jobs' hand-off to Redis.

    .venv/bin/python bench/profile_writer.py [--backend postgresql|sqlite] [--reports 2000] [--group 10] [--profile]

Builds the reports with `prepare` beforehand (not measured), then commits them in groups as the intake
writer does, on a fresh database (dropped afterwards), and prints µs of CPU per report for the commit and
for the hand-off of its jobs (drained after each group). `--profile` prints cProfile's top functions.
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arq.connections import RedisSettings, create_pool
from bench.stack import PG_ADMIN_DSN, _admin
from tests.conftest import migrate

from service.db import SessionOnDemand, create_engine, session_factory
from service.handoff import Handoff
from service.models import ApiClient
from service.reports import service
from service.reports.schemas import ReportCreate
from service.settings import Settings
from service.webhooks import outbox



async def main(backend: str, reports: int, group: int, profile: bool) -> None:
    name = f"writer_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if backend == "postgresql":
        await _admin(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    settings = Settings(
        _env_file=None,
        database_url=url,
        redis_url="redis://127.0.0.1:6379/14",
        queue_name=f"writer-bench:{os.getpid()}",
        secret_key="bench-secret-key-that-is-long-enough-for-hs256",
        log_json=False,
    )
    try:
        await asyncio.to_thread(migrate, url)
        engine = create_engine(settings)
        outbox.configure(
            engine, settings.public_base_url, subscription_cache_seconds=settings.webhook_subscription_cache_seconds
        )
        sessions = session_factory(engine)
        arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
        handoff = Handoff(arq, settings.queue_name, settings.webhook_queue_name)
        client = ApiClient(name="bench", key_prefix=uuid.uuid4().hex[:12], key_hash="x")
        async with sessions() as session:
            session.add(client)
            await session.commit()
        lat = (settings.service_area[0] + settings.service_area[2]) / 2
        lon = (settings.service_area[1] + settings.service_area[3]) / 2
        built = []
        async with sessions() as session:
            for n in range(reports + 10 * group):
                data = ReportCreate(title=f"Ổ gà số {n}", description="Ổ gà lớn giữa đường", lat=lat, lon=lon)
                new = await service.prepare(
                    SessionOnDemand.of(session),
                    client=client,
                    data=data,
                    photos=[],
                    idempotency_key=None,
                    settings=settings,
                )
                assert isinstance(new, service.NewReport)
                built.append(new)
        groups = [built[start : start + group] for start in range(0, len(built), group)]
        warm, measured = groups[:10], groups[10:]

        # Each group's CPU by step; the median group is what is printed (the machine is shared: spikes).
        spent: dict[str, list[float]] = {"add_new": [], "commit": [], "hand-off": []}

        async def commit(batch, spent):
            started = time.process_time()
            async with sessions() as session:
                await service.add_new(session, batch)
                added = time.process_time()
                await session.commit()
                pending = session.info.pop("handoff.pending", None)
            committed = time.process_time()
            handoff.send(pending)
            await handoff.drain()
            spent["add_new"].append(added - started)
            spent["commit"].append(committed - added)
            spent["hand-off"].append(time.process_time() - committed)

        for batch in warm:
            await commit(batch, {name: [] for name in spent})
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        for batch in measured:
            await commit(batch, spent)
        if profiler:
            profiler.disable()
        medians = {name: statistics.median(seconds) / group for name, seconds in spent.items()}
        print(
            f"{backend}: {reports} reports in groups of {group}, µs CPU/report (median group): "
            + ", ".join(f"{name} {seconds * 1e6:.0f}" for name, seconds in medians.items())
            + f", all {sum(medians.values()) * 1e6:.0f}"
        )
        if profiler:
            stats = pstats.Stats(profiler)
            by_package: dict[str, float] = {}
            for (file, _, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
                where = file.split("site-packages/")[-1].split("/")[0] if "site-packages" in file else file
                where = "service/" + file.split("/service/")[-1] if "/service/" in file else where
                where = "asyncio" if "asyncio" in file else where
                where = function if file == "~" else where
                by_package[where] = by_package.get(where, 0) + own
            for where, own in sorted(by_package.items(), key=lambda item: -item[1])[:25]:
                print(f"{own / reports * 1e6:8.1f} µs/report  {where}")
            stats.sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "30")))
        job_keys = [f"arq:job:process_report:{batch[0].values['id']}" for batch in groups]
        await arq.delete(settings.queue_name, *job_keys)
        await arq.aclose()
        await engine.dispose()
    finally:
        if backend == "postgresql":
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--reports", type=int, default=3000)
    parser.add_argument("--group", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.backend, arguments.reports, arguments.group, arguments.profile))
