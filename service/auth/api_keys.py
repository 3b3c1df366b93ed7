"""API keys for apps and department systems: `ik_<prefix>_<secret>`, stored as a hash, shown once."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.db import SessionDep
from service.errors import Forbidden, Unauthenticated
from service.models import ApiClient
from service.models.types import utcnow

KEY_PREFIX = "ik"
ROLES = ("citizen_app", "officer", "dispatcher", "supervisor", "ioc_viewer", "admin", "department_system")


def _hash(secret: str) -> str:
    # Keys are 256-bit random, so a fast hash is safe here (unlike passwords) and keeps every request cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    client: ApiClient
    key: str  # the full key: shown once, never stored


async def create(
    session: AsyncSession, *, name: str, role: str = "citizen_app", department_code: str | None = None
) -> IssuedKey:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient(name=name, key_prefix=prefix, key_hash=_hash(key), role=role, department_code=department_code)
    session.add(client)
    await session.flush()
    return IssuedKey(client=client, key=key)


async def revoke(session: AsyncSession, *, prefix: str) -> ApiClient | None:
    client = (await session.exec(select(ApiClient).where(ApiClient.key_prefix == prefix))).first()
    if client and client.revoked_at is None:
        client.revoked_at = utcnow()
        session.add(client)
        await session.flush()
    return client


async def list_(session: AsyncSession) -> list[ApiClient]:
    return list((await session.exec(select(ApiClient).order_by(ApiClient.created_at))).all())


async def authenticate(session: AsyncSession, key: str) -> ApiClient | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    client = (await session.exec(select(ApiClient).where(ApiClient.key_prefix == parts[1]))).first()
    if client is None or client.revoked_at is not None:
        return None
    if not hmac.compare_digest(client.key_hash, _hash(key)):
        return None
    # Touch last_used_at at most once a minute so hot clients don't write on every request.
    now = utcnow()
    if client.last_used_at is None or now - client.last_used_at > timedelta(minutes=1):
        client.last_used_at = now
        session.add(client)
    return client


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An app or department-system key")


async def require_api_client(session: SessionDep, key: Annotated[str | None, Security(api_key_header)]) -> ApiClient:
    if not key:
        raise Unauthenticated(headers={"WWW-Authenticate": "ApiKey"})
    client = await authenticate(session, key)
    if client is None:
        raise Unauthenticated(detail="The API key is unknown or revoked.", headers={"WWW-Authenticate": "ApiKey"})
    return client


async def require_submitter(client: Annotated[ApiClient, Depends(require_api_client)]) -> ApiClient:
    if client.role not in ("citizen_app", "department_system", "admin", "dispatcher"):
        raise Forbidden(detail="This key may not submit reports.")
    return client


ApiClientDep = Annotated[ApiClient, Depends(require_api_client)]
SubmitterDep = Annotated[ApiClient, Depends(require_submitter)]


def client_id(client: ApiClient) -> UUID:
    return client.id
