"""Abuse limits on intake and sign-in, counted in Redis so every API process shares them.

Limits are strings like "60/minute" (see the `limits` library) and come from settings. When Redis
is unreachable the limits fail open: a city would rather take a report than refuse it. A Redis that
hangs rather than refuses is given `check_timeout` (250 ms) per check, and then a circuit breaker keeps
every request from waiting on it again for a while. The limits on outcomes (failed sign-ins: `check`
and `count`) are the exception: they are kept in the process too, and when Redis cannot answer the
process's own count decides, so an outage of Redis does not open the door to guessing passwords (each
API process then allows the limit on its own).

Intake asks everything it needs from Redis in one round trip (`RateLimiter.gate`): every limit of the
request (per key, per address, per reporter) and the claim of its `Idempotency-Key`, in one Lua script,
with the same moving windows and the same Redis keys as the `limits` library's moving window. Requests
that ask at the same time share the call: under load one script call answers a group of them.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import NamedTuple, TypeVar

from fastapi import Request
from limits import RateLimitItem, WindowStats, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from service.breaker import CircuitBreaker
from service.errors import AppError

T = TypeVar("T")


class RateLimited(AppError):
    status, code = 429, "rate_limited"


# A healthy Redis answers a check in about a millisecond, but under load the answer waits for its turn
# on a busy event loop (64 requests in flight): at 50 ms the limits failed open exactly when busiest,
# and the idempotency claim with them. 250 ms is also what the job hand-off calls a hang.
CHECK_TIMEOUT_SECONDS = 0.25


# The questions of the requests waiting when it is sent, each answered in turn as if asked alone: for
# each, every limit first (nothing is counted when one is spent), then each is counted, then the key is
# claimed. A limit's list (newest timestamp first, as the `limits` moving window keeps it) is read and
# written once per call, not once per request: the entries the call's earlier requests counted are kept
# in `pushed` and come before the list's own, which are read only where a check reaches past them (LLEN
# says where the list ends; a limit far from spent needs no LINDEX). Then each list gets its entries in
# one LPUSH, trimmed to the limit's amount, with the limit's expiry: the lists end as separate checks
# leave them. KEYS: every key the call uses, once. ARGV: now, the claim's seconds to live, and the
# requests as JSON: per request [index of its claim's key or 0, [key index, amount, expiry, cost] per
# limit]. Answers one list per request: {0, index of the spent limit, when it has room again} or {1, 1
# when the key was claimed now / 0 when an earlier request holds it / -1 when there is no key}.
GATE_SCRIPT = """
local now = tonumber(ARGV[1])
local requests = cjson.decode(ARGV[3])
local pushed, length, limit_of, answers = {}, {}, {}, {}
for number, request in ipairs(requests) do
    local answer = nil
    for i = 2, #request do
        local key, amount, expiry, cost = request[i][1], request[i][2], request[i][3], request[i][4]
        if cost > amount then
            answer = {0, i - 1, tostring(now + expiry)}
            break
        end
        -- The entry a moving window looks at: the amount-cost'th newest, counting this call's own first.
        local at, before = amount - cost, pushed[key] or 0
        local entry = nil
        if at < before then
            entry = now
        else
            if length[key] == nil then
                length[key] = redis.call('llen', KEYS[key])
            end
            if at - before < length[key] then
                entry = tonumber(redis.call('lindex', KEYS[key], at - before))
            end
        end
        if entry and entry >= now - expiry then
            answer = {0, i - 1, tostring(entry + expiry)}
            break
        end
    end
    if answer == nil then
        for i = 2, #request do
            local key = request[i][1]
            pushed[key] = (pushed[key] or 0) + request[i][4]
            limit_of[key] = request[i]
        end
        if request[1] == 0 then
            answer = {1, -1}
        elseif redis.call('set', KEYS[request[1]], '1', 'NX', 'EX', ARGV[2]) then
            answer = {1, 1}
        else
            answer = {1, 0}
        end
    end
    answers[number] = answer
end
for key = 1, #KEYS do
    local count = pushed[key]
    if count then
        while count > 0 do
            local values = {}
            for i = 1, math.min(count, 200) do
                values[i] = ARGV[1]
            end
            redis.call('lpush', KEYS[key], unpack(values))
            count = count - #values
        end
        redis.call('ltrim', KEYS[key], 0, limit_of[key][2] - 1)
        redis.call('expire', KEYS[key], limit_of[key][3])
    end
