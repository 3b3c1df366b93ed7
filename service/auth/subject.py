"""Who is calling, and the one place where roles are checked.

A caller is either a staff user (Bearer JWT) or an API client (X-API-Key). Everything downstream
sees an AuthSubject; which rows it may see is decided in `service.tickets.visibility`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal
from uuid import UUID

import jwt
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth import api_keys
from service.auth.tokens import decode_access_token
from service.db import SessionDep
from service.errors import Forbidden, Unauthenticated
from service.models import RefreshToken, StaffUser

ROLES = ("citizen_app", "department_system", "officer", "dispatcher", "supervisor", "ioc_viewer", "admin")
STAFF_ROLES = ("officer", "dispatcher", "supervisor", "ioc_viewer", "admin")
# Staff who belong to a department and work only its tickets.
DEPARTMENT_STAFF_ROLES = ("officer", "supervisor")


@dataclass(frozen=True)
class AuthSubject:
    kind: Literal["staff", "api_client"]
    id: UUID
    role: str
    department_code: str | None
    name: str
    # The sign-in (refresh-token family) a staff access token came from: what signing out ends.
    sign_in: UUID | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return f"{'staff' if self.kind == 'staff' else 'api'}:{self.name}"


bearer_scheme = HTTPBearer(auto_error=False, description="A staff access token from POST /v1/auth/token")
# The same bearer token, declared a second way so that the docs' "Authorize" signs in by itself: the
# OAuth2 password flow posts a username and password to the token endpoint and sends what it gets.
password_flow = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token",
    refreshUrl="/v1/auth/token",
    auto_error=False,
    description="Staff sign-in: a username and password for a 15-minute access token",
)


async def current_subject(
    request: Request,
    session: SessionDep,
    key: Annotated[str | None, Security(api_keys.api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    _signed_in: Annotated[str | None, Security(password_flow)],  # read through `bearer`; here for the spec
) -> AuthSubject:
    return await authenticate(request, session, key=key, bearer_token=bearer.credentials if bearer else None)


CHALLENGE = {"WWW-Authenticate": "Bearer, ApiKey"}


async def authenticate(
    request: Request, session: AsyncSession, *, key: str | None, bearer_token: str | None
) -> AuthSubject:
    """The caller of a staff access token or an API key; Unauthenticated for none, a wrong one, or both."""
    if "authorization" in request.headers and "x-api-key" in request.headers:
        # Which one would count is a guess the client should not have to make, and an unknown (or
        # empty) credential sent beside a valid one must not pass unnoticed.
        raise Unauthenticated("ambiguous_credentials", headers=CHALLENGE)
    if bearer_token is not None:
        try:
            claims = decode_access_token(bearer_token, request.app.state.settings.secret_key)
            user_id = UUID(str(claims["sub"]))
            family_id = UUID(str(claims["fam"])) if claims.get("fam") else None
        except (jwt.PyJWTError, ValueError) as exc:  # ValueError: a signed token whose ids are not ids
            raise Unauthenticated("invalid_token", headers=CHALLENGE) from exc
        user = await _signed_in_user(session, user_id, family_id)
        if user is None or not user.active:
            raise Unauthenticated("invalid_token", headers=CHALLENGE)
        return AuthSubject("staff", user.id, user.role, user.department_code, user.username, family_id)
    if key:
        client = await api_keys.authenticate(session, key, cache_seconds=api_keys.cache_seconds(request))
        if client is None:
            raise Unauthenticated(detail="The API key is unknown or revoked.", headers=CHALLENGE)
        return AuthSubject("api_client", client.id, client.role, client.department_code, client.key_prefix)
    raise Unauthenticated(headers=CHALLENGE)


async def subject_if_any(request: Request, session: AsyncSession) -> AuthSubject | None:
    """The caller, for a resource that anyone may read and some callers more: None without
    credentials and with ones that do not hold (the resource then answers as to anyone)."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    bearer_token = token if scheme.lower() == "bearer" and token else None
    key = request.headers.get("x-api-key")
    if bearer_token is None and not key:
        return None
    try:
        return await authenticate(request, session, key=key, bearer_token=bearer_token)
    except Unauthenticated:
        return None


async def _signed_in_user(session: AsyncSession, user_id: UUID, family_id: UUID | None) -> StaffUser | None:
    """The token's user, while its sign-in still stands: a family whose refresh tokens were all
    revoked (a replayed refresh token) ends its access tokens too, in the same query."""
    statement = select(StaffUser).where(col(StaffUser.id) == user_id)
    if family_id is not None:
        alive = select(RefreshToken.id).where(
            col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None)
        )
        statement = statement.where(alive.exists())
    return (await session.exec(statement)).first()


CurrentSubject = Annotated[AuthSubject, Depends(current_subject)]


def require_roles(*roles: str) -> Callable:
    """A dependency that lets only these roles through (403 otherwise)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    async def check(subject: CurrentSubject) -> AuthSubject:
        if subject.role not in roles:
            raise Forbidden(detail=f"This needs one of the roles: {', '.join(roles)}.")
        return subject

    return check
