"""Test fixtures: real PostgreSQL and Redis, and a second pass of everything on SQLite.

Each backend gets a fresh database migrated by Alembic (the same migrations `make run` uses);
each test starts from empty report tables with the demo catalogue loaded.
"""

import asyncio
import fcntl
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.catalogue import service as catalogue_service
from service.db import create_engine, session_factory
from service.main import create_app
from service.ratelimit import RateLimiter
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BACKENDS = [b for b in os.environ.get("TEST_BACKENDS", "postgresql,sqlite").split(",") if b]
# The catalogue survives between tests; every other table is emptied before each test.
CATALOGUE_TABLES = {
    "catalogue_versions",
    "departments",
    "service_categories",
    "jurisdictions",
    "routing_rules",
    "sla_policies",
    "alembic_version",
}


# The classifier's cache every test shares (the workers' MODEL_CACHE_DIR, the unit tests'): trained once per
# corpus, then loaded.
MODEL_CACHE = ROOT / ".cache" / "models"


def trained_model_cache() -> Path:
    """MODEL_CACHE, with the model for the current corpus in it. Under pytest-xdist every worker starts at
    once: without the lock each found no model and trained its own at the same time (minutes of CPU on a
    loaded machine, for one result). The cache file itself is written atomically (temp file, os.replace),
    so a reader never sees half of it; the lock only keeps the others waiting for the first one's model."""
    from service.classify.model import Classifier, corpus_version

    if (MODEL_CACHE / f"classifier-{corpus_version()}.joblib").exists():
        return MODEL_CACHE
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    with open(MODEL_CACHE / ".training.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not (MODEL_CACHE / f"classifier-{corpus_version()}.joblib").exists():
            Classifier.load_or_train(MODEL_CACHE)
    return MODEL_CACHE


# Modules run whole on one pytest-xdist worker (make test runs `-n ... --dist loadgroup`): their tests share
# a module-scoped fixture too costly to build on every worker that would get one of them. The API fuzzing's
# `target` (seeded data behind an `intake serve`), the IOC wall's `wall` (3,000 seeded tickets, a server,
# chromium at each screen size), the classifier's `cross_validated` (fifteen trainings, minutes of CPU).
ONE_WORKER_MODULES = {"tests/test_api_fuzz.py", "tests/test_ioc_wall.py", "tests/unit/test_classifier_cv.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with ONE_WORKER_MODULES as the groups. pytest-xdist's own loadgroup reads
    `xdist_group` marks by renaming each item's nodeid (`item._nodeid`), which pytest 9 no longer reads:
    the marks were silently ignored (the first -n 4 run built the fuzzing's server on every worker and
    ran the cross-validation twice). The groups are chosen here from the nodeids instead. As in loadgroup,
    larger groups are handed out first, so these start at once instead of ending the run."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return ModuleGroups(config, log)


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


async def _pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def run_in_session(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    async def runner():
        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(runner())


async def _import_demo_jurisdictions(session) -> None:
    from service.jurisdictions.service import import_demo

    await import_demo(session)


@pytest.fixture(scope="session", params=BACKENDS)
def settings(request, tmp_path_factory) -> Iterator[Settings]:
    backend = request.param
    base = tmp_path_factory.mktemp(backend)
    if backend == "postgresql":
        name = f"intake_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{base}/intake.db"
    settings = Settings(
        _env_file=None,
        database_url=url,
        redis_url=TEST_REDIS_URL,
        queue_name=f"intake-test:{os.getpid()}:{backend}",
        media_dir=base / "media",
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        public_base_url="http://testserver",
        log_json=False,
        # Shared across runs, backends and xdist workers: the classifier is trained once, then loaded.
        model_cache_dir=trained_model_cache(),
        job_timeout_seconds=10,
        gc_tuning=False,  # many apps and workers in one process: nothing start-up made should be frozen
        # A loaded CI machine took more than the default second to connect (the `client` fixture's setup;
        # a burst of 40 reports opening new database connections at once, on 4 test workers).
        redis_connect_timeout_seconds=10,
        db_connect_timeout_seconds=10,
        # Tests send many reports from one address; the limits have tests of their own.
        rate_limit_intake_per_key="100000/minute",
        rate_limit_intake_per_address="100000/minute",
        rate_limit_intake_per_reporter="100000/minute",
        rate_limit_sign_in="100000/minute",
        rate_limit_tracking_lookup="100000/minute",
    )
    migrate(url)
    # The map first: the catalogue's routing rules are checked against it.
    run_in_session(settings, _import_demo_jurisdictions)
    catalogue, checksum = catalogue_service.read_file(ROOT / "service" / "catalogue" / "catalogue.yaml")
    run_in_session(
        settings, lambda s: catalogue_service.load(s, catalogue=catalogue, checksum=checksum, source="tests")
    )
    yield settings
    if backend == "postgresql":
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    async def empty_tables(session) -> None:
        from service.db import metadata

        for table in reversed(metadata.sorted_tables):
            if table.name not in CATALOGUE_TABLES:
                await session.exec(text(f"DELETE FROM {table.name}"))

    run_in_session(settings, empty_tables)
    shutil.rmtree(settings.media_dir, ignore_errors=True)
    with TestClient(create_app(settings)) as test_client:
        test_client.portal.call(test_client.app.state.arq.delete, settings.queue_name, settings.webhook_queue_name)
        yield test_client


@contextmanager
def limits_app(settings: Settings, **update: Any) -> Iterator[TestClient]:
    """An app of its own with these settings (limits, usually) and a queue of its own, whose rate limiter
    waits up to 10 s for Redis. Tests of limits check what the limits count, not how long Redis may take:
    on a loaded CI machine a check took longer than the 250 ms after which the limiter fails open, and a
    limit test saw the request let through. A check that waits 10 s still fails any event loop kept
    blocked (by password hashing, say)."""
    tight = settings.model_copy(update={"queue_name": f"limits-{uuid.uuid4().hex[:8]}", **update})
    with TestClient(create_app(tight)) as app:
        # Its Redis clients too wait 10 s (a sign-in burst on a loaded machine saw a 1 s socket timeout fire).
        made = app.app.state.rate_limiter
        limiter = RateLimiter.from_url(tight.redis_url, made.prefix, connect_timeout=10, socket_timeout=10)
        limiter.check_timeout = limiter.breaker.slow_seconds = 10
        app.app.state.rate_limiter = limiter
        app.portal.call(made.aclose)
        yield app


def in_app(client: TestClient, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(session)` on the app's own engine and event loop, committing at the end."""

    async def runner():
        async with client.app.state.sessions() as session:
            result = await work(session)
            await client.app.state.handoff.commit(session)  # as the API's boundary does: jobs and webhooks follow
            return result

    return client.portal.call(runner)


@pytest.fixture
def api_key(client: TestClient) -> str:
    from service.auth import api_keys

    async def create(session):
        return (await api_keys.create(session, name="test app")).key

    return in_app(client, create)


def run_worker(client: TestClient) -> Any:
    """Run the real arq workers of `intake worker` in burst mode (in this process): the reports' until
    their queue is empty, then the webhook deliveries' (which the reports' jobs hand on) until theirs is.
    The reports' worker, for its counts of jobs (`jobs_complete`, `jobs_failed`, `jobs_retried`)."""
    from arq.worker import Worker

    from workers.main import build_workers

    async def burst() -> Worker:
        # The API hands work to Redis in the background after its answers: what is on its way first.
        await client.app.state.handoff.drain()
        reports, webhooks = build_workers(
            client.app.state.settings, crons=False, burst=True, poll_delay=0.05, handle_signals=False
        )
        try:
            await reports.main()
            await webhooks.main()
        finally:
            await webhooks.close()
            await reports.close()
        return reports

    return client.portal.call(burst)


def worker_context(client: TestClient) -> dict:
    """The ctx a worker's on_startup builds, for calling cron jobs directly."""
    from workers.main import worker_options

    ctx: dict = {"redis": client.app.state.arq}
    client.portal.call(worker_options(client.app.state.settings)["on_startup"], ctx)
    return ctx
