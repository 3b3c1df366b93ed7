"""Staff users: creation, sign-in and refresh-token rotation."""

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.passwords import hash_password, needs_rehash, verify_password
from service.auth.subject import STAFF_ROLES
from service.auth.tokens import REFRESH_TOKEN_DAYS, hash_refresh_token, issue_access_token, new_refresh_token
from service.models import Department, RefreshToken, StaffUser
from service.models.types import utcnow

DEPARTMENT_ROLES = ("officer", "supervisor")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str


async def create(
    session: AsyncSession, *, username: str, password: str, role: str, department_code: str | None = None,
    full_name: str = "",
) -> StaffUser:
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}; choose one of {', '.join(STAFF_ROLES)}")
    if role in DEPARTMENT_ROLES and not department_code:
        raise ValueError(f"a {role} belongs to a department: give --department")
    if department_code and await session.get(Department, department_code) is None:
        raise ValueError(f"unknown department {department_code!r}")
    if (await session.exec(select(StaffUser).where(StaffUser.username == username))).first():
        raise ValueError(f"username {username!r} is taken")
    user = StaffUser(
        username=username, full_name=full_name, password_hash=hash_password(password), role=role,
        department_code=department_code,
    )
    session.add(user)
    await session.flush()
    return user


async def _issue(session: AsyncSession, user: StaffUser, secret_key: str) -> TokenPair:
    access, expires_in = issue_access_token(secret_key, user.id, user.role, user.department_code)
    refresh, refresh_hash = new_refresh_token()
    session.add(RefreshToken(user_id=user.id, token_hash=refresh_hash, expires_at=utcnow() + timedelta(days=REFRESH_TOKEN_DAYS)))
    await session.flush()
    return TokenPair(access, expires_in, refresh)


async def sign_in(session: AsyncSession, *, username: str, password: str, secret_key: str) -> TokenPair | None:
    user = (await session.exec(select(StaffUser).where(StaffUser.username == username))).first()
    if not verify_password(user.password_hash if user else None, password) or not user.active:
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.add(user)
    return await _issue(session, user, secret_key)


async def refresh(session: AsyncSession, *, token: str, secret_key: str) -> TokenPair | None:
    """Single use: the old refresh token is revoked and a new pair issued."""
    row = (await session.exec(select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(token)))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    user = await session.get(StaffUser, row.user_id)
    if user is None or not user.active:
        return None
    row.revoked_at = utcnow()
    session.add(row)
    return await _issue(session, user, secret_key)
