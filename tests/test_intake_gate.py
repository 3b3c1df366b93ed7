"""Intake asks Redis once per report: every limit and the idempotency key's claim in one round trip.

The promises stay those of separate checks: 429 with Retry-After on whichever limit is spent (per
app key, per address, per reporter), nothing counted for a refused request, and a retry answered
with the first report even when Redis forgot the key or is down (the database's unique index decides).
"""

import asyncio
import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis
from sqlmodel import func, select

from service.auth import api_keys
from service.main import create_app
from service.models import Report
from tests.conftest import in_app
from tests.factories import report_body
from tests.processes import RedisServer, free_port


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def limited_app(settings, **update) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"queue_name": f"gate-{uuid.uuid4().hex[:8]}", **update})))


def redis_call(url: str, work):
    async def run():
        redis = Redis.from_url(url)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def command_counts(url: str) -> Counter:
    stats = redis_call(url, lambda redis: redis.info("commandstats"))
    return Counter({name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()})


def reports_with_key(client: TestClient, key: str) -> int:
    found = in_app(
        client, lambda s: s.exec(select(func.count()).select_from(Report).where(Report.idempotency_key == key))
    )
    return found.one()


def test_limits_and_idempotency_key_are_one_redis_round_trip(settings, client, api_key, redis_server):
    with limited_app(settings, redis_url=redis_server.url) as app:
        headers = {"X-API-Key": api_key, "Idempotency-Key": f"one-trip-{uuid.uuid4().hex}"}
        warm = app.post("/v1/reports", json=report_body(reporter_phone="0903111222"), headers={"X-API-Key": api_key})
        assert warm.status_code == 201
        app.portal.call(app.app.state.handoff.drain)  # its job's hand-off is not this request's
        before = command_counts(redis_server.url)
        response = app.post("/v1/reports", json=report_body(reporter_phone="0903111222"), headers=headers)
        assert response.status_code == 201, response.text
        app.portal.call(app.app.state.handoff.drain)  # the job's hand-off, which follows the answer
        during = command_counts(redis_server.url) - before
    # One script before the answer, inside which the three limits (per key, per address, per reporter)
    # were counted and the key claimed; and one for the job's hand-off after the commit.
    assert during["evalsha"] + during["eval"] == 2, during
    assert during["lpush"] == 3 and during["set"] == 1 and during["zadd"] == 1, during


def test_per_key_limit_answers_429_with_retry_after(settings, client):
    key = in_app(client, lambda s: api_keys.create(s, name="small app", rate_limit="2/minute")).key
    with limited_app(settings) as app:
        codes = [app.post("/v1/reports", json=report_body(), headers={"X-API-Key": key}) for _ in range(3)]
    assert [response.status_code for response in codes] == [201, 201, 429]
    refused = codes[-1]
    assert refused.json()["code"] == "rate_limited"
    assert "intake:key" in refused.json()["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 61


def test_per_address_limit_answers_429_with_retry_after(settings, client, api_key):
    with limited_app(settings, rate_limit_intake_per_address="2/minute") as app:
        codes = [app.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}) for _ in range(3)]
    assert [response.status_code for response in codes] == [201, 201, 429]
    refused = codes[-1]
    assert refused.json()["code"] == "rate_limited"
    assert "intake:address" in refused.json()["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 61


def test_request_refused_by_one_limit_counts_against_no_other(settings, client, api_key):
    with limited_app(
        settings, rate_limit_intake_per_reporter="1/hour", rate_limit_intake_per_address="3/minute"
    ) as app:
        headers = {"X-API-Key": api_key}
        assert (
            app.post("/v1/reports", json=report_body(reporter_phone="0903000111"), headers=headers).status_code == 201
        )
        # The same reporter twice more: refused by the reporter's limit, not counted for the address.
        for _ in range(2):
            assert (
                app.post("/v1/reports", json=report_body(reporter_phone="0903000111"), headers=headers).status_code
                == 429
            )
        codes = [app.post("/v1/reports", json=report_body(), headers=headers).status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_retry_is_answered_with_the_first_report_after_redis_forgot_the_key(settings, client, api_key, redis_server):
    key = f"forgotten-{uuid.uuid4().hex}"
    with limited_app(settings, redis_url=redis_server.url) as app:
        headers = {"X-API-Key": api_key, "Idempotency-Key": key}
        first = app.post("/v1/reports", json=report_body(), headers=headers)
        redis_call(redis_server.url, lambda redis: redis.flushall())
        again = app.post("/v1/reports", json=report_body(), headers=headers)
        redis_call(redis_server.url, lambda redis: redis.flushall())
        other = app.post(
            "/v1/reports", json=report_body(description="Một phản ánh hoàn toàn khác về rác thải"), headers=headers
        )
    assert first.status_code == 201
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert reports_with_key(client, key) == 1


def test_retry_is_answered_with_the_first_report_while_redis_is_down(settings, client, api_key):
    key = f"redis-down-{uuid.uuid4().hex}"
    with limited_app(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0") as app:
        headers = {"X-API-Key": api_key, "Idempotency-Key": key}
        first = app.post("/v1/reports", json=report_body(), headers=headers)
        again = app.post("/v1/reports", json=report_body(), headers=headers)
        other = app.post(
            "/v1/reports", json=report_body(description="Một phản ánh hoàn toàn khác về rác thải"), headers=headers
        )
    assert first.status_code == 201  # the limits fail open
    assert again.status_code == 200 and again.json() == first.json()
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert reports_with_key(client, key) == 1


def test_requests_asking_at_once_share_a_call_and_are_answered_as_if_one_by_one(redis_server):
    """Twelve requests at the same moment: one script call, the same answers as twelve calls in turn."""
    from service.ratelimit import Limit, RateLimited, RateLimiter

    async def ask_at_once(count: int):
        limiter = RateLimiter.from_url(redis_server.url, prefix=f"gate-{uuid.uuid4().hex[:8]}")
        try:
            limit = Limit("5/minute", "intake:key", "one-app")
            answers = await asyncio.gather(
                *(limiter.gate([limit], f"app:key-{number % 3}") for number in range(count)), return_exceptions=True
            )
        finally:
            await limiter.aclose()
        return answers

    asyncio.run(ask_at_once(1))  # Redis learns the script
    before = command_counts(redis_server.url)
    answers = asyncio.run(ask_at_once(12))
    during = command_counts(redis_server.url) - before
    # The first five pass the limit, each claiming its key or finding it claimed by an earlier one of the
    # five; the seven after them are refused, and a refused request claims nothing.
    assert answers[:5] == [True, True, True, False, False]
    assert all(isinstance(answer, RateLimited) for answer in answers[5:])
    assert during["evalsha"] + during["eval"] == 1, during
    assert during["lpush"] == 5 and during["set"] == 5, during
