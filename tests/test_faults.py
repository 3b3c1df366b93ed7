"""Fault drills (`make test-faults`): real API and worker processes, and the parts they depend on fail.

- a worker is killed with SIGKILL in the middle of 2,000 reports;
- Redis (a private redis-server) is stopped for 30 s while reports keep coming in;
- PostgreSQL (a private cluster, never the machine's shared one) restarts while reports keep coming in.

After each: every accepted report is processed exactly once in effect, none is duplicated (one report per
Idempotency-Key), and every webhook event reached a real receiver on 127.0.0.1.
"""

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.catalogue import service as catalogue_service
from service.settings import Settings
from tests.conftest import _import_demo_jurisdictions, migrate, run_in_session
from tests.factories import report_body
from tests.processes import RedisServer, free_port
from tests.test_webhooks import Receiver

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parent.parent
INTAKE = str(Path(sys.executable).parent / "intake")
FINAL_EVENTS = ("status_changed",)  # the pipeline's one move out of `received`
# What a client may see while a part is down, and retry: never a 500, never a 4xx.
RETRYABLE = {503, "ConnectError", "ReadError", "RemoteProtocolError", "ReadTimeout"}


# --- the stack as processes ------------------------------------------------------------------------


class Stack:
    """`intake serve` and `intake worker` processes on a private Redis, with a webhook receiver."""

    def __init__(self, settings: Settings, redis: RedisServer, workdir: Path):
        self.settings, self.redis, self.workdir = settings, redis, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.receiver = Receiver()
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": redis.url,
            "QUEUE_NAME": f"faults:{os.getpid()}:{uuid.uuid4().hex[:6]}",
            "MEDIA_DIR": str(workdir / "media"),
            "MODEL_CACHE_DIR": str(settings.model_cache_dir),
            "SECRET_KEY": settings.secret_key,
            "PUBLIC_BASE_URL": self.url,
            "RATE_LIMITS_ENABLED": "false",
            "LOG_JSON": "false",
            "LOG_LEVEL": "WARNING",
            # Short jobs: arq re-runs a killed worker's jobs only after the longest job timeout.
            "JOB_TIMEOUT_SECONDS": "5",
            "STALE_REPORT_SECONDS": "2",
            "WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8]",
            "WEBHOOK_RETRY_JITTER": "0",
            "WEBHOOK_STALE_SECONDS": "2",
            "WEBHOOK_TOTAL_TIMEOUT_SECONDS": "2",
            "IOC_ROLLUP_TIMEOUT_SECONDS": "5",
            "WEBHOOK_READ_TIMEOUT_SECONDS": "2",
            "WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1",
        }
        self.dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")

    def start_api(self) -> None:
        log = open(self.workdir / "api.log", "a")
        self.api = subprocess.Popen(
            [INTAKE, "serve", "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the API did not start")

    def start_worker(self) -> subprocess.Popen:
        log = open(self.workdir / f"worker-{len(self.workers)}.log", "w")
        process = subprocess.Popen([INTAKE, "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.workers.append(process)
        return process

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in [*self.workers, self.api]:
            if process is not None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.receiver.close()

    # -- the database, read directly ---------------------------------------------------------------

    def query(self, sql: str, *args):
        async def run():
            connection = await asyncpg.connect(self.dsn, timeout=5)
            try:
                return await connection.fetch(sql, *args)
            finally:
                await connection.close()

        return asyncio.run(run())

    def value(self, sql: str, *args):
        return self.query(sql, *args)[0][0]

    def processed(self) -> int:
        return self.value("SELECT count(*) FROM reports WHERE processed_at IS NOT NULL")

    def settled(self) -> bool:
        """Every report processed and every webhook event delivered."""
        try:
            return (
                self.value("SELECT count(*) FROM reports WHERE processed_at IS NULL") == 0
                and self.value("SELECT count(*) FROM webhook_events WHERE status <> 'delivered'") == 0
            )
        except (OSError, asyncpg.PostgresError):
            return False

    def subscribe(self, api_key: str) -> dict:
        response = httpx.post(
            self.url + "/v1/webhooks/subscriptions",
            json={"url": self.receiver.url},
            headers={"X-API-Key": api_key},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()


@dataclass
class Attempt:
    status: int | str
    seconds: float
    at: float
    code: str | None = None  # the problem details' code of an error answer


@dataclass
class Client:
    """A citizen app: sends each report with its own Idempotency-Key and retries it until it is taken."""

    url: str
    api_key: str
    attempts: list[Attempt] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> report id
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, number: int, deadline: float) -> None:
        key = f"drill-{number}-{uuid.uuid4().hex[:8]}"
        body = report_body(
            description=f"Đèn đường số {number} trên đường Lê Lợi bị tắt mấy đêm nay",
            lat=round(10.7600 + (number % 200) * 0.0004, 6),
            lon=round(106.6700 + (number // 200) * 0.0006, 6),
        )
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = http.post(
                        "/v1/reports", json=body, headers={"X-API-Key": self.api_key, "Idempotency-Key": key}
                    )
                    status: int | str = response.status_code
                    code = (
                        response.json().get("code")
                        if status >= 400
                        and response.headers.get("content-type", "").startswith("application/problem+json")
                        else None
                    )
                except httpx.HTTPError as exc:
                    status, code = type(exc).__name__, None
                with self.lock:
                    self.attempts.append(Attempt(status, time.monotonic() - started, started, code))
                if status in (200, 201):
                    with self.lock:
                        self.accepted[key] = response.json()["id"]
                    return
                if status not in RETRYABLE:
                    return  # recorded in attempts; the drill fails on it
                time.sleep(0.2)

    def submit_many(self, count: int, *, threads: int = 8, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda number: self.submit(number, deadline), range(count)))

    def keep_submitting(self, stop: threading.Event, *, threads: int = 4, timeout: float = 300) -> threading.Thread:
        """Reports keep coming until `stop` is set (each one retried until taken)."""
        deadline = time.monotonic() + timeout
        numbers = iter(range(10**9))
        numbers_lock = threading.Lock()

        def loop() -> None:
            while not stop.is_set():
                with numbers_lock:
                    number = next(numbers)
                self.submit(number, deadline)

        def run() -> None:
            with ThreadPoolExecutor(threads) as pool:
                for future in [pool.submit(loop) for _ in range(threads)]:
                    future.result()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def wait_until(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def new_api_key(settings: Settings) -> str:
    from service.auth import api_keys

    return run_in_session(settings, lambda session: api_keys.create(session, name="drill app")).key


def empty_tables(settings: Settings) -> None:
    from sqlalchemy import text

    from service.db import metadata
    from tests.conftest import CATALOGUE_TABLES

    async def work(session) -> None:
        for table in reversed(metadata.sorted_tables):
            if table.name not in CATALOGUE_TABLES:
                await session.exec(text(f"DELETE FROM {table.name}"))

    run_in_session(settings, work)


def intake_through_an_outage(stack: Stack, server, *, before: float, down: float, after: float):
    """Start the API, a subscription and a worker; file reports from 4 threads while `server` (a private
    Redis or PostgreSQL) is stopped for `down` seconds, `before` seconds in, and go on `after` seconds more.

    Returns (client, subscription, when the server went down, when it was back), on the monotonic clock."""
    api_key = new_api_key(stack.settings)
    stack.start_api()
    subscription = stack.subscribe(api_key)
    stack.start_worker()
    client = Client(stack.url, api_key)
    stop = threading.Event()
    sending = client.keep_submitting(stop, threads=4)
    time.sleep(before)
    server.stop()
    down_from = time.monotonic()
    time.sleep(down)
    server.start()
    up_at = time.monotonic()
    time.sleep(after)
    stop.set()
    sending.join(60)
    return client, subscription, down_from, up_at


def assert_nothing_lost(stack: Stack, client: Client, subscription: dict) -> None:
    """Each accepted report: stored once, processed once in effect, and its webhook events all delivered."""
    answers = Counter(attempt.status for attempt in client.attempts)
    assert set(answers) <= RETRYABLE | {200, 201}, f"answers other than success or a retryable outage: {answers}"
    reports = stack.query("SELECT id, idempotency_key, processed_at FROM reports")
    by_key = Counter(row["idempotency_key"] for row in reports)
    assert [key for key, n in by_key.items() if n > 1] == [], "a retried report was stored twice"
    assert {row["idempotency_key"]: str(row["id"]) for row in reports} == client.accepted, (
        "the reports stored are exactly the reports whose submission was acknowledged"
    )
    assert all(row["processed_at"] is not None for row in reports)

    finals = Counter(
        row["report_id"]
        for row in stack.query("SELECT report_id FROM report_events WHERE type = ANY($1::text[])", list(FINAL_EVENTS))
    )
    classified = Counter(
        row["report_id"] for row in stack.query("SELECT report_id FROM report_events WHERE type = 'classified'")
    )
    received = Counter(
        row["report_id"] for row in stack.query("SELECT report_id FROM report_events WHERE type = 'received'")
    )
    assert len(finals) == len(reports) and set(finals.values()) == {1}, "a report was processed twice (or never)"
    assert len(classified) == len(reports) and set(classified.values()) == {1}
    assert len(received) == len(reports) and set(received.values()) == {1}

    events = stack.query(
        "SELECT event_id, report_id, type, status FROM webhook_events WHERE subscription_id = $1",
        uuid.UUID(subscription["id"]),
    )
    per_report = Counter((row["report_id"], row["type"]) for row in events)
    assert [pair for pair, n in per_report.items() if n > 1] == [], "an event was written twice to the outbox"
    created = {row["report_id"] for row in events if row["type"] == "report.created"}
    assert created == {row["id"] for row in reports}, "every report has its report.created event"
    finished = {row["report_id"] for row in events if row["type"] in ("report.assigned", "report.status_changed")}
    assert finished == {row["id"] for row in reports}, "every report has its assigned/triage event"
    assert {row["status"] for row in events} == {"delivered"}
    arrived = {request.headers["webhook-id"] for request in list(stack.receiver.requests)}
    missing = {row["event_id"] for row in events} - arrived
    assert not missing, f"{len(missing)} webhook events never reached the receiver"


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def pg_only(settings):
    if settings.is_sqlite:
        pytest.skip("the fault drills run real processes on PostgreSQL")
    return settings


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(pg_only, private_redis, tmp_path):
    empty_tables(pg_only)
    running = Stack(pg_only, private_redis, tmp_path)
    yield running
    running.stop()


# --- the drills ------------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_worker_killed_in_the_middle_of_2000_reports_loses_and_repeats_nothing(stack):
    total = 2000
    api_key = new_api_key(stack.settings)
    stack.start_api()
    subscription = stack.subscribe(api_key)
    client = Client(stack.url, api_key)
    first = stack.start_worker()
    sending = threading.Thread(target=client.submit_many, args=(total,), daemon=True)
    sending.start()
    wait_until(lambda: stack.processed() >= 200, 300, "the first 200 reports to be processed")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = stack.processed()
    assert killed_at < total, "every report was processed before the worker could be killed"

    stack.start_worker()
    stack.start_worker()
    sending.join(300)
    assert len(client.accepted) == total
    recovered_in = wait_until(stack.settled, 600, "every report processed and every webhook event delivered")
    print(f"\nkilled after {killed_at} processed; settled {recovered_in:.0f} s after the last submission")
    assert_nothing_lost(stack, client, subscription)


@pytest.mark.timeout(600)
def test_redis_stopped_for_30_seconds_during_intake_loses_nothing(stack, private_redis):
    client, subscription, down_from, up_at = intake_through_an_outage(stack, private_redis, before=5, down=30, after=5)

    during = [a for a in client.attempts if down_from <= a.at < up_at]
    assert len(during) >= 10, "reports kept coming while Redis was down"
    assert {a.status for a in during} == {201}, "intake takes reports while Redis is down"
    assert max(a.seconds for a in during) < 3, "intake does not hang on a dead Redis"

    assert stack.workers[0].poll() is None, "the worker rode out the outage (it restarts its loop once Redis is back)"
    recovered_in = wait_until(stack.settled, 300, "every report processed and every webhook event delivered")
    print(
        f"\n{len(client.accepted)} reports, {len(during)} filed while Redis was down; settled {recovered_in:.0f} s "
        "after intake stopped"
    )
    assert_nothing_lost(stack, client, subscription)


# --- a private PostgreSQL --------------------------------------------------------------------------


class PostgresServer:
    """A throwaway cluster (initdb + pg_ctl on a free port), so the drill never touches the shared one."""

    def __init__(self):
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not binaries:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = binaries[-1].parent
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user to run initdb as")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's tmp_path: that is private to root, and the server may run as postgres.
        self.workdir = Path(tempfile.mkdtemp(prefix="intake-drill-pg-"))
        self.data = self.workdir / "data"
        self.data.mkdir(mode=0o700)
        if self.as_user:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, check=check, cwd="/tmp"
        )

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def private_postgres(pg_only):
    server = None
    try:
        server = PostgresServer()
        server.start()
    except (OSError, subprocess.CalledProcessError) as exc:
        if server is not None:
            server.remove()
        pytest.skip(f"cannot run a private PostgreSQL here: {getattr(exc, 'stderr', None) or exc}")
    yield server
    server.remove()


@pytest.fixture
def pg_stack(pg_only, private_postgres, private_redis, tmp_path):
    async def create_database() -> None:
        connection = await asyncpg.connect(private_postgres.admin_dsn)
        try:
            await connection.execute("CREATE DATABASE intake_drill")
        finally:
            await connection.close()

    asyncio.run(create_database())
    url = private_postgres.admin_dsn.rsplit("/", 1)[0] + "/intake_drill"
    settings = pg_only.model_copy(update={"database_url": Settings(_env_file=None, database_url=url).database_url})
    migrate(settings.database_url)
    run_in_session(settings, _import_demo_jurisdictions)
    catalogue, checksum = catalogue_service.read_file(ROOT / "service" / "catalogue" / "catalogue.yaml")
    run_in_session(
        settings, lambda s: catalogue_service.load(s, catalogue=catalogue, checksum=checksum, source="drill")
    )
    running = Stack(settings, private_redis, tmp_path)
    yield running
    running.stop()


@pytest.mark.timeout(600)
def test_postgres_restart_during_intake_answers_503_fast_and_retries_succeed(pg_stack, private_postgres):
    stack = pg_stack
    client, subscription, down_from, up_at = intake_through_an_outage(
        stack, private_postgres, before=4, down=8, after=6
    )

    during = [a for a in client.attempts if down_from <= a.at < up_at - 0.5]
    statuses = Counter(a.status for a in during)
    assert statuses[503] >= 5, f"the API answered while the database was down: {statuses}"
    assert set(statuses) <= {503}, f"only 503 while the database is down, never 500 or a hang: {statuses}"
    assert {a.code for a in during} == {"service_unavailable"}, "503 answers are problem details"
    slowest = max(a.seconds for a in during if a.status == 503)
    assert slowest < 1.0, f"a 503 took {slowest:.2f} s; the API must answer within a second"
    after = [a for a in client.attempts if a.at >= up_at + 2]
    assert after and {a.status for a in after} <= {200, 201}, "intake recovers once the database is back"

    assert stack.workers[0].poll() is None, "the worker rode out the database restart"
    recovered_in = wait_until(stack.settled, 300, "every report processed and every webhook event delivered")
    print(
        f"\n{len(client.accepted)} reports; {sum(statuses.values())} attempts while down ({dict(statuses)}), slowest "
        f"503 {slowest * 1000:.0f} ms; settled {recovered_in:.0f} s after intake stopped"
    )
    assert_nothing_lost(stack, client, subscription)
