"""Abuse limits on intake and sign-in, counted in Redis so every API process shares them.

Limits are strings like "60/minute" (see the `limits` library) and come from settings. When Redis
is unreachable the limits fail open: a city would rather take a report than refuse it.
"""

import logging
import time
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from service.errors import AppError

log = logging.getLogger(__name__)


class RateLimited(AppError):
    status, code = 429, "rate_limited"


@dataclass
class RateLimiter:
    limiter: MovingWindowRateLimiter
    storage: RedisStorage

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

    async def hit(self, limit: str, scope: str, identity: str) -> None:
        """Count one request; raise 429 with Retry-After when the limit is spent."""
        item: RateLimitItem = parse(limit)
        try:
            allowed = await self.limiter.hit(item, scope, identity)
            if allowed:
                return
            stats = await self.limiter.get_window_stats(item, scope, identity)
        except Exception as exc:  # Redis down: fail open, say so in the log
            log.warning("rate limiter unavailable, not limiting: %s", type(exc).__name__)
            return
        raise _refused(limit, scope, stats.reset_time)

    async def check(self, limit: str, scope: str, identity: str) -> None:
        """Raise 429 with Retry-After when the limit is spent, without counting this request: for
        limits on outcomes (failed sign-ins), counted afterwards with `count`."""
        item: RateLimitItem = parse(limit)
        try:
            if await self.limiter.test(item, scope, identity):
                return
            stats = await self.limiter.get_window_stats(item, scope, identity)
        except Exception as exc:
            log.warning("rate limiter unavailable, not limiting: %s", type(exc).__name__)
            return
        raise _refused(limit, scope, stats.reset_time)

    async def count(self, limit: str, scope: str, identity: str) -> None:
        """Count one event against the limit, without refusing anything now."""
        try:
            await self.limiter.hit(parse(limit), scope, identity)
        except Exception as exc:
            log.warning("rate limiter unavailable, not counting: %s", type(exc).__name__)


def _refused(limit: str, scope: str, reset_time: float) -> RateLimited:
    retry_after = max(1, int(reset_time - time.time()) + 1)
    return RateLimited(detail=f"Limit {limit} reached for {scope}.", headers={"Retry-After": str(retry_after)})


def client_address(request: Request) -> str:
    # uvicorn resolves X-Forwarded-For from trusted proxies (FORWARDED_ALLOW_IPS) into request.client.
    return request.client.host if request.client else "unknown"
