"""No report is left behind: real worker processes are killed, Redis is stopped, and every report is still processed once."""

import os
import signal
import subprocess
import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import col, select

from service.main import create_app
from service.models import Report, ReportEvent
from tests.conftest import in_app
from tests.factories import report_body
from tests.processes import INTAKE, RedisServer

FINAL_EVENTS = ("status_changed",)  # the pipeline's one move out of `received`


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(settings, redis_server, tmp_path):
    """The API in-process and a way to start real `intake worker` processes, all on our own Redis."""
    if settings.is_sqlite:
        pytest.skip("the process drills run on PostgreSQL; SQLite is covered by the in-process pipeline tests")
    app_settings = settings.model_copy(update={"redis_url": redis_server.url, "queue_name": f"e2e:{os.getpid()}"})
    env = {
        **os.environ,
        "DATABASE_URL": app_settings.database_url,
        "REDIS_URL": app_settings.redis_url,
        "QUEUE_NAME": app_settings.queue_name,
        "MEDIA_DIR": str(app_settings.media_dir),
        "MODEL_CACHE_DIR": str(app_settings.model_cache_dir),
        "SECRET_KEY": app_settings.secret_key,
        "JOB_TIMEOUT_SECONDS": "3",
        # arq retries a killed worker's jobs after the longest job timeout: keep every job short here.
        "WEBHOOK_TOTAL_TIMEOUT_SECONDS": "1",
        "IOC_ROLLUP_TIMEOUT_SECONDS": "3",
        "STALE_REPORT_SECONDS": "1",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
    }
    workers: list[subprocess.Popen] = []

    def start_worker() -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(workers)}.log", "w")
        process = subprocess.Popen([INTAKE, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        workers.append(process)
        return process

    with TestClient(create_app(app_settings)) as client:
        yield client, start_worker
    for process in workers:
        if process.poll() is None:
            process.kill()
            process.wait()


def processed_count(client) -> int:
    async def count(session):
        return (await session.exec(select(func.count()).where(col(Report.processed_at).is_not(None)))).one()

    return in_app(client, count)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def final_events_per_report(client) -> Counter:
    async def load(session):
        rows = await session.exec(select(ReportEvent.report_id).where(col(ReportEvent.type).in_(FINAL_EVENTS)))
        return Counter(rows.all())

    return in_app(client, load)


def classified_events_per_report(client) -> Counter:
    async def load(session):
        return Counter(
            (await session.exec(select(ReportEvent.report_id).where(ReportEvent.type == "classified"))).all()
        )

    return in_app(client, load)


def submit_many(client, api_key, count: int) -> list[str]:
    ids = []
    for number in range(count):
        # Spread over distinct streets so duplicates do not hide anything.
        body = report_body(
            description=f"Đèn đường số {number} trên đường Lê Lợi bị tắt mấy đêm nay",
            lat=10.7700 + number * 0.0004,
            lon=106.6990,
        )
        response = client.post("/v1/reports", json=body, headers={"X-API-Key": api_key})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


@pytest.fixture
def small_batches(monkeypatch):
    """Worker processes that take a few reports per transaction, so a kill lands between batches and in one."""
    monkeypatch.setenv("WORKER_BATCH_MAX", "5")


def test_worker_killed_mid_batch_leaves_every_report_processed_once(small_batches, stack, api_key):
    client, start_worker = stack
    total = 300
    submit_many(client, api_key, total)
    worker = start_worker()
    wait_until(lambda: processed_count(client) >= 10, 60, "the first reports to be processed")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert processed_count(client) < total, "the worker finished before it could be killed"

    start_worker()
    wait_until(lambda: processed_count(client) == total, 90, "every report to be processed after the restart")
    finals, classified = final_events_per_report(client), classified_events_per_report(client)
    assert len(finals) == total and set(finals.values()) == {1}
    assert len(classified) == total and set(classified.values()) == {1}


def test_report_filed_while_redis_is_down_is_processed_when_it_is_back(stack, api_key, redis_server):
    client, start_worker = stack
    redis_server.stop()
    started = time.monotonic()
    response = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key})
    assert response.status_code == 201, response.text
    assert time.monotonic() - started < 3, "intake must not hang on a dead Redis"
    assert client.get("/readyz").status_code == 503

    redis_server.start()
    time.sleep(1.2)  # older than STALE_REPORT_SECONDS, so the sweep takes it
    start_worker()
    wait_until(lambda: processed_count(client) == 1, 60, "the report to be processed")
    assert set(final_events_per_report(client).values()) == {1}
