"""Staff users: creation, sign-in and refresh-token rotation."""

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from uuid import UUID, uuid4

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.passwords import hash_password, needs_rehash, off_the_loop, verify_password
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


class RefreshRefused(Enum):
    INVALID = "invalid"  # unknown, expired, or its user is gone
    REUSED = "reused"  # already spent: its family was revoked, which the caller must commit


async def create(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: str,
    department_code: str | None = None,
    full_name: str = "",
) -> StaffUser:
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}; choose one of {', '.join(STAFF_ROLES)}")
    if role in DEPARTMENT_ROLES and not department_code:
        raise ValueError(f"a {role} belongs to a department: give --department")
    if department_code and await session.get(Department, department_code) is None:
        raise ValueError(f"unknown department {department_code!r}")
    # Case-blind: "OFF_LIGHT" beside "off_light" would be a look-alike account (the sign-in limits
    # already count both as one name).
    taken = (await session.exec(select(StaffUser).where(func.lower(StaffUser.username) == username.lower()))).first()
    if taken is not None:
        raise ValueError(
            f"username {username!r} is taken" + (f" (as {taken.username!r})" if taken.username != username else "")
        )
    user = StaffUser(
        username=username,
        full_name=full_name,
        password_hash=hash_password(password),
        role=role,
        department_code=department_code,
    )
    session.add(user)
    await session.flush()
    return user


async def _issue(session: AsyncSession, user: StaffUser, secret_key: str, family_id: UUID) -> TokenPair:
    access, expires_in = issue_access_token(secret_key, user.id, user.role, user.department_code, family_id)
    refresh, refresh_hash = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=refresh_hash,
            expires_at=utcnow() + timedelta(days=REFRESH_TOKEN_DAYS),
        )
    )
    await session.flush()
    return TokenPair(access, expires_in, refresh)


async def sign_in(session: AsyncSession, *, username: str, password: str, secret_key: str) -> TokenPair | None:
    user = (await session.exec(select(StaffUser).where(StaffUser.username == username))).first()
    verified = await off_the_loop(verify_password, user.password_hash if user else None, password)
    if not verified or user is None or not user.active:
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = await off_the_loop(hash_password, password)
    user.last_login_at = utcnow()
    session.add(user)
    return await _issue(session, user, secret_key, family_id=uuid4())


async def refresh(session: AsyncSession, *, token: str, secret_key: str) -> TokenPair | RefreshRefused:
    """Single use: the token is spent and a new pair of the same family issued.

    Spending is one conditional UPDATE, so of many concurrent refreshes of one token exactly one
    matches the row (PostgreSQL makes the others wait for it, then re-check `revoked_at`). A spent
    token presented again was copied (or raced): every token of its family is revoked, so whoever
    holds the newest one must sign in again."""
    token_hash, now = hash_refresh_token(token), utcnow()
    spent = (
        await session.exec(
            update(RefreshToken)
            .where(
                col(RefreshToken.token_hash) == token_hash,
                col(RefreshToken.revoked_at).is_(None),
                col(RefreshToken.expires_at) > now,
            )
            .values(revoked_at=now)
            .returning(col(RefreshToken.user_id), col(RefreshToken.family_id))
            .execution_options(synchronize_session=False)
        )
    ).first()
    if spent is None:
        return await _refuse(session, token_hash, now)
    user_id, family_id = spent
    user = await session.get(StaffUser, user_id)
    if user is None or not user.active:
        return RefreshRefused.INVALID
    return await _issue(session, user, secret_key, family_id=family_id)


async def _refuse(session: AsyncSession, token_hash: str, now) -> RefreshRefused:
    row = (await session.exec(select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash))).first()
    if row is None or row.revoked_at is None:  # unknown, or expired unspent
        return RefreshRefused.INVALID
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == row.family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return RefreshRefused.REUSED
