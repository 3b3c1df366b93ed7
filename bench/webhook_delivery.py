"""Webhooks under a burst of report lifecycles: is each event delivered once, and each stream in order?

    .venv/bin/python bench/webhook_delivery.py [--reports 100]

Nothing fails on purpose: a local receiver (in this process) answers 200 to every POST after a random
0–400 ms, two `intake worker` processes deliver, and `intake serve` takes the changes. The reports
are filed at once; once they are routed, staff take each through seven steps (in progress, a public
reply, on hold, in progress, a reply, resolved, closed), one right after another and 16 reports at
a time, without waiting for deliveries: a report's next event is written while the previous ones are
still on their way, so its (subscription, report) stream is busy when the next hand-off comes.
Counted: deliveries the receiver got, repeats (an event id it had seen before), and streams received
in order (every event, none after a later one of its stream).
"""

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from bench import stack  # noqa: E402

SLOWEST_ANSWER_SECONDS = 0.4
WORKERS = 2
CONCURRENCY = 16
PASSWORD = "bench webhook password"
SETTLE_TIMEOUT_SECONDS = 900
# Long enough for a second job's attempt at an event already sent to arrive (the follow-up waits 0.5 s).
GRACE_SECONDS = 3
# Categories routed without a dispatcher, each with a description that fits it.
REPORTS = [
    ("street_lighting", "Đèn đường bị tắt cả đoạn sau cơn mưa, rất tối và nguy hiểm"),
    ("drainage_flooding", "Nước ngập sâu tới đầu gối trên đường, cống thoát nước bị nghẹt"),
    ("waste_sanitation", "Rác thải dồn ứ bốc mùi hôi thối, mấy ngày chưa ai thu gom"),
    ("road_traffic", "Đường bị sụt lún tạo ổ gà lớn, nhiều người đi xe máy té ngã"),
]
STEPS = [
    ("transitions", {"to": "in_progress"}),
    ("comments", {"body": "Đơn vị đã nhận việc, chiều nay sẽ đến kiểm tra.", "visibility": "public"}),
    ("transitions", {"to": "on_hold", "question": "Anh/chị cho biết số nhà gần nhất được không?"}),
    ("transitions", {"to": "in_progress"}),
    ("comments", {"body": "Đã tìm được vị trí, đang xử lý.", "visibility": "public"}),
    ("transitions", {"to": "resolved", "public_reply": "Đã xử lý xong."}),
    ("transitions", {"to": "closed"}),
]


@dataclass
class Delivery:
    reports: int
    events: int  # outbox rows (one subscription: one per event)
    delivered: int
    received: int  # POSTs the receiver got
    repeats: int
    streams: int
    streams_in_order: int
    attempts: int  # rows in the delivery log
    failed_attempts: int
    settle_seconds: float  # last staff action → every event delivered
    lag_p50_ms: float  # event written → delivered
    lag_p95_ms: float


class SlowReceiver:
    """Answers 200 after 0–400 ms (seeded); records each POST's webhook-id in arrival order."""

    def __init__(self, seed: int = 1022):
        self.arrivals: list[str] = []
        draw, lock = random.Random(seed), threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    receiver.arrivals.append(self.headers["webhook-id"])
                    delay = draw.uniform(0, SLOWEST_ANSWER_SECONDS)
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/intake"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fetch(query: str) -> list:
    async def run():
        connection = await asyncpg.connect(stack.database_url())
        try:
            return await connection.fetch(query)
        finally:
            await connection.close()

    return asyncio.run(run())