end
return answers
"""
# At most this many requests' questions in one script call: one call holds Redis for its whole run.
GATE_BATCH_MAX = 256
# A claim outlives any sensible retry; after it the database's unique index still answers a late retry.
CLAIM_SECONDS = 24 * 3600


class Limit(NamedTuple):
    """One limit to pass: `rate` ("60/minute") counted for `identity` within `scope`. A tuple: made
    two or three times in every intake request, in half the time of a frozen dataclass."""

    rate: str
    scope: str
    identity: str
    cost: int = 1


@dataclass
class _Question:
    """One request's part of a gate call: its limits (Redis key, amount, expiry, cost), its claim's key,
    and where its answer goes."""

    limits: list[tuple[str, int, int, int]]
    claim: str | None
    answer: asyncio.Future


@lru_cache(maxsize=256)
def _parsed(rate: str) -> RateLimitItem:
    return parse(rate)


@lru_cache(maxsize=4096)
def _window(prefix: str, rate: str, scope: str, identity: str) -> tuple[str, int, int]:
    """(Redis key, amount, expiry in seconds) of a limit for one identity: the same app key and address
    ask on every request, and the key's text is made once."""
    item = _parsed(rate)
    return f"{prefix}:{item.key_for(scope, identity)}", item.amount, item.get_expiry()


