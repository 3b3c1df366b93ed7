"""Several API and worker processes at once: every report processed once, one original per spot,
each cron tick's work done once, webhooks still in order; IOC reads on a replica; PgBouncer."""

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from arq.connections import ArqRedis
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlmodel import col, select

from service.auth import api_keys
from service.main import create_app
from service.models import Report, ReportEvent, WebhookEvent, WebhookSubscription
from service.models.types import utcnow
from tests.conftest import PG_ADMIN_DSN, _pg_admin, in_app, migrate, run_in_session, run_worker
from tests.factories import report_body
from tests.processes import IntakeProcesses, PgBouncer, RedisServer, pgbouncer_binary

FINAL_EVENTS = ("status_changed",)  # the pipeline's one move out of `received`
WATCHED = "street_lighting"  # the webhook subscription and the SLA sweep check look at this category
DESCRIPTIONS = {
    "street_lighting": "Đèn đường bị tắt mấy đêm nay, khu này rất tối và nguy hiểm",
    "road_traffic": "Ổ gà lớn giữa đường, xe máy đi qua rất dễ té ngã",
    "waste_sanitation": "Rác thải tồn đọng nhiều ngày chưa được thu gom, bốc mùi hôi",
    "drainage_flooding": "Cống bị nghẹt, mưa xuống là nước ngập tới đầu gối",
    "trees_parks": "Cây xanh nghiêng sắp đổ ra giữa đường, rất nguy hiểm",
}
CATEGORIES = list(DESCRIPTIONS)
ANSWERS = {"waste_sanitation": {"waste_type": ["household"]}}  # the category's required attribute
# Cron schedules of workers/main.py (second of the minute), to tell one tick's runs apart.
CRON_TICKS = {"sweep_stale_reports": {5, 35}, "sweep_webhooks": {10, 25, 40, 55}, "refresh_ioc_rollup": {0, 15, 30, 45}}
CRON_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) INFO .*arq\.worker: .*→ cron:(\w+)\(\)")
STARTUP_SWEEPS = ("sweep_stale_reports", "sweep_sla", "sweep_webhooks", "refresh_ioc_rollup")
CRON_DELAY = re.compile(r"delayed=([\d.]+)s")
SLA_SWEEP = re.compile(r"SLA sweep updated (\d+) reports")


def count_where(client, *conditions) -> int:
    async def count(session):
        return (await session.exec(select(func.count()).select_from(Report).where(*conditions))).one()

    return in_app(client, count)


