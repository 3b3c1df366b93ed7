"""Abuse limits on intake and sign-in, counted in Redis so every API process shares them.

Limits are strings like "60/minute" (see the `limits` library) and come from settings. When Redis
is unreachable the limits fail open: a city would rather take a report than refuse it. A Redis that
hangs rather than refuses is given `check_timeout` (50 ms) per check, and then a circuit breaker keeps
every request from waiting on it again for a while.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request
from limits import RateLimitItem, WindowStats, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from service.breaker import CircuitBreaker
from service.errors import AppError

T = TypeVar("T")


class RateLimited(AppError):
    status, code = 429, "rate_limited"


# A healthy Redis answers a check in about a millisecond; 50 ms leaves room for a busy event loop.
CHECK_TIMEOUT_SECONDS = 0.05


@dataclass
class RateLimiter:
    limiter: MovingWindowRateLimiter
    storage: RedisStorage
    check_timeout: float = CHECK_TIMEOUT_SECONDS
    breaker: CircuitBreaker = field(
        default_factory=lambda: CircuitBreaker("rate limiter", slow_seconds=CHECK_TIMEOUT_SECONDS)
    )

    @classmethod
    def from_url(cls, redis_url: str, prefix: str) -> "RateLimiter":
        storage = RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1),
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        return cls(MovingWindowRateLimiter(storage), storage)

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

        async def question() -> WindowStats | bool:
            if await self.limiter.test(item, scope, identity):
                return True
            return await self.limiter.get_window_stats(item, scope, identity)

        answer = await self._ask(question)
        if isinstance(answer, WindowStats):
            raise _refused(limit, scope, answer.reset_time)

    async def count(self, limit: str, scope: str, identity: str) -> None:
        """Count one event against the limit, without refusing anything now."""
        await self._ask(lambda: self.limiter.hit(parse(limit), scope, identity))


def _refused(limit: str, scope: str, reset_time: float) -> RateLimited:
    retry_after = max(1, int(reset_time - time.time()) + 1)
    return RateLimited(detail=f"Limit {limit} reached for {scope}.", headers={"Retry-After": str(retry_after)})


def client_address(request: Request) -> str:
    # uvicorn resolves X-Forwarded-For from trusted proxies (FORWARDED_ALLOW_IPS) into request.client.
    return request.client.host if request.client else "unknown"
