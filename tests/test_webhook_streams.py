"""Each webhook event is delivered once when nothing fails, and a stream whose worker died resumes.

Real arq workers (two, ten jobs at a time each) deliver to a real local receiver that takes 0–400 ms
per answer while staff move many reports through their lives; the receiver counts what it gets.
"""

import asyncio
import random
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from uuid import UUID

import pytest
from sqlmodel import col, select

from service.models import WebhookEvent
from service.webhooks import lease, outbox
from tests.conftest import in_app, run_worker
from tests.factories import report_body
from tests.test_tickets import make_user
from tests.test_webhooks import STREET_LIGHT, Receiver, new_key, submit, subscribe

REPORTS = 12
SLOWEST_ANSWER_SECONDS = 0.4


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings, monkeypatch):
    monkeypatch.setattr(settings, "webhook_allowed_hosts", ["127.0.0.1"])
    monkeypatch.setattr(settings, "webhook_retry_schedule_seconds", [0.05, 0.05, 0.05])
    monkeypatch.setattr(settings, "webhook_retry_jitter", 0.0)
    # Generous: an answer that took this long would be a real failure, and its retry a real repeat.
    monkeypatch.setattr(settings, "webhook_total_timeout_seconds", 15.0)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def slow_receiver():
    """Answers 200 after 0–400 ms, a different wait each time (seeded, so runs repeat)."""
    server = Receiver()
    draw = random.Random(1022)
    for _ in range(5000):
        server.answer(200, delay=draw.uniform(0, SLOWEST_ANSWER_SECONDS), body=b"ok")
    yield server
    server.close()


def wait_until(predicate, timeout: float, what: str, state=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}; {state()}")
        time.sleep(0.2)


@contextmanager
def workers_running(client, count: int):
    """`count` real worker processes' arq workers (reports and webhooks) on the app's event loop,
    polling their queues until the block ends."""
    from workers.main import build_workers

    async def start():
        started = []
        for _ in range(count):
            # No sweep: every event must reach its job through the hand-off.
            for worker in build_workers(client.app.state.settings, crons=False, poll_delay=0.05, handle_signals=False):
                started.append((worker, asyncio.ensure_future(worker.main())))
        return started

    async def stop(started):
        for worker, task in started:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await worker.close()

    started = client.portal.call(start)
    try:
        yield
    finally:
        client.portal.call(stop, started)


def outbox_rows(client, subscription_id: str) -> list[WebhookEvent]:
    async def load(session):
        rows = await session.exec(
            select(WebhookEvent)
            .where(WebhookEvent.subscription_id == UUID(subscription_id))
            .order_by(col(WebhookEvent.id))
        )
        return list(rows.all())

    return in_app(client, load)


def queue_is_empty(client) -> bool:
    """No job queued, deferred or running (arq keeps a running job in the queue until it ends)."""
    settings = client.app.state.settings
    return all(
        client.portal.call(client.app.state.arq.zcard, queue) == 0
        for queue in (settings.queue_name, settings.webhook_queue_name)
    )


