"""API keys for apps and department systems: `ik_<prefix>_<secret>`, stored as a hash, shown once."""

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from uuid import UUID
from weakref import WeakKeyDictionary

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from limits import parse
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.db import SessionDep
from service.errors import Forbidden, Unauthenticated
from service.models import ApiClient
from service.models.types import utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "ik"
ROLES = ("citizen_app", "officer", "dispatcher", "supervisor", "ioc_viewer", "admin", "department_system")
SUBMITTER_ROLES = frozenset({"citizen_app", "department_system", "admin", "dispatcher"})


def _hash(secret: str) -> str:
    # Keys are 256-bit random, so a fast hash is safe here (unlike passwords) and keeps every request cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def check_rate(rate: str) -> str:
    """A limit the `limits` library reads ("1000/minute", "50 per second"), or ValueError."""
    try:
        parse(rate)
    except ValueError as exc:
        raise ValueError(f"{rate!r} is not a rate; write it like 1000/minute") from exc
    return rate.strip()


@dataclass(frozen=True)
class IssuedKey:
    client: ApiClient
    key: str  # the full key: shown once, never stored


async def create(
    session: AsyncSession,
    *,
    name: str,
    role: str = "citizen_app",
    department_code: str | None = None,
    rate_limit: str | None = None,
) -> IssuedKey:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if rate_limit is not None:
        rate_limit = check_rate(rate_limit)
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient(
        name=name,
        key_prefix=prefix,
        key_hash=_hash(key),
        role=role,
        department_code=department_code,
        rate_limit=rate_limit,
    )
    session.add(client)
    await session.flush()
    return IssuedKey(client=client, key=key)


async def revoke(session: AsyncSession, *, prefix: str) -> ApiClient | None:
    client = (await session.exec(select(ApiClient).where(ApiClient.key_prefix == prefix))).first()
    if client and client.revoked_at is None:
        client.revoked_at = utcnow()
        session.add(client)
        from service.webhooks import outbox  # its subscriptions hear nothing more

        outbox.subscriptions_changed(session)
        await session.flush()
    _forget(prefix)
    return client


async def list_(session: AsyncSession) -> list[ApiClient]:
    return list((await session.exec(select(ApiClient).order_by(col(ApiClient.created_at)))).all())


# Keys this process has checked, by the hash of the whole key: (trusted until, on the monotonic clock;
# the client, detached from any session). Saves a query on every request of a busy app (issue 8's
# intake benchmark). The one detached instance is shared by the requests that use the key: nothing
# adds an ApiClient from authenticate() to a session (tests/test_intake.py).
_checked: dict[str, tuple[float, ApiClient]] = {}
_CHECKED_LIMIT = 10_000
_COLUMNS = tuple(ApiClient.model_fields)
TOUCH_EVERY = timedelta(minutes=1)
_touches: set[asyncio.Task] = set()


async def _touch(engine: AsyncEngine, client_id: UUID, now) -> None:
    try:
        async with engine.begin() as connection:
            await connection.execute(update(ApiClient).where(col(ApiClient.id) == client_id).values(last_used_at=now))
    except Exception as exc:  # noqa: BLE001 - a statistic: never worth failing or logging loudly over
        log.info("could not record the key's last use: %s", type(exc).__name__)


def _forget(prefix: str) -> None:
    for digest, (_, client) in list(_checked.items()):
        if client.key_prefix == prefix:
            _checked.pop(digest, None)


def _detached(found: ApiClient) -> ApiClient:
    """A copy that belongs to no session, so requests can share it without it being attached to one."""
    client = ApiClient(**{name: getattr(found, name) for name in _COLUMNS})
    make_transient_to_detached(client)
    return client


