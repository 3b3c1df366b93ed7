"""An intake process's CPU per photo report against how many requests it has in hand at once.

    .venv/bin/python bench/intake_concurrency.py [--concurrency 8 16 32] [--requests 1500] [--rounds 2]

Drives one app in this process over ASGI (no HTTP, no wrk, no other process of ours on the cores): the
same multipart body as `intake_vs_bare.py`'s photo row (a 300 KB JPEG, a fresh Idempotency-Key each, the
limiter on with its limits out of reach), handed over in chunks of about the size uvicorn hands over,
`--concurrency` requests at a time. Prints this process's user and system CPU per request (the writer
task and the photo threads included; PostgreSQL's and Redis's not) and the database transactions
committed per report, whose inverse is about the intake writer's group size.

What it shows: with the load spread over two uvicorn processes each process holds half the requests at
once, so whatever is paid once per group of requests (the intake writer's transaction and hand-off, the
rate limiter's round trip) is shared by half as many. The same code costs more per request at 8 than at
32 requests in hand, with no second process involved.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack
from bench.intake_vs_bare import PHOTO_BYTES, REALISTIC_ENV

BOUNDARY = "----intakebench7MA4YWxkTrZu0gW"
CHUNK_BYTES = 110_000  # uvicorn handed a 300 KB body over in about three chunks under load


def photo_body(photo: bytes) -> bytes:
    def field(name: str, value: str) -> bytes:
        return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()

    return (
        field("description", "Ngập sâu trước nhà số 12 Lê Lợi, nước tràn vào nhà, xe chết máy hàng loạt")
        + field("lat", "10.7731")
        + field("lon", "106.7030")
        + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="photos"; filename="flood.jpg"\r\n'.encode()
        + b"Content-Type: image/jpeg\r\n\r\n"
        + photo
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def post(app, lifespan_state: dict, body: bytes, api_key: str) -> int:
    chunks = [body[start : start + CHUNK_BYTES] for start in range(0, len(body), CHUNK_BYTES)]
    sent = 0

    async def receive() -> dict:
        nonlocal sent
        if sent < len(chunks):
            sent += 1
            await asyncio.sleep(0)  # each chunk arrives in its own loop iteration, as from a socket
            return {"type": "http.request", "body": chunks[sent - 1], "more_body": sent < len(chunks)}
        await asyncio.Event().wait()  # no disconnect: the client waits for its answer
        raise AssertionError

    status: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-api-key", api_key.encode()),
        (b"idempotency-key", uuid.uuid4().hex.encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/reports",
        "raw_path": b"/v1/reports",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": dict(lifespan_state),
    }
    await app(scope, receive, send)
    return status[0]


async def measure(concurrencies: list[int], requests: int, rounds: int, api_key: str, body: bytes) -> None:
    from service.main import create_app
    from service.settings import get_settings

    app = create_app(get_settings())
    lifespan_in: asyncio.Queue = asyncio.Queue()
    lifespan_out: asyncio.Queue = asyncio.Queue()
    lifespan_state: dict = {}
    lifespan = asyncio.create_task(
        app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": lifespan_state}, lifespan_in.get, lifespan_out.put
        )
    )
    await lifespan_in.put({"type": "lifespan.startup"})
    assert (await lifespan_out.get())["type"] == "lifespan.startup.complete"

    async def run(count: int, at_once: int) -> dict[int, int]:
        left, statuses = count, {}

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                status = await post(app, lifespan_state, body, api_key)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(client() for _ in range(at_once)))
        return statuses

    await run(200, max(concurrencies))  # warm-up: connections, caches, the thread pool
    for _ in range(rounds):
        for at_once in concurrencies:
            commits_before = await committed_transactions()
            cpu_before, started = os.times(), time.monotonic()
            statuses = await run(requests, at_once)
            cpu_after, elapsed = os.times(), time.monotonic() - started
            commits = await committed_transactions() - commits_before
            user = 1000 * (cpu_after.user - cpu_before.user) / requests
            system = 1000 * (cpu_after.system - cpu_before.system) / requests
            stack.log(
                f"{at_once:3} in hand: user {user:.2f} + system {system:.2f} = {user + system:.2f} ms CPU per request, "
                f"{commits / requests:.3f} transactions per report, {requests / elapsed:.0f} req/s, statuses {statuses}"
            )
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await lifespan


async def committed_transactions() -> int:
    import asyncpg

    connection = await asyncpg.connect(stack.database_url())
    try:
        # The statistics reach pg_stat_database within a second or so of each commit: about right.
        return await connection.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", stack.DATABASE)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    stack.ensure_database()
    photo = stack.jpeg_of_size(stack.WORK / "photo-300k.jpg", PHOTO_BYTES).read_bytes()
    api_key = stack.create_api_key()
    stack.reset_reports()
    os.environ.update(stack.bench_env(**REALISTIC_ENV))
    import uvloop

    uvloop.run(measure(args.concurrency, args.requests, args.rounds, api_key, photo_body(photo)))
    stack.reset_reports()


if __name__ == "__main__":
    main()