def test_busy_streams_deliver_every_event_once_and_in_order(client, api_key, slow_receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, slow_receiver.url)
    staff = make_user(client, "admin.staff", "admin")

    def act(report: dict, path: str, body: dict) -> None:
        response = client.post(f"/v1/tickets/{report['id']}/{path}", json=body, headers=staff)
        assert response.status_code in (200, 201), response.text

    with workers_running(client, count=2):
        reports = []
        for n in range(REPORTS):
            body = report_body(service_code="street_lighting", lat=10.75 + n * 0.003, lon=106.65)
            response = client.post("/v1/reports", json=body, headers={"X-API-Key": api_key})
            assert response.status_code == 201, response.text
            reports.append(response.json())

        statuses: list[str] = []

        def all_assigned() -> bool:
            statuses[:] = [
                client.get(f"/v1/tickets/{report['id']}", headers=staff).json()["status"] for report in reports
            ]
            return statuses == ["assigned"] * REPORTS

        wait_until(all_assigned, 120, "the workers to route every report", lambda: f"statuses {statuses}")
        # Each round changes every report once while the earlier events of its stream are still on their way.
        for path, body in (
            ("transitions", {"to": "in_progress"}),
            ("comments", {"body": "Đội chiếu sáng đã nhận việc, chiều nay sẽ đến.", "visibility": "public"}),
            ("transitions", {"to": "on_hold", "question": "Anh/chị cho biết số trụ đèn được không?"}),
            ("transitions", {"to": "in_progress"}),
            ("comments", {"body": "Đã tìm được trụ đèn, đang thay bóng.", "visibility": "public"}),
            ("transitions", {"to": "resolved", "public_reply": "Đã thay bóng đèn mới."}),
            ("transitions", {"to": "closed"}),
        ):
            for report in reports:
                act(report, path, body)

        def settled() -> bool:
            return queue_is_empty(client) and all(
                row.status != "pending" for row in outbox_rows(client, subscription["id"])
            )

        wait_until(settled, 180, "every webhook event to be delivered")

    rows = outbox_rows(client, subscription["id"])
    assert {row.status for row in rows} == {"delivered"}
    assert len(rows) >= REPORTS * 9
    arrivals = [request.headers["webhook-id"] for request in slow_receiver.requests]
    repeats = {event_id: times for event_id, times in Counter(arrivals).items() if times > 1}
    assert repeats == {}, f"{sum(repeats.values()) - len(repeats)} repeats in {len(arrivals)} deliveries"
    assert sorted(arrivals) == sorted(row.event_id for row in rows)
    # Per report, the receiver got the events in the order they happened.
    expected: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        expected[str(row.report_id)].append(row.event_id)
    report_of = {row.event_id: str(row.report_id) for row in rows}
    arrived: dict[str, list[str]] = defaultdict(list)
    for event_id in arrivals:
        arrived[report_of[event_id]].append(event_id)
    assert arrived == expected


def test_stream_held_by_a_killed_worker_resumes_when_its_lease_ends(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    created = submit(client, api_key, description=STREET_LIGHT)
    client.portal.call(client.app.state.handoff.drain)  # the stream's job is queued
    # The follow-up job took the stream's lease on a worker that was then killed: nobody gives it back.
    dead_holder = outbox.deliver_job_id(subscription["id"], created["id"]) + ":follow-up"
    lease_ends = time.monotonic() + 2

    async def die_holding_the_lease(session):
        assert (
            await lease.claim(session, UUID(subscription["id"]), UUID(created["id"]), holder=dead_holder, seconds=2)
            is None
        )

    in_app(client, die_holding_the_lease)
    # The stream's own job finds it busy, sends nothing, and comes back; once the lease ends it delivers.
    run_worker(client)
    assert receiver.types() == ["report.created"]
    assert receiver.requests[0].at >= lease_ends - 0.1
    assert [row.status for row in outbox_rows(client, subscription["id"])] == ["delivered"]


def test_a_live_lease_is_never_taken_over(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    created = submit(client, api_key, description=STREET_LIGHT)
    stream = (UUID(subscription["id"]), UUID(created["id"]))

    async def claims(session):
        first = await lease.claim(session, *stream, holder="job-a", seconds=30)
        second = await lease.claim(session, *stream, holder="job-b", seconds=30)
        renewed = await lease.claim(session, *stream, holder="job-a", seconds=30)
        await lease.release(session, *stream, holder="job-b")  # not b's to give back
        still_held = await lease.claim(session, *stream, holder="job-b", seconds=30)
        await lease.release(session, *stream, holder="job-a")
        after_release = await lease.claim(session, *stream, holder="job-b", seconds=30)
        return first, second, renewed, still_held, after_release

    first, second, renewed, still_held, after_release = in_app(client, claims)
    assert first is None and renewed is None and after_release is None
    assert 29 < second <= 30 and 29 < still_held <= 30
