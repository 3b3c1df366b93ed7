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
from service.models import Report
from tests.conftest import in_app, limits_app
from tests.factories import report_body
from tests.processes import RedisServer, free_port


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


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
    with limits_app(settings, redis_url=redis_server.url) as app:
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
    with limits_app(settings) as app:
        codes = [app.post("/v1/reports", json=report_body(), headers={"X-API-Key": key}) for _ in range(3)]
    assert [response.status_code for response in codes] == [201, 201, 429]
    refused = codes[-1]
    assert refused.json()["code"] == "rate_limited"
    assert "intake:key" in refused.json()["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 61


def test_per_address_limit_answers_429_with_retry_after(settings, client, api_key):
    with limits_app(settings, rate_limit_intake_per_address="2/minute") as app:
        codes = [app.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}) for _ in range(3)]
    assert [response.status_code for response in codes] == [201, 201, 429]
    refused = codes[-1]
    assert refused.json()["code"] == "rate_limited"
    assert "intake:address" in refused.json()["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 61


def test_request_refused_by_one_limit_counts_against_no_other(settings, client, api_key):
    with limits_app(
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
    with limits_app(settings, redis_url=redis_server.url) as app:
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
    with limits_app(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0") as app:
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

    limit = Limit("5/minute", "intake:key", "one-app")

    async def ask_at_once(count: int, prefix: str):
        limiter = RateLimiter.from_url(redis_server.url, prefix=prefix)
        try:
            answers = await asyncio.gather(
                *(limiter.gate([limit], f"app:key-{number % 3}") for number in range(count)), return_exceptions=True
            )
            return answers, await limiter.redis.llen(limiter.key_of(limit))
        finally:
            await limiter.aclose()

    asyncio.run(ask_at_once(1, "gate-warm"))  # Redis learns the script
    before = command_counts(redis_server.url)
    answers, counted = asyncio.run(ask_at_once(12, f"gate-{uuid.uuid4().hex[:8]}"))
    during = command_counts(redis_server.url) - before
    # The first five pass the limit, each claiming its key or finding it claimed by an earlier one of the
    # five; the seven after them are refused, and a refused request claims nothing.
    assert answers[:5] == [True, True, True, False, False]
    assert all(isinstance(answer, RateLimited) for answer in answers[5:])
    assert counted == 5
    assert during["evalsha"] + during["eval"] == 1, during
    # The limit's list is written once for the call: its five entries in one LPUSH.
    assert during["lpush"] == 1 and during["set"] == 5, during


def test_a_shared_call_answers_and_leaves_the_lists_as_the_limits_library_checking_one_by_one(redis_server):
    """Random groups of requests, each with a few of a handful of small limits (some costing 2) and some
    with a claim (keys repeated): the gate, asked by the whole group at once, against the `limits`
    library's moving window asked request by request (every limit tested, then each hit, then the claim).
    Same answers, same spent limit, and every list as long and as lasting."""
    import random

    from limits import parse

    from service.ratelimit import Limit, RateLimited, RateLimiter

    rates = ["1/minute", "3/minute", "4/hour", "6/minute"]
    rng = random.Random(1022)

    def group() -> list[tuple[list[Limit], str | None]]:
        requests = []
        for _ in range(rng.randint(1, 30)):
            chosen = rng.sample(range(len(rates)), rng.randint(0, 3))
            limits = [Limit(rates[i], f"scope-{i}", rng.choice(["a", "b"]), cost=rng.choice([1, 1, 2])) for i in chosen]
            claim = rng.choice([None, f"key-{rng.randint(1, 6)}"])
            if limits or claim:
                requests.append((limits, claim))
        return requests

    async def gate_at_once(limiter: RateLimiter, requests):
        answers = await asyncio.gather(*(limiter.gate(limits, claim) for limits, claim in requests), return_exceptions=True)
        return [("refused", str(a.detail)) if isinstance(a, RateLimited) else a for a in answers]

    async def one_by_one(limiter: RateLimiter, requests):
        answers = []
        for limits, claim in requests:
            spent = None
            for limit in limits:
                if not await limiter.limiter.test(parse(limit.rate), limit.scope, limit.identity, cost=limit.cost):
                    spent = limit
                    break
            if spent is not None:
                answers.append(("refused", f"Limit {spent.rate} reached for {spent.scope}."))
                continue
            for limit in limits:
                await limiter.limiter.hit(parse(limit.rate), limit.scope, limit.identity, cost=limit.cost)
            if claim is None:
                answers.append(None)
            else:
                answers.append(bool(await limiter.redis.set(f"{limiter.prefix}:claim:{claim}", "1", nx=True, ex=60)))
        return answers

    async def lists(limiter: RateLimiter, requests) -> dict:
        found = {}
        for limits, _ in requests:
            for limit in limits:
                key = limiter.key_of(limit)
                found[(limit.rate, limit.scope, limit.identity)] = (
                    await limiter.redis.llen(key),
                    await limiter.redis.ttl(key) > 0,
                )
        return found

    async def compare():
        for _ in range(25):
            gated = RateLimiter.from_url(redis_server.url, prefix=f"gate-{uuid.uuid4().hex[:8]}")
            checked = RateLimiter.from_url(redis_server.url, prefix=f"ref-{uuid.uuid4().hex[:8]}")
            try:
                for _ in range(3):  # a few groups in a row: the later ones meet the lists the earlier left
                    requests = group()
                    assert await gate_at_once(gated, requests) == await one_by_one(checked, requests), requests
                    assert await lists(gated, requests) == await lists(checked, requests)
            finally:
                await gated.aclose()
                await checked.aclose()

    asyncio.run(compare())