def _parse(key: str) -> tuple[str, str] | None:
    """(prefix, hash of the whole key), or None when the key is not one of ours."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    return parts[1], _hash(key)


def _cached(digest: str) -> ApiClient | None:
    checked = _checked.get(digest)
    return checked[1] if checked is not None and checked[0] > time.monotonic() else None


async def authenticate(session: AsyncSession, key: str, *, cache_seconds: float = 0) -> ApiClient | None:
    """The key's client, or None when the key is malformed, unknown or revoked.

    With `cache_seconds`, a key checked that recently is trusted without a query; revoking in this
    process forgets it at once, other processes notice within `cache_seconds`."""
    parsed = _parse(key)
    if parsed is None:
        return None
    prefix, digest = parsed
    client = _cached(digest) if cache_seconds else None
    if client is None:
        found = (await session.exec(select(ApiClient).where(ApiClient.key_prefix == prefix))).first()
        if found is None or found.revoked_at is not None or not hmac.compare_digest(found.key_hash, digest):
            _checked.pop(digest, None)
            return None
        client = _detached(found)
        if cache_seconds:
            if len(_checked) >= _CHECKED_LIMIT:
                _checked.clear()
            _checked[digest] = (time.monotonic() + cache_seconds, client)
    if isinstance(session.bind, AsyncEngine):  # the API's sessions are bound to its engine
        _touch_when_stale(session.bind, client)
    return client


def _touch_when_stale(engine: AsyncEngine, client: ApiClient) -> None:
    """Touch last_used_at at most once a minute, so hot clients don't write on every request; in the
    background on a connection of its own, so a request never holds one connection while waiting
    for another (64 requests on a pool of 20 would wait on each other) nor a write lock on SQLite."""
    now = utcnow()
    if client.last_used_at is None or now - client.last_used_at > TOUCH_EVERY:
        client.last_used_at = now  # on the detached copy only: the row is written by _touch
        touch = asyncio.create_task(_touch(engine, client.id, now))
        _touches.add(touch)
        touch.add_done_callback(_touches.discard)


async def api_client_of(request: Request) -> ApiClient:
    """The caller's app key (`X-API-Key`), as `ApiClientDep` gives it, without a session of the request:
    a key checked within API_KEY_CACHE_SECONDS costs no query, and only a miss opens a session of its own
    (for a route that needs no other database read before its write)."""
    key = request.headers.get("x-api-key")
    if not key:
        raise Unauthenticated(headers={"WWW-Authenticate": "ApiKey"})
    seconds = cache_seconds(request)
    parsed = _parse(key)
    client = _cached(parsed[1]) if parsed is not None and seconds else None
    if client is not None:
        _touch_when_stale(request.app.state.engine, client)
    elif parsed is not None and seconds:
        client = await _shared_lookup(request.app.state.sessions, key, parsed[1], seconds)
    else:
        client = await _lookup(request.app.state.sessions, key, seconds)
    if client is None:
        raise Unauthenticated(detail="The API key is unknown or revoked.", headers={"WWW-Authenticate": "ApiKey"})
    return client


async def _lookup(sessions: async_sessionmaker, key: str, seconds: float) -> ApiClient | None:
    async with sessions() as session:
        return await authenticate(session, key, cache_seconds=seconds)


# The lookups under way in each event loop, by the hash of the key. When a busy app's key runs out of
# the cache, every request of it in flight (64 in the intake benchmark) missed at once and opened a
# session for the same query, on a pool smaller than that: one lookup now answers them all.
_lookups: "WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future]]" = WeakKeyDictionary()


async def _shared_lookup(sessions: async_sessionmaker, key: str, digest: str, seconds: float) -> ApiClient | None:
    under_way = _lookups.setdefault(asyncio.get_running_loop(), {})
    lookup = under_way.get(digest)
    if lookup is None:
        lookup = under_way[digest] = asyncio.ensure_future(_lookup(sessions, key, seconds))
        lookup.add_done_callback(lambda _: under_way.pop(digest, None))
    # Shielded: a request that gives up (its client hung up) must not cancel the others' lookup.
    return await asyncio.shield(lookup)


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An app or department-system key")


def cache_seconds(request: Request) -> float:
    return request.app.state.settings.api_key_cache_seconds


async def require_api_client(
    request: Request, session: SessionDep, key: Annotated[str | None, Security(api_key_header)]
) -> ApiClient:
    if not key:
        raise Unauthenticated(headers={"WWW-Authenticate": "ApiKey"})
    client = await authenticate(session, key, cache_seconds=cache_seconds(request))
    if client is None:
        raise Unauthenticated(detail="The API key is unknown or revoked.", headers={"WWW-Authenticate": "ApiKey"})
    return client


def check_submitter(client: ApiClient) -> ApiClient:
    if client.role not in SUBMITTER_ROLES:
        raise Forbidden(detail="This key may not submit reports.")
    return client


async def require_submitter(client: Annotated[ApiClient, Depends(require_api_client)]) -> ApiClient:
    return check_submitter(client)


ApiClientDep = Annotated[ApiClient, Depends(require_api_client)]
SubmitterDep = Annotated[ApiClient, Depends(require_submitter)]


def client_id(client: ApiClient) -> UUID:
    return client.id
