"""A few seconds of shared cache for IOC answers (Redis), and the ETag that lets a browser skip the body.

Dashboards poll the same few filter sets; every API process answers them from Redis for
CACHE_SECONDS after the first one computed them. A Redis that is down only costs the cache.
"""

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CACHE_SECONDS = 10
# Answers given to a key or token are never stored by caches (service/http_security.py); the ETag
# still lets a client that keeps its own copy revalidate it cheaply.
CACHE_CONTROL = "no-store"
REDIS_TIMEOUT_SECONDS = 0.25
_SEPARATOR = b"\n"


def cache_key(namespace: str, kind: str, parts: dict[str, object]) -> str:
    """Stable across processes: the same filters give the same key."""
    canonical = "&".join(f"{name}={parts[name]}" for name in sorted(parts))
    return f"ioc:{namespace}:{kind}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires; `*` matches any current answer."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


async def cached(redis, key: str, compute: Callable[[], Awaitable[bytes]]) -> tuple[bytes, str, bool]:
    """(body, etag, hit): from Redis when fresh, else computed now and stored for CACHE_SECONDS."""
    try:
        hit = await asyncio.wait_for(redis.get(key), REDIS_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("ioc cache unavailable: %s", type(exc).__name__)
        hit = None
    if hit:
        etag, _, body = hit.partition(_SEPARATOR)
        return body, etag.decode(), True
    body = await compute()
    etag = etag_of(body)
    try:
        await asyncio.wait_for(
            redis.set(key, etag.encode() + _SEPARATOR + body, ex=CACHE_SECONDS), REDIS_TIMEOUT_SECONDS
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("ioc cache not stored: %s", type(exc).__name__)
    return body, etag, False
