"""What every load benchmark shares: a fresh database, the servers as real processes, wrk, RSS, RESULTS.md.

Everything runs on loopback: PostgreSQL on 127.0.0.1:5432 (trust auth for postgres, as `make test`),
Redis on 127.0.0.1:6379 in its own db (BENCH_REDIS_DB, 13 by default) with its own queue name, the API
started with `intake serve` and the load from `wrk` (a separate C process, bounded by -d and a count).
"""

import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import asyncpg
import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
WORK = ROOT / "var" / "bench"
RESULTS = BENCH / "RESULTS.md"
BIN = ROOT / ".venv" / "bin"
INTAKE = str(BIN / "intake")

PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = os.environ.get("BENCH_DATABASE", "intake_bench_intake")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "13"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE_NAME = "intake-bench:queue"


def database_url(database: str = DATABASE) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(**extra: str) -> dict[str, str]:
    """The settings every benchmarked process gets: no rate limits, WARNING logs, our own queue and db."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": REDIS_URL,
        "QUEUE_NAME": QUEUE_NAME,
        "MEDIA_DIR": str(WORK / "media"),
        "MODEL_CACHE_DIR": str(ROOT / ".cache" / "models"),
        "RATE_LIMITS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "true",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        **extra,
    }


# --- the database and Redis ------------------------------------------------------------------------


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def fresh_database() -> None:
    """Drop and create the bench database, migrate it, load the demo catalogue and wards (as scripts/run.sh)."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    asyncio.run(_admin(f'CREATE DATABASE "{DATABASE}"'))
    env = bench_env()
    quiet = {"cwd": ROOT, "env": env, "check": True, "stdout": subprocess.DEVNULL}
    subprocess.run([INTAKE, "migrate"], **quiet, stderr=subprocess.DEVNULL)
    subprocess.run([INTAKE, "jurisdictions", "demo"], **quiet)
    subprocess.run([INTAKE, "catalogue", "load", "service/catalogue/catalogue.yaml"], **quiet)
    shutil.rmtree(WORK / "media", ignore_errors=True)


def ensure_database() -> None:
    """The bench database at this code's schema: made afresh when missing, migrated when kept from an
    earlier run (a kept one is never behind the code a benchmark runs)."""
    if not sql_database_exists():
        fresh_database()
        return
    subprocess.run([INTAKE, "migrate"], cwd=ROOT, env=bench_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def sql_database_exists() -> bool:
    async def run():
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE))
        finally:
            await connection.close()

    return asyncio.run(run())


