"""How fast is GET /v1/ioc/summary at city scale? Real HTTP against a uvicorn process, on PostgreSQL.

    .venv/bin/python bench/ioc_summary.py [--tickets 1000000] [--requests 200] [--cached-requests 1000]

Seeds the PostgreSQL database `intake_bench` with `--tickets` reports through `intake seed` when it
holds fewer (migrating it and loading the demo catalogue and wards first), starts `intake serve` on
it, and measures the default summary (the last 30 city days, the whole city):
- uncached: the IOC cache keys are deleted from Redis before each request (not timed), so every
  answer is computed from the database;
- cached: the same request while the answer sits in Redis (only answers marked `X-Cache: hit` count);
- revalidated: the cached request with `If-None-Match`, answered 304 without a body.
Prints p50/p95/max and rewrites its own section of bench/RESULTS.md (date, machine, versions).
Needs PostgreSQL on 127.0.0.1 (trust auth for postgres) and Redis, as `make test` does.
"""

import argparse
import asyncio
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import asyncpg
import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- ioc_summary:begin -->", "<!-- ioc_summary:end -->"
INTAKE = str(ROOT / ".venv" / "bin" / "intake")
UNCACHED_P95_MS, CACHED_P95_MS = 60, 5


def met(result: dict) -> bool:
    return result["uncached"]["p95"] <= UNCACHED_P95_MS and result["cached"]["p95"] <= CACHED_P95_MS


def run(*args: str, env: dict) -> None:
    subprocess.run([INTAKE, *args], env=env, check=True, cwd=ROOT)


async def prepare(admin_dsn: str, database: str, tickets: int, env: dict) -> dict:
    """The database, migrated, with the catalogue, the wards and at least `tickets` reports."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    run("migrate", env=env)
    url = admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    connection = await asyncpg.connect(url)
    try:
        run("jurisdictions", "demo", env=env)  # only into a database without a map
        if not await connection.fetchval("SELECT count(*) FROM departments"):
            run("catalogue", "load", "service/catalogue/catalogue.yaml", env=env)
        have = await connection.fetchval("SELECT count(*) FROM reports")
        seeded_seconds = None
        if have < tickets:
            started = time.perf_counter()
            run("seed", "--tickets", str(tickets - have), env=env)  # rebuilds the rollup and analyzes
            seeded_seconds = time.perf_counter() - started
        elif not await connection.fetchval("SELECT count(*) FROM ioc_rollup_state"):
            await rebuild_rollup(env["DATABASE_URL"])
        stats = {
            "reports": await connection.fetchval("SELECT count(*) FROM reports"),
            "window": await connection.fetchval("SELECT count(*) FROM reports WHERE created_at >= now() - interval '30 days'"),
            "open": await connection.fetchval(
                "SELECT count(*) FROM reports WHERE status IN ('received','needs_triage','assigned','in_progress','on_hold','reopened')"
            ),
            "rollup_rows": await connection.fetchval("SELECT count(*) FROM ioc_daily_rollup"),
            "postgresql": await connection.fetchval("SHOW server_version"),
            "seeded_seconds": seeded_seconds,
        }
    finally:
        await connection.close()
    return stats


async def rebuild_rollup(database_url: str) -> None:
    from zoneinfo import ZoneInfo

    from service.db import create_engine, session_factory
    from service.ioc import rollup
    from service.settings import Settings

    settings = Settings(_env_file=None, database_url=database_url)
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            await rollup.rebuild(session, ZoneInfo(settings.sla_timezone))
            await session.commit()
    finally:
        await engine.dispose()


async def viewer_key(database_url: str) -> str:
    from service.auth import api_keys
    from service.db import create_engine, session_factory
    from service.settings import Settings

    engine = create_engine(Settings(_env_file=None, database_url=database_url))
    try:
        async with session_factory(engine)() as session:
            issued = await api_keys.create(session, name="bench/ioc_summary.py", role="ioc_viewer")
            await session.commit()
            return issued.key
    finally:
        await engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def figures(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values),
            "mean": statistics.fmean(values)}


def late_in_the_day_window() -> dict:
    """30 city days ending yesterday at 23:30: the most of a day the summary reads from the reports table."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    yesterday = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date() - timedelta(days=1)
    return {"from": f"{yesterday - timedelta(days=29)}T00:00:00+07:00", "to": f"{yesterday}T23:30:00+07:00"}


def cold_requests(client: httpx.Client, clear, count: int, params: dict | None = None) -> list[float]:
    timings: list[float] = []
    for _ in range(count):
        clear()
        started = time.perf_counter()
        response = client.get("/v1/ioc/summary", params=params)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and response.headers["x-cache"] == "miss", response.text
    return timings


