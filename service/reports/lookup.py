"""Looking a report up by its tracking code, wherever the code is the only key: /v1/reports/{code}
and its citizen actions, and Open311's GET requests/{service_request_id}.

Tracking codes are short enough to guess, and guessing is mostly misses, so every such lookup counts
against the caller's address in one budget (`rate_limit_tracking_lookup`), whichever door it came
through, and a code that does not exist costs `tracking_lookup_miss_cost` lookups. A spent budget
is `RateLimited` (429 with Retry-After), which each API answers in its own error shape.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request

from service.errors import NotFound
from service.ratelimit import client_address

T = TypeVar("T")

SCOPE = "lookup:address"


async def counted(request: Request, find: Callable[[], Awaitable[T]]) -> T:
    """`find()`'s answer, once this lookup is counted; a NotFound from it costs the miss's extra."""
    settings, limiter = request.app.state.settings, request.app.state.rate_limiter
    limited = settings.rate_limits_enabled
    address = client_address(request)
    if limited:
        await limiter.hit(settings.rate_limit_tracking_lookup, SCOPE, address)
    try:
        return await find()
    except NotFound:
        if limited and settings.tracking_lookup_miss_cost > 1:
            await limiter.hit(
                settings.rate_limit_tracking_lookup, SCOPE, address, cost=settings.tracking_lookup_miss_cost - 1
            )
        raise