def create_api_key(name: str = "bench app") -> str:
    out = subprocess.run([INTAKE, "apikey", "create", "--name", name], cwd=ROOT, env=bench_env(), check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def sql(query: str, *args):
    """One query on the bench database; returns the first column of the first row."""

    async def run():
        connection = await asyncpg.connect(database_url())
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def reset_reports() -> None:
    """Empty what intake and the worker write, so each benchmark counts only its own reports."""
    sql("TRUNCATE reports, report_events, photos, webhook_events, bench_bare_reports CASCADE"
        if sql("SELECT to_regclass('bench_bare_reports') IS NOT NULL")
        else "TRUNCATE reports, report_events, photos, webhook_events CASCADE")
    redis.Redis.from_url(REDIS_URL).flushdb()
    clear_media()


def clear_media() -> None:
    """Delete the photos written so far, leaving the folders the servers expect. A photo run writes about a
    gigabyte: left in place, a few runs fill the page cache and the next runs pay for reclaiming it in the
    servers' writing threads, the later runs more than the earlier."""
    media = WORK / "media"
    for child in media.iterdir() if media.is_dir() else ():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    (media / "bare").mkdir(parents=True, exist_ok=True)  # a bare app that is up writes there without making it


def vacuum() -> None:
    async def run():
        connection = await asyncpg.connect(database_url())
        try:
            await connection.execute("VACUUM ANALYZE")
        finally:
            await connection.close()

    asyncio.run(run())


def queue_depth() -> int:
    return redis.Redis.from_url(REDIS_URL).zcard(QUEUE_NAME)


# --- processes -------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server process and its children (uvicorn's worker processes)."""
        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(child.pid for child in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server and its worker processes."""
        total = 0.0
        for pid in self.pids():
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextmanager
def server(kind: str, workers: int = 1, tree: Path | None = None, **env_extra: str):
    """`intake serve` (kind "intake") or the bare app (kind "bare") under the same uvicorn settings.

    `tree`: run the service from another copy of the source (before/after comparisons), with this venv.
    """
    port = free_port()
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / f"{kind}-{workers}w-{port}.log"
    env = bench_env(PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", **env_extra)
    if kind == "intake":
        command = [INTAKE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        if tree is not None:
            command[:2] = [str(BIN / "python"), "-m", "service.cli", "serve"]
        health = "/healthz"
    else:
        command = [str(BIN / "uvicorn"), "bench.bare_app:app", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(workers), "--log-level", "warning", "--no-access-log", "--proxy-headers"]
        health = "/bare/healthz"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=tree or ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Server(process, port, log)
    try:
        wait_for_http(running.url + health)
        if workers > 1:  # every uvicorn worker process up and importing done
            deadline = time.monotonic() + 60
            while len(running.pids()) < workers + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
        yield running
    finally:
        running.stop()


def start_workers(count: int, **env_extra: str) -> list[subprocess.Popen]:
    WORK.mkdir(parents=True, exist_ok=True)
    processes = []
    for number in range(count):
        log = open(WORK / f"worker-{number}.log", "w")
        processes.append(subprocess.Popen([INTAKE, "worker"], cwd=ROOT, env=bench_env(**env_extra), stdout=log,
                                          stderr=subprocess.STDOUT))
    return processes


# --- RSS -------------------------------------------------------------------------------------------


class RssSampler:
    """Samples VmRSS of the given processes (summed) every `interval` seconds in a thread."""

    def __init__(self, pids_of, interval: float = 0.02):
        self.pids_of, self.interval = pids_of, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
        return 0

    def total(self) -> int:
        return sum(self.rss(pid) for pid in self.pids_of())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.total()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((value for _, value in self.samples), default=0)


# --- wrk -------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)
    server_cpu_ms: float = 0.0  # the server's CPU time per request answered, when measured
    quantiles_ms: list[float] = field(default_factory=list)  # the latency at each thousandth's middle

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def wrk(url: str, script: str, *, connections: int, seconds: float, threads: int = 1, env: dict | None = None,
        timeout_s: int = 10, stop_when=None) -> WrkResult:
    """Run wrk (a separate process) for `seconds`, or until `stop_when()` is true (checked each second, then
    wrk is interrupted: it prints its summary all the same); the Lua script's done() prints one JSON line."""
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", f"{timeout_s}s",
               "-s", str(LUA / script), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    if stop_when is not None:
        while process.poll() is None:
            time.sleep(1)
            if polite(stop_when):
                process.send_signal(signal.SIGINT)
                break
    stdout, stderr = process.communicate(timeout=seconds + 120)
    line = next((line for line in stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{stdout}\n{stderr}")
    data = json.loads(line[len("WRKJSON "):])
    return WrkResult(
        requests=data["requests"], seconds=data["duration_us"] / 1e6, p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000, errors=data["errors"],
        statuses=data.get("statuses", {}), quantiles_ms=[value / 1000 for value in data.get("quantiles_us", [])],
    )


def merge(results: list[WrkResult]) -> WrkResult:
    """Several wrk runs as one: their requests over their summed durations; the percentiles of all their
    requests, each run's thousandths weighted by its requests (exact to a thousandth of a run)."""
    weighted = sorted((value, result.requests / len(result.quantiles_ms))
                      for result in results for value in result.quantiles_ms)
    total = sum(weight for _, weight in weighted)

    def percentile(share: float) -> float:
        seen = 0.0
        for value, weight in weighted:
            seen += weight
            if seen >= share * total:
                return value
        return weighted[-1][0] if weighted else 0.0

    def summed(key: str) -> dict:
        out: dict = {}
        for result in results:
            for name, count in getattr(result, key).items():
                out[name] = out.get(name, 0) + count
        return out

    return WrkResult(
        requests=sum(result.requests for result in results), seconds=sum(result.seconds for result in results),
        p50_ms=percentile(0.50), p99_ms=percentile(0.99), max_ms=max(result.max_ms for result in results),
        errors=summed("errors"), statuses=summed("statuses"),
        quantiles_ms=[percentile((i + 0.5) / 1000) for i in range(1000)],
    )


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: `make bench` installs it (apt-get install -y wrk, as root)")
    return path


# --- photos ----------------------------------------------------------------------------------------


def jpeg_of_size(path: Path, target_bytes: int, seed: int = 1022) -> Path:
    """A real JPEG (noise, so it does not compress) of about `target_bytes`; made once, then reused."""
    import io

    import numpy as np
    from PIL import Image

    if path.exists() and abs(path.stat().st_size - target_bytes) < target_bytes * 0.05:
        return path
    rng = np.random.default_rng(seed)
    width = 256
    while True:
        height = max(16, int(width * 3 / 4))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        size = buffer.tell()
        if abs(size - target_bytes) < target_bytes * 0.03:
            break
        width = int(width * (target_bytes / size) ** 0.5) or width + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


# --- the machine and RESULTS.md --------------------------------------------------------------------


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory_gib = psutil.virtual_memory().total / 2**30
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(memory_gib), "kernel": platform.release(),
            "load": load}


def versions() -> str:
    packages = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg", "arq", "redis",
                "python-multipart", "pydantic"]
    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:
            pass
    postgres = sql("SHOW server_version")
    redis_version = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
    return (f"Python {platform.python_version()}, PostgreSQL {postgres}, Redis {redis_version}, {wrk_version}, "
            + ", ".join(found))


def header(load_before: tuple[float, float, float]) -> str:
    info = machine()
    return "\n".join([
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {info['cores']} cores, {info['cpu']}, {info['memory_gib']} GiB RAM, Linux {info['kernel']}; "
        f"load average {load_before[0]:.2f} before, {info['load'][0]:.2f} after (1-minute; a shared machine)",
        f"- software: {versions()}",
    ])


def write_section(name: str, body: str) -> None:
    """Replace (or append) the `<!-- name:begin -->` … `<!-- name:end -->` section; the rest stays as it is."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    updated = pattern.sub(lambda _: block, current) if pattern.search(current) else current.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(updated)


def wait_for_quiet_machine(max_load: float = 1.5, tries: int = 6, pause: float = 30) -> tuple[float, float, float]:
    """Other sessions share this machine: wait a little for a quiet moment, then go on regardless."""
    for attempt in range(tries):
        load = os.getloadavg()
        if load[0] <= max_load:
            return load
        print(f"load average {load[0]:.2f} > {max_load}: waiting {pause:.0f} s ({attempt + 1}/{tries})", flush=True)
        time.sleep(pause)
    return os.getloadavg()


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- realistic reports -----------------------------------------------------------------------------

# Ward boxes (min lon, min lat, max lon, max lat) of service/catalogue/demo_jurisdictions.geojson.
WARDS = [
    (106.6935, 10.769, 106.709, 10.7865), (106.688, 10.768, 106.7005, 10.7796), (106.6885, 10.7625, 106.6975, 10.7695),
    (106.6835, 10.7755, 106.6995, 10.7905), (106.664, 10.768, 106.6755, 10.779), (106.659, 10.799, 106.67, 10.816),
    (106.6795, 10.822, 106.6905, 10.833), (106.7095, 10.798, 106.7205, 10.809), (106.725, 10.799, 106.755, 10.814),
    (106.725, 10.787, 106.756, 10.806),
]
STORM_TEXTS = [
    "Nước ngập sâu tới đầu gối trên đường, xe máy chết máy hàng loạt, cống thoát nước bị nghẹt",
    "Cây xanh bị gió quật ngã chắn ngang đường, nguy hiểm cho người đi đường",
    "Đèn đường bị tắt cả đoạn sau cơn mưa, rất tối và nguy hiểm",
    "Rác thải dồn ứ sau mưa lớn bốc mùi hôi thối, chưa ai thu gom",
    "Nắp cống bị nước đẩy bật lên giữa đường, rất nguy hiểm cho xe máy",
    "Đường bị sụt lún tạo ổ gà lớn sau trận mưa, nhiều người té ngã",
    "Dây điện bị đứt rơi xuống mặt đường ngập nước, rất nguy hiểm",
    "Nước từ kênh tràn vào hẻm, nhà dân bị ngập, cần hỗ trợ bơm nước",
]


def storm_report(number: int, rng) -> dict:
    west, south, east, north = rng.choice(WARDS)
    return {
        "description": f"{rng.choice(STORM_TEXTS)} (điểm {number})",
        "lat": round(south + rng.random() * (north - south), 6),
        "lon": round(west + rng.random() * (east - west), 6),
        "channel": "app",
    }


def submit_reports(url: str, api_key: str, count: int, concurrency: int = 32, seed: int = 1022) -> int:
    """POST `count` storm reports (setup for the worker benchmark, not a measured load); returns how many got 201."""
    import random

    import httpx

    rng = random.Random(seed)
    bodies = [storm_report(number, rng) for number in range(count)]

    async def run() -> int:
        created = 0
        queue: asyncio.Queue = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal created
            while not queue.empty():
                body = queue.get_nowait()
                response = await client.post("/v1/reports", json=body, headers={"X-API-Key": api_key})
                created += response.status_code == 201

        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return created

    return asyncio.run(run())


def wait_until(predicate, timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate`; a failed database check (the shared cluster momentarily full, say) counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if polite(predicate):
            return True
        time.sleep(interval)
    return polite(predicate)


def polite(predicate) -> bool:
    try:
        return bool(predicate())
    except (OSError, asyncpg.PostgresError) as exc:
        log(f"check failed, trying again: {type(exc).__name__}")
        return False