def intake(*args: str) -> str:
    out = subprocess.run([stack.INTAKE, *args], cwd=stack.ROOT, env=stack.bench_env(INTAKE_PASSWORD=PASSWORD),
                         check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def report_body(number: int) -> dict:
    """On a 10-wide grid 130 m apart inside one demo ward: routed, and never a duplicate of another."""
    service_code, description = REPORTS[number % len(REPORTS)]
    return {
        "description": f"{description} (điểm {number})",
        "service_code": service_code,
        **({"attributes": {"waste_type": ["household"]}} if service_code == "waste_sanitation" else {}),
        "lat": round(10.7705 + (number // 10) * 0.0012, 6),
        "lon": round(106.6945 + (number % 10) * 0.0012, 6),
        "channel": "app",
    }


async def _all(calls, concurrency: int = CONCURRENCY) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)

    async def one(call):
        async with gate:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


def burst(url: str, app_key: str, admin_key: str, receiver_url: str, count: int) -> float:
    """Subscribe, file `count` reports, wait until they are routed, then run every lifecycle step; returns
    the monotonic time of the last staff action."""

    async def run() -> float:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            subscribed = await client.post("/v1/webhooks/subscriptions", json={"url": receiver_url},
                                           headers={"X-API-Key": admin_key})
            assert subscribed.status_code == 201, subscribed.text
            token = await client.post("/v1/auth/token", data={"username": "bench.webhooks", "password": PASSWORD})
            staff = {"Authorization": f"Bearer {token.json()['access_token']}"}
            filed = await _all([
                lambda n=n: client.post("/v1/reports", json=report_body(n), headers={"X-API-Key": app_key})
                for n in range(count)
            ])
            assert {r.status_code for r in filed} == {201}, [r.text for r in filed if r.status_code != 201][:3]
            ids = [r.json()["id"] for r in filed]
            routed = await asyncio.to_thread(stack.wait_until, lambda: stack.sql(
                "SELECT count(*) FROM reports WHERE status = 'assigned'") >= count, 600)
            assert routed, "the workers did not route every report in 10 minutes"

            async def lifecycle(report_id: str) -> httpx.Response:
                for path, body in STEPS:
                    response = await client.post(f"/v1/tickets/{report_id}/{path}", json=body, headers=staff)
                    if response.status_code >= 300:
                        break
                return response

            done = await _all([lambda i=i: lifecycle(i) for i in ids])
            assert {r.status_code for r in done} <= {200, 201}, [r.text for r in done if r.status_code >= 300][:3]
            return time.monotonic()

    return asyncio.run(run())


def in_order(arrivals: list[str], events: list[str]) -> bool:
    """Every event arrived, and none after a later one of its stream (a repeat right after itself is
    counted as a repeat, not as disorder)."""
    position = {event_id: index for index, event_id in enumerate(events)}
    seen = [position[event_id] for event_id in arrivals]
    return set(arrivals) == set(events) and seen == sorted(seen)


def measure(arrivals: list[str], reports: int, settle_seconds: float) -> Delivery:
    rows = fetch("SELECT event_id, report_id::text AS report, status FROM webhook_events ORDER BY id")
    expected: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        expected[row["report"]].append(row["event_id"])
    report_of = {row["event_id"]: row["report"] for row in rows}
    arrived: dict[str, list[str]] = defaultdict(list)
    for event_id in arrivals:
        arrived[report_of.get(event_id, "?")].append(event_id)
    lag = fetch("""SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
                          percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95
                   FROM (SELECT extract(epoch FROM delivered_at - created_at) * 1000 AS ms
                         FROM webhook_events WHERE delivered_at IS NOT NULL) AS lags""")[0]
    return Delivery(
        reports=reports,
        events=len(rows),
        delivered=sum(row["status"] == "delivered" for row in rows),
        received=len(arrivals),
        repeats=len(arrivals) - len(set(arrivals)),
        streams=len(expected),
        streams_in_order=sum(in_order(arrived.get(report, []), events) for report, events in expected.items()),
        attempts=stack.sql("SELECT count(*) FROM webhook_delivery_attempts"),
        failed_attempts=stack.sql("SELECT count(*) FROM webhook_delivery_attempts WHERE NOT succeeded"),
        settle_seconds=settle_seconds,
        lag_p50_ms=float(lag["p50"] or 0),
        lag_p95_ms=float(lag["p95"] or 0),
    )


def forget_subscriptions() -> None:
    """Earlier runs' subscriptions point at receivers long gone: they (and their events) go first."""
    stack.sql("TRUNCATE webhook_subscriptions CASCADE")


def run(reports: int = 100) -> Delivery:
    stack.reset_reports()
    forget_subscriptions()
    app_key = stack.create_api_key("bench webhooks app")
    admin_key = intake("apikey", "create", "--name", "bench webhooks admin", "--role", "admin")
    if not stack.sql("SELECT count(*) FROM staff_users WHERE username = 'bench.webhooks'"):
        intake("user", "create", "--username", "bench.webhooks", "--role", "admin")
    receiver = SlowReceiver()
    allowed = {"WEBHOOK_ALLOWED_HOSTS": json.dumps(["127.0.0.1"])}
    processes = stack.start_workers(WORKERS, **allowed)
    try:
        with stack.server("intake", 1, **allowed) as running:
            last_action = burst(running.url, app_key, admin_key, receiver.url, reports)
            settled = stack.wait_until(
                lambda: stack.sql("SELECT count(*) FROM webhook_events WHERE status = 'pending'") == 0,
                SETTLE_TIMEOUT_SECONDS)
            settle_seconds = time.monotonic() - last_action
            if not settled:
                raise RuntimeError(f"webhook events still pending after {SETTLE_TIMEOUT_SECONDS} s")
            time.sleep(GRACE_SECONDS)
    finally:
        for process in processes:
            stack.stop_process(process)
        receiver.close()
    result = measure(list(receiver.arrivals), reports, settle_seconds)
    stack.log(f"webhooks: {result.received} deliveries of {result.events} events, {result.repeats} repeats, "
              f"{result.streams_in_order}/{result.streams} streams in order")
    stack.reset_reports()
    forget_subscriptions()
    return result


def render(result: Delivery) -> str:
    goal = "met" if result.repeats == 0 and result.streams_in_order == result.streams else "**missed**"
    return "\n".join([
        f"{result.reports} reports filed at once, then each taken through 7 staff steps back to back ({CONCURRENCY} "
        f"reports at a time, not waiting for deliveries; {result.events:,} events, one admin subscription); "
        f"a local receiver answering 200 after "
        f"0–{SLOWEST_ANSWER_SECONDS * 1000:.0f} ms; {WORKERS} `intake worker` processes (`max_jobs` 10), "
        "one `intake serve`. Nothing fails on purpose.",
        "",
        "| events | delivered | POSTs received | **repeats** | streams in order | attempts logged (failed) | "
        "event → delivered p50 / p95 | last change → all delivered |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result.events:,} | {result.delivered:,} | {result.received:,} | **{result.repeats}** | "
        f"{result.streams_in_order} of {result.streams} | {result.attempts:,} ({result.failed_attempts}) | "
        f"{result.lag_p50_ms / 1000:.1f} s / {result.lag_p95_ms / 1000:.1f} s | {result.settle_seconds:.1f} s |",
        "",
        f"Goal (0 repeats, every stream in order): {goal}.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100)
    args = parser.parse_args()
    stack.ensure_database()
    print(render(run(args.reports)))


if __name__ == "__main__":
    main()