def new_key(client, role: str = "citizen_app") -> str:
    return in_app(client, lambda s: api_keys.create(s, name=f"{role} scale-out", role=role)).key


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Receiver:
    """A subscriber's endpoint (a third party): records each delivery in arrival order, answers 200."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []  # (webhook-id, payload)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append((self.headers["webhook-id"], json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def process_env(settings, redis_url: str, queue_name: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "MEDIA_DIR": str(settings.media_dir),
        "MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_BASE_URL": "http://127.0.0.1",
        "LOG_JSON": "false",
        "LOG_LEVEL": "INFO",
        # Several processes share one PostgreSQL: small pools, from settings like any deployment.
        "DB_POOL_SIZE": "3",
        "DB_MAX_OVERFLOW": "5",
        "REDIS_MAX_CONNECTIONS": "40",
        "JOB_TIMEOUT_SECONDS": "20",
        "STALE_REPORT_SECONDS": "3",
        "WEBHOOK_TOTAL_TIMEOUT_SECONDS": "1",
        "IOC_ROLLUP_TIMEOUT_SECONDS": "20",
        "WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        "WEBHOOK_STALE_SECONDS": "5",
        # One client sends everything: the limits stay on (counted in Redis across both APIs) but high.
        "RATE_LIMIT_INTAKE_PER_KEY": "1000000/minute",
        "RATE_LIMIT_INTAKE_PER_ADDRESS": "1000000/minute",
        "RATE_LIMIT_INTAKE_PER_REPORTER": "1000000/minute",
        **extra,
    }


def plan_reports(clusters: int, singles: int) -> list[list[dict]]:
    """Units to send: a cluster is 5 near-identical reports within ~10 m (sent at the same moment),
    a single is one report. Spots are 300 m apart, so nothing else is a duplicate of anything."""
    spots = clusters + singles
    every = spots // clusters
    units: list[list[dict]] = []
    for number in range(spots):
        row, column = divmod(number, 50)
        lat, lon = 10.70 + row * 0.003, 106.60 + column * 0.003
        code = WATCHED if number % 2 == 0 else CATEGORIES[number % len(CATEGORIES)]
        size = 5 if number % every == 0 else 1
        units.append([
            report_body(description=DESCRIPTIONS[code], service_code=code, attributes=ANSWERS.get(code),
                        lat=round(lat + k * 0.00002, 6), lon=round(lon + k * 0.00001, 6))
            for k in range(size)
        ])
    return units


async def send_all(
    api_urls: list[str], key: str, units: list[list[dict]], concurrency: int
) -> tuple[list[list[dict]], int]:
    """Every unit through a shared pool of `concurrency` slots; a cluster's 5 go out together, split over the APIs.

    As a mobile app would: each report carries an Idempotency-Key, and a 503 (an API out of database
    connections for a moment) or a dropped connection is retried, on the other API, with the same key.
    Returns the answers and how many retries there were.
    """
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    retries = 0
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def post(api: int, body: dict) -> dict:
            nonlocal retries
            headers = {"X-API-Key": key, "Idempotency-Key": str(uuid.uuid4())}
            for attempt in range(6):
                url = api_urls[(api + attempt) % len(api_urls)]
                try:
                    response = await http.post(f"{url}/v1/reports", json=body, headers=headers)
                except httpx.TransportError:  # e.g. a kept-alive connection the server just closed
                    retries += 1
                    continue
                if response.status_code != 503:
                    break
                retries += 1
                await asyncio.sleep(min(float(response.headers.get("retry-after", 1)), 2))
            assert response.status_code == 201, response.text
            return response.json()

        async def send(number: int, unit: list[dict]) -> list[dict]:
            async with semaphore:
                return await asyncio.gather(*(post(number + k, body) for k, body in enumerate(unit)))

        answers = await asyncio.gather(*(send(number, unit) for number, unit in enumerate(units)))
    return answers, retries


def cron_runs_per_tick(log_text: str, after: datetime) -> Counter:
    """(cron name, tick) → how many times it started, across every worker's log.

    A run's scheduled time is its start minus arq's `delayed=` (logged when over 1.2 s): a tick's job
    is scheduled on the whole second of the tick. Runs scheduled before `after` are the startup runs
    (one per worker, by design) and are left out.
    """
    runs: Counter = Counter()
    for line in log_text.splitlines():
        match = CRON_START.match(line)
        if not match or match.group(2) not in CRON_TICKS:
            continue
        delayed = CRON_DELAY.search(line)
        scheduled = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f") - timedelta(
            seconds=float(delayed.group(1)) if delayed else 0.6
        )
        if scheduled < after:
            continue
        nearest = scheduled.replace(microsecond=0) + timedelta(seconds=round(scheduled.microsecond / 1e6))
        for tick in (nearest, nearest - timedelta(seconds=1), nearest + timedelta(seconds=1)):
            if tick.second in CRON_TICKS[match.group(2)]:
                runs[(match.group(2), tick)] += 1
                break
        else:
            raise AssertionError(f"a cron run scheduled off its ticks: {line}")
    return runs


@pytest.mark.faults  # two to four minutes on two cores: `make test-faults`
def test_two_apis_and_three_workers_process_every_report_once(settings, client, tmp_path, receiver):
    if settings.is_sqlite:
        pytest.skip("several processes share PostgreSQL; SQLite has one writer by design")
    redis = RedisServer(tmp_path)
    redis.start()
    queue = f"scale:{os.getpid()}"
    processes = IntakeProcesses(tmp_path, process_env(settings, redis.url, queue))
    try:
        api_urls = [processes.start_api(), processes.start_api()]
        for _ in range(3):
            processes.start_worker()
        key = new_key(client)
        response = httpx.post(
            f"{api_urls[0]}/v1/webhooks/subscriptions",
            headers={"X-API-Key": key},
            json={"url": receiver.url, "filters": {"service_code": WATCHED}},
        )
        assert response.status_code == 201, response.text
        # Each worker runs the sweeps once when it starts (arq's run_at_startup, by design); the per-tick
        # count below starts once all of them have.
        wait_until(
            lambda: all(processes.log_text().count(f"→ cron:{name}()") >= 3 for name in STARTUP_SWEEPS),
            90,
            "every worker's startup sweeps",
        )
        ticks_from = datetime.now()

        units = plan_reports(clusters=100, singles=1500)
        total = sum(len(unit) for unit in units)
        assert total == 2000
        started = time.monotonic()
        created, retries = asyncio.run(send_all(api_urls, key, units, concurrency=16))
        sent_seconds = time.monotonic() - started
        assert count_where(client) == total  # retried requests never made a second report
        processed_seconds = sent_seconds + wait_until(
            lambda: count_where(client, col(Report.processed_at).is_not(None)) == total,
            240,
            "every report to be processed",
            interval=1,
        )
        print(
            f"\n{total} reports: sent in {sent_seconds:.1f} s ({total / sent_seconds:.0f}/s over 2 APIs, "
            f"{retries} retried after a 503), all processed after {processed_seconds:.1f} s "
            f"({total / processed_seconds:.0f}/s by 3 workers)"
        )

        # Every report processed exactly once: one final event and one classification each.
        async def events_of(session, *types):
            rows = await session.exec(select(ReportEvent.report_id).where(col(ReportEvent.type).in_(types)))
            return Counter(rows.all())

        finals = in_app(client, lambda s: events_of(s, *FINAL_EVENTS))
        assert len(finals) == total and set(finals.values()) == {1}
        assert set(in_app(client, lambda s: events_of(s, "classified")).values()) == {1}

        # One original per spot: in each cluster one report stands, four are its duplicates.
        async def reports(session):
            return {str(r.id): r for r in (await session.exec(select(Report))).all()}

        by_id = in_app(client, reports)
        for unit in created:
            rows = [by_id[answer["id"]] for answer in unit]
            originals = [r for r in rows if r.status != "duplicate"]
            if len(rows) == 1:
                assert originals, f"{rows[0].tracking_code} was taken for a duplicate"
                continue
            assert len(originals) == 1, (
                f"cluster with {len(originals)} originals: {[r.tracking_code for r in originals]}"
            )
            original = originals[0]
            assert {r.duplicate_of_id for r in rows if r is not original} == {original.id}
            assert original.supporter_count == 4

        # The SLA sweep: the watched reports still open become at risk now. Three sweeps start at the
        # same moment (as when three workers start together); each report is marked once.
        at_risk_ids = [r.id for r in by_id.values() if r.service_code == WATCHED and r.status == "assigned"]

        async def make_due_soon(session):
            await session.exec(
                update(Report).where(col(Report.id).in_(at_risk_ids)).values(at_risk_at=utcnow() - timedelta(minutes=1))
            )

        in_app(client, make_due_soon)

        async def three_sweeps_at_once():
            arq = ArqRedis.from_url(redis.url)
            try:
                await asyncio.gather(
                    *(
                        arq.enqueue_job("cron:sweep_sla", _job_id=f"concurrent-sweep-{n}", _queue_name=queue)
                        for n in range(3)
                    )
                )
            finally:
                await arq.aclose()

        asyncio.run(three_sweeps_at_once())
        wait_until(
            lambda: (
                count_where(client, col(Report.id).in_(at_risk_ids), Report.sla_state == "at_risk") == len(at_risk_ids)
            ),
            90,
            "the SLA sweep to mark the reports at risk",
        )
        at_risk_events = in_app(client, lambda s: events_of(s, "sla_at_risk"))
        assert set(at_risk_events) == set(at_risk_ids) and set(at_risk_events.values()) == {1}

        # Webhooks: every watched event delivered, and per report in the order it happened.
        async def outbox(session):
            subscription = (await session.exec(select(WebhookSubscription))).one()
            rows = await session.exec(
                select(WebhookEvent)
                .where(WebhookEvent.subscription_id == subscription.id)
                .order_by(col(WebhookEvent.id))
            )
            return list(rows.all())

        wait_until(
            lambda: all(e.status == "delivered" for e in in_app(client, outbox)),
            180,
            "every webhook to be delivered",
            interval=1,
        )
        expected: dict[str, list[str]] = defaultdict(list)
        for event in in_app(client, outbox):
            expected[event.payload["data"]["tracking_code"]].append(event.event_id)
        arrived: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        for webhook_id, payload in list(receiver.received):
            if webhook_id not in seen:  # at least once: repeats are dropped by id
                seen.add(webhook_id)
                arrived[payload["data"]["tracking_code"]].append(webhook_id)
        assert arrived == expected
        watched_codes = {r.tracking_code for r in by_id.values() if r.service_code == WATCHED}
        assert set(expected) == watched_codes

        log_text = processes.log_text()
        # The sweeps never did the same report twice, whichever worker ran them.
        assert sum(int(n) for n in SLA_SWEEP.findall(log_text)) == len(at_risk_ids)
        # Each cron tick ran once across the three workers (the tick is in the job id).
        ticks = cron_runs_per_tick(log_text, after=ticks_from)
        assert ticks, "no cron tick happened during the test"
        assert {tick: runs for tick, runs in ticks.items() if runs != 1} == {}
    finally:
        processes.stop_all()
        redis.stop()


# --- the read replica ---------------------------------------------------------------------------


@pytest.fixture
def replica(settings):
    """A second database standing in for a streaming replica of the primary (same schema and catalogue)."""
    if settings.is_sqlite:
        pytest.skip("a PostgreSQL deployment option")
    from service.catalogue import service as catalogue_service
    from tests.conftest import ROOT, _import_demo_jurisdictions

    name = f"intake_replica_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    replica_settings = settings.model_copy(update={"database_url": "postgresql+asyncpg://" + url.split("://", 1)[1]})
    run_in_session(replica_settings, _import_demo_jurisdictions)
    catalogue, checksum = catalogue_service.read_file(ROOT / "service" / "catalogue" / "catalogue.yaml")
    run_in_session(
        replica_settings, lambda s: catalogue_service.load(s, catalogue=catalogue, checksum=checksum, source="tests")
    )
    yield replica_settings
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_ioc_figures_come_from_the_read_replica_when_one_is_set(settings, client, replica):
    # Three reports exist only on the "replica"; the primary has none.
    with TestClient(create_app(replica)) as on_replica:
        key = in_app(on_replica, lambda s: api_keys.create(s, name="replica app")).key
        for _ in range(3):
            assert on_replica.post("/v1/reports", json=report_body(), headers={"X-API-Key": key}).status_code == 201
        code = on_replica.post("/v1/reports", json=report_body(), headers={"X-API-Key": key}).json()["tracking_code"]

    viewer = new_key(client, "ioc_viewer")  # keys (and every write) live on the primary
    split = settings.model_copy(
        update={"database_read_url": replica.database_url, "queue_name": f"{settings.queue_name}:replica"}
    )
    with TestClient(create_app(split)) as app:
        summary = app.get("/v1/ioc/summary", headers={"X-API-Key": viewer})
        assert summary.status_code == 200, summary.text
        assert summary.json()["counts"]["received"] == 4
        series = app.get("/v1/ioc/timeseries?metric=received&bucket=day", headers={"X-API-Key": viewer}).json()
        assert sum(point["count"] for point in series["points"]) == 4
        hotspots = app.get("/v1/ioc/hotspots", headers={"X-API-Key": viewer}).json()
        assert sum(feature["properties"]["count"] for feature in hotspots["features"]) == 4
        # Everything else reads and writes the primary.
        assert app.get(f"/v1/reports/{code}").status_code == 404

    with TestClient(create_app(settings)) as primary_only:  # (a query not cached yet: answers are shared for 10 s)
        hotspots = primary_only.get("/v1/ioc/hotspots?resolution=7", headers={"X-API-Key": viewer}).json()
        assert hotspots["features"] == []


# --- PgBouncer ---------------------------------------------------------------------------------


def test_intake_and_worker_run_through_pgbouncer_in_transaction_mode(settings, client):
    if settings.is_sqlite:
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer); the PgBouncer check did not run")
    host_port = settings.database_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
    # Two server connections for far more clients: transactions of different clients share them,
    # and PgBouncer wipes session state (DISCARD ALL) after every transaction.
    bouncer = PgBouncer(host=host, port=int(port), pool_size=2)
    bouncer.start()
    try:
        database = settings.database_url.rsplit("/", 1)[1]
        bounced = settings.model_copy(
            update={
                "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{bouncer.port}/{database}",
                "queue_name": f"{settings.queue_name}:pgbouncer",
                "db_pgbouncer": True,  # as an operator behind PgBouncer sets DB_PGBOUNCER
            }
        )
        with TestClient(create_app(bounced)) as app:
            app.portal.call(app.app.state.arq.delete, bounced.queue_name)
            key = in_app(app, lambda s: api_keys.create(s, name="through pgbouncer")).key
            spot = (10.7725, 106.6980)
            bodies = [report_body(service_code=WATCHED, description=DESCRIPTIONS[WATCHED],
                                  lat=spot[0] + k * 0.00002, lon=spot[1]) for k in range(5)]
            bodies += [report_body(service_code=code, description=DESCRIPTIONS[code], attributes=ANSWERS.get(code),
                                   lat=10.75 + n * 0.003, lon=106.65)
                       for n, code in enumerate(CATEGORIES * 3)]
            for body in bodies:
                assert app.post("/v1/reports", json=body, headers={"X-API-Key": key}).status_code == 201
            run_worker(app)  # arq worker in this process, ten jobs at a time, all through PgBouncer
            assert app.get("/readyz").status_code == 200
        assert count_where(client, col(Report.processed_at).is_not(None)) == len(bodies)
        assert count_where(client, Report.status == "duplicate") == 4
        assert "prepared statement" not in bouncer.log_text()
    finally:
        bouncer.stop()


# --- the deployment files ----------------------------------------------------------------------


def test_compose_runs_replicated_apis_and_workers_on_shared_services():
    import shutil
    import subprocess

    import yaml

    from tests.conftest import ROOT

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {"postgres", "redis", "minio", "minio-init", "migrate", "api", "worker", "proxy"} <= set(services)
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["STORAGE_BACKEND"] == "s3" and environment["S3_BUCKET"] == "intake-photos"
        assert services[name]["deploy"]["replicas"] >= 2
    assert "mc anonymous set none" in services["minio-init"]["command"][0]  # the bucket stays private
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed: deploy/haproxy.cfg was not checked")
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