def measure(base: str, key: str, cache: redis.Redis, uncached: int, cached: int) -> dict:
    headers = {"X-API-Key": key}
    clear = lambda: [cache.delete(name) for name in cache.scan_iter(match="ioc:*")]  # noqa: E731
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(5):  # warm up connections, plans and caches of the server process
            clear()
            assert client.get("/v1/ioc/summary").status_code == 200
        cold = cold_requests(client, clear, uncached)
        late = cold_requests(client, clear, max(20, uncached // 2), late_in_the_day_window())
        warm: list[float] = []
        revalidated: list[float] = []
        misses = 0
        etag = client.get("/v1/ioc/summary").headers["etag"]
        while len(warm) < cached:
            started = time.perf_counter()
            response = client.get("/v1/ioc/summary")
            elapsed = (time.perf_counter() - started) * 1000
            if response.headers["x-cache"] == "hit":
                warm.append(elapsed)
            else:  # the few seconds of cache ran out: that one was computed, not measured here
                misses += 1
                etag = response.headers["etag"]
            started = time.perf_counter()
            response = client.get("/v1/ioc/summary", headers={"If-None-Match": etag})
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code == 304:
                revalidated.append(elapsed)
        body = client.get("/v1/ioc/summary").json()
    return {"uncached": figures(cold), "late": figures(late), "cached": figures(warm), "revalidated": figures(revalidated),
            "cache_misses": misses,
            "received_in_window": body["counts"]["received"], "open": body["backlog"]["open"]}


def machine() -> str:
    model = "unknown CPU"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = match.group(1).strip() if match else model
    except OSError:
        pass
    memory = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores, {model}{memory}, {platform.system()} {platform.release()}"


def section(result: dict, stats: dict, loads: tuple, args, redis_version: str) -> str:
    packages = ", ".join(f"{name} {version(name)}" for name in ("fastapi", "uvicorn", "sqlalchemy", "asyncpg", "redis", "numpy"))
    row = lambda label, f: f"| {label} | {f['n']} | {f['p50']:.1f} | {f['p95']:.1f} | {f['max']:.1f} |"  # noqa: E731
    seeded = f" (seeded in {stats['seeded_seconds']:.0f} s by `intake seed`, rollup rebuild and VACUUM included)" if stats["seeded_seconds"] else previous_seed()
    return "\n".join([
        BEGIN,
        "## IOC summary (`bench/ioc_summary.py`)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}; load average {loads[0]:.2f} before, {loads[1]:.2f} after (a shared machine)",
        f"- software: Python {platform.python_version()}, PostgreSQL {stats['postgresql']}, Redis {redis_version}, {packages}",
        f"- data: {stats['reports']:,} reports{seeded}; {result['received_in_window']:,} in the default window "
        f"(30 city days), {result['open']:,} open; {stats['rollup_rows']:,} rollup rows",
        "- server: `intake serve` (1 uvicorn process), real HTTP with keep-alive from one client; GET /v1/ioc/summary, default filters",
        "",
        "| answer | requests | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
        row("uncached (computed; Redis cache emptied before each)", result["uncached"]),
        row("uncached, a window ending 23:30 city time (23.5 h read from the reports table)", result["late"]),
        row("cached (from Redis, `X-Cache: hit`)", result["cached"]),
        row("revalidated (`If-None-Match` → 304)", result["revalidated"]),
        "",
        f"Goal (uncached p95 ≤ {UNCACHED_P95_MS} ms, cached p95 ≤ {CACHED_P95_MS} ms): "
        f"{'met' if met(result) else 'not met'}.",
        "",
        f"Re-run: `make bench` (or `.venv/bin/python bench/ioc_summary.py --tickets {args.tickets}`).",
        END,
    ])


def previous_seed() -> str:
    """The seeding time the last run that seeded recorded, kept when this run found the data there."""
    found = re.search(r" \(seeded in \d+ s by `intake seed`[^)]*\)", RESULTS.read_text()) if RESULTS.exists() else None
    return found.group(0) if found else ""


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    if BEGIN in current and END in current:
        before, rest = current.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        updated = before + text + after
    else:
        updated = current.rstrip() + "\n\n" + text + "\n"
    RESULTS.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="uncached requests")
    parser.add_argument("--cached-requests", type=int, default=1000)
    parser.add_argument("--database", default="intake_bench")
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()

    database_url = args.pg_admin_dsn.rsplit("/", 1)[0] + f"/{args.database}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": args.redis_url, "QUEUE_NAME": "intake-bench:queue",
           "LOG_LEVEL": "WARNING", "LOG_JSON": "false"}
    stats = asyncio.run(prepare(args.pg_admin_dsn, args.database, args.tickets, env))
    key = asyncio.run(viewer_key(database_url))
    cache = redis.Redis.from_url(args.redis_url)
    port = free_port()
    server = subprocess.Popen([INTAKE, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        load_before = os.getloadavg()[0]
        result = measure(base, key, cache, args.requests, args.cached_requests)
        load_after = os.getloadavg()[0]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    redis_version = cache.info("server").get("redis_version", "?")
    for label in ("uncached", "late", "cached", "revalidated"):
        f = result[label]
        print(f"{label:12} n={f['n']:5}  p50={f['p50']:7.1f} ms  p95={f['p95']:7.1f} ms  max={f['max']:7.1f} ms")
    print(f"data: {stats['reports']:,} reports, {result['received_in_window']:,} in the window, {result['open']:,} open; "
          f"cache misses during the cached run: {result['cache_misses']}")
    text = section(result, stats, (load_before, load_after), args, redis_version)
    if not args.no_write:
        write_results(text)
        print(f"updated {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