@dataclass
class RateLimiter:
    limiter: MovingWindowRateLimiter
    storage: RedisStorage
    redis: Redis | None = None  # the gate's own client (the `limits` storage keeps its client to itself)
    prefix: str = "LIMITS"
    check_timeout: float = CHECK_TIMEOUT_SECONDS
    breaker: CircuitBreaker = field(
        default_factory=lambda: CircuitBreaker("rate limiter", slow_seconds=CHECK_TIMEOUT_SECONDS)
    )
    # The outcomes `count` counted in this process: what `check` goes by when Redis cannot answer.
    local: MovingWindowRateLimiter = field(default_factory=lambda: MovingWindowRateLimiter(MemoryStorage()), init=False)
    _waiting: "list[_Question]" = field(default_factory=list, init=False)  # asked, not yet sent
    _asking: bool = field(default=False, init=False)  # a task sends the waiting questions
    _tasks: set[asyncio.Task] = field(default_factory=set, init=False)

    @classmethod
    def from_url(
        cls, redis_url: str, prefix: str, *, connect_timeout: float = 1, socket_timeout: float = 1
    ) -> "RateLimiter":
        """`connect_timeout`: REDIS_CONNECT_TIMEOUT_SECONDS, as for the API's other Redis connections. A check
        gives up after `check_timeout` anyway; `socket_timeout` only bounds a client whose checks may wait longer."""
        storage = RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1),
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
        )
        redis = Redis.from_url(redis_url, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout)
        return cls(MovingWindowRateLimiter(storage), storage, redis, prefix)

    def __post_init__(self) -> None:
        self._gate = self.redis.register_script(GATE_SCRIPT) if self.redis is not None else None

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    def key_of(self, limit: Limit) -> str:
        """The Redis list of a limit: the same key as the `limits` library's moving window."""
        return _window(self.prefix, limit.rate, limit.scope, limit.identity)[0]

    async def gate(self, limits: list[Limit], claim: str | None = None) -> bool | None:
        """Pass every limit (raise 429 with Retry-After on the first one spent, counting none) and claim
        `claim` (an idempotency key's name) in one round trip. True when the claim is new, False when an
        earlier request made it, None when there is no claim or Redis could not say (it fails open).

        The requests that ask while a call is on its way are asked together in the next one (one
        script call, each request's question answered in turn as if alone), so Redis and its client
        are paid once per group, not once per request."""
        if self._gate is None or not (limits or claim):
            return None
        question = _Question(
            [(*_window(self.prefix, limit.rate, limit.scope, limit.identity), limit.cost) for limit in limits],
            f"{self.prefix}:claim:{claim}" if claim else None,
            asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(question)
        if not self._asking:
            self._asking = True
            task = asyncio.create_task(self._ask_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        answer = await question.answer
        if answer is None:
            return None
        if int(answer[0]) == 0:
            spent = limits[int(answer[1]) - 1]
            raise _refused(spent.rate, spent.scope, float(answer[2]))
        return None if int(answer[1]) < 0 else bool(int(answer[1]))

    async def _ask_waiting(self) -> None:
        """Ask Redis the waiting questions, a group at a time, until none is left."""
        gate = self._gate
        assert gate is not None
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:GATE_BATCH_MAX], self._waiting[GATE_BATCH_MAX:]
                keys, requests = _gate_arguments(batch)
                args: list[float | int | str] = [
                    time.time(),
                    CLAIM_SECONDS,
                    json.dumps(requests, separators=(",", ":")),
                ]
                answers = await self._ask(partial(gate, keys=keys, args=args))
                for number, question in enumerate(batch):
                    if not question.answer.done():  # its request may have been cancelled meanwhile
                        question.answer.set_result(answers[number] if answers is not None else None)
        finally:
            self._asking = False
            # Cancelled (the process stops): whoever still waits passes unlimited, as with Redis down.
            waiting, self._waiting = self._waiting, []
            for question in waiting:
                if not question.answer.done():
                    question.answer.set_result(None)

    async def _ask(self, question: Callable[[], Awaitable[T]]) -> T | None:
        """Redis's answer, or None when it is down or hangs (fail open; the breaker says so in the log)."""
        call = self.breaker.allow()
        if call is None:
            return None
        try:
            async with asyncio.timeout(self.check_timeout):
                answer = await question()
        except Exception as exc:  # noqa: BLE001 - fail open whatever Redis (or the client) raises
            self.breaker.failed(exc)
            return None
        finally:
            self.breaker.done(call)
        self.breaker.succeeded()
        return answer

    async def hit(self, limit: str, scope: str, identity: str, *, cost: int = 1) -> None:
        """Count one request (as `cost` requests); raise 429 with Retry-After when the limit is spent."""
        item: RateLimitItem = parse(limit)

        async def question() -> WindowStats | bool:
            if await self.limiter.hit(item, scope, identity, cost=cost):
                return True
            return await self.limiter.get_window_stats(item, scope, identity)

        answer = await self._ask(question)
        if isinstance(answer, WindowStats):
            raise _refused(limit, scope, answer.reset_time)

    async def check(self, limit: str, scope: str, identity: str) -> None:
        """Raise 429 with Retry-After when the limit is spent, without counting this request: for
        limits on outcomes (failed sign-ins), counted afterwards with `count`."""
        item: RateLimitItem = parse(limit)

        async def question(limiter: MovingWindowRateLimiter = self.limiter) -> WindowStats | bool:
            if await limiter.test(item, scope, identity):
                return True
            return await limiter.get_window_stats(item, scope, identity)

        answer = await self._ask(question)
        if answer is None:  # Redis could not say: this process's own count stands in (fails closed)
            answer = await question(self.local)
        if isinstance(answer, WindowStats):
            raise _refused(limit, scope, answer.reset_time)

    async def count(self, limit: str, scope: str, identity: str) -> None:
        """Count one event against the limit, without refusing anything now (in Redis, and in the
        process for when Redis cannot answer)."""
        item = parse(limit)
        await self.local.hit(item, scope, identity)
        await self._ask(lambda: self.limiter.hit(item, scope, identity))


def _gate_arguments(batch: list[_Question]) -> tuple[list[str], list[list]]:
    """GATE_SCRIPT's KEYS (each key once: the same app key and address ask in most requests) and its
    requests, which name their keys by their (1-based) place in KEYS."""
    places: dict[str, int] = {}

    def place(key: str) -> int:
        found = places.get(key)
        if found is None:
            found = places[key] = len(places) + 1
        return found

    requests = [
        [place(question.claim) if question.claim else 0]
        + [[place(key), amount, expiry, cost] for key, amount, expiry, cost in question.limits]
        for question in batch
    ]
    return list(places), requests


def _refused(limit: str, scope: str, reset_time: float) -> RateLimited:
    retry_after = max(1, int(reset_time - time.time()) + 1)
    return RateLimited(detail=f"Limit {limit} reached for {scope}.", headers={"Retry-After": str(retry_after)})


def client_address(request: Request) -> str:
    # uvicorn resolves X-Forwarded-For from trusted proxies (FORWARDED_ALLOW_IPS) into request.client.
    return request.client.host if request.client else "unknown"
