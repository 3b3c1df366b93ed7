"""What the production shape relies on, tested here without containers: migrations found from an installed
package, a worker whose start-up failed shuts down cleanly, and HAProxy (deploy/haproxy.cfg, Debian's
haproxy) hands the replicas the client's real address whatever X-Forwarded-For the client sends.
The containers themselves: tests/test_image.py (make test-image)."""

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import alembic
import httpx
import pytest
import yaml

from tests.conftest import ROOT, in_app
from tests.factories import report_body
from tests.processes import INTAKE, HAProxy, haproxy_binary, live_api, settings_environment


def test_migrate_runs_from_an_installed_package(tmp_path):
    # Installed from a wheel, `service` sits in site-packages next to the Alembic library's own `alembic/`
    # folder; the migrations are in the working directory (the image's /app).
    site = tmp_path / "site-packages"
    site.mkdir()
    for package in ("service", "workers"):
        shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(alembic.__file__).parent, site / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    app = tmp_path / "app"
    app.mkdir()
    shutil.copytree(ROOT / "alembic", app / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", app / "alembic.ini")
    database = tmp_path / "intake.db"
    env = {**os.environ, "PYTHONPATH": str(site), "DATABASE_URL": f"sqlite:///{database}"}
    env.pop("MIGRATIONS_DIR", None)

    run = subprocess.run(
        [sys.executable, "-c", "from service.cli import app; app()", "migrate"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
        assert connection.execute("SELECT count(*) FROM reports").fetchone() == (0,)


def test_migrate_without_migrations_says_where_it_looked(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'intake.db'}",
        "MIGRATIONS_DIR": str(tmp_path / "nowhere"),
    }
    run = subprocess.run(
        [str(Path(sys.executable).parent / "intake"), "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "MIGRATIONS_DIR" in run.stderr and "Traceback" not in run.stderr


def test_worker_shutdown_after_a_failed_start_up_never_raises(settings, caplog):
    from service.db import create_engine
    from workers.main import worker_options

    on_shutdown = worker_options(settings)["on_shutdown"]

    class BrokenClient:
        async def aclose(self):
            raise RuntimeError("already closed")

    async def shut_down_twice():
        # arq calls on_shutdown even when on_startup raised early: nothing was built yet ...
        await on_shutdown({})
        # ... or only part of it, and one release fails: the next one still happens.
        engine = create_engine(settings)
        async with engine.connect():
            pass
        await on_shutdown({"http": BrokenClient(), "engine": engine})
        return engine.pool.checkedin()

    assert asyncio.run(shut_down_twice()) == 0  # the engine was disposed after the failed close
    assert "HTTP client not released cleanly" in caplog.text


def test_worker_that_cannot_write_its_model_cache_processes_reports_and_stops_cleanly(
    settings, client, api_key, tmp_path
):
    from sqlmodel import select

    from service.models import Report

    if settings.is_sqlite:
        pytest.skip("the model cache does not depend on the database: the PostgreSQL pass covers it")
    # As in an image whose working directory belongs to root: the cache folder cannot be made.
    (tmp_path / "var").write_text("a file where the cache folder should be")
    unwritable = settings.model_copy(update={"model_cache_dir": tmp_path / "var" / "models", "log_json": False})
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [INTAKE, "worker"],
            env={**os.environ, **settings_environment(unwritable)},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key})
        assert created.status_code == 201

        async def processed(session):
            return (
                await session.exec(
                    select(Report.processed_at).where(Report.tracking_code == created.json()["tracking_code"])
                )
            ).one()

        deadline = time.monotonic() + 120
        while in_app(client, processed) is None:
            assert worker.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        returncode = worker.wait(30)
    text = log_path.read_text(errors="replace")
    assert text.count("stays in memory") == 1
    assert "Traceback" not in text and returncode == 0, text


@pytest.fixture
def compose_trust(monkeypatch):
    """The API replicas' FORWARDED_ALLOW_IPS exactly as compose.yaml sets it."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    trusted = services["api"]["environment"].get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", trusted)
    return trusted


def test_spoofed_forwarded_for_does_not_escape_the_per_address_limit(
    settings, client, api_key, tmp_path, compose_trust
):
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    limited = {"queue_name": f"xff-{uuid.uuid4().hex[:8]}", "rate_limit_intake_per_address": "3/minute"}
    with live_api(settings, tmp_path, **limited) as api:
        proxy = HAProxy(tmp_path, [api])
        proxy.start()
        try:
            codes = []
            for number in range(6):
                # A different made-up address on every request, as a script dodging the limit would send.
                spoofed = f"203.0.113.{number + 1}"
                headers = {"X-API-Key": api_key, "X-Forwarded-For": spoofed, "Forwarded": f"for={spoofed}"}
                codes.append(
                    httpx.post(f"{proxy.url}/v1/reports", json=report_body(), headers=headers, timeout=30).status_code
                )
            # What the replica takes as the client's address: the one HAProxy saw (loopback), not the header.
            tracked = httpx.post(
                f"{proxy.url}/v1/reports",
                json=report_body(),
                timeout=30,
                headers={"X-API-Key": api_key, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
            )
        finally:
            proxy.stop()
    assert codes == [201, 201, 201, 429, 429, 429]
    assert tracked.status_code == 429
