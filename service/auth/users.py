"""Staff users: creation, sign-in, refresh-token rotation, sign-out, passwords and account changes."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from uuid import UUID, uuid4

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.passwords import hash_password, needs_rehash, off_the_loop, verify_password
from service.auth.subject import DEPARTMENT_STAFF_ROLES, STAFF_ROLES
from service.auth.tokens import REFRESH_TOKEN_DAYS, hash_refresh_token, issue_access_token, new_refresh_token
from service.models import Department, RefreshToken, StaffUser
from service.models.types import utcnow
from service.tickets import service as tickets
from service.webhooks import outbox

# Who lost or changed access, and when: what a city's security team asks first after an incident.
# Names and ids only; never a password, a token or its hash.
log = logging.getLogger(__name__)


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
    username = username.strip()
    if not username:
        raise ValueError("a username cannot be empty")
    await _check_role(session, role, department_code)
    # Case-blind: "OFF_LIGHT" beside "off_light" would be a look-alike account (the sign-in limits
    # already count both as one name).
    taken = await find(session, username)
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


async def _check_role(session: AsyncSession, role: str, department_code: str | None) -> None:
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}; choose one of {', '.join(STAFF_ROLES)}")
    if role in DEPARTMENT_STAFF_ROLES and not department_code:
        raise ValueError(f"{'an' if role[0] in 'aeiou' else 'a'} {role} belongs to a department: give --department")
    if department_code and await session.get(Department, department_code) is None:
        raise ValueError(f"unknown department {department_code!r}")


async def find(session: AsyncSession, username: str) -> StaffUser | None:
    """The user of this name, whatever its case and the spaces around it: a phone's keyboard capitalises
    the first letter and adds a space after a suggested word. Names differing only in case are refused
    at creation; where two such were made before that, the one spelt exactly as given wins."""
    name = username.strip()
    found = (await session.exec(select(StaffUser).where(func.lower(StaffUser.username) == name.lower()))).all()
    return next((user for user in found if user.username == name), found[0] if found else None)


async def list_(session: AsyncSession) -> list[StaffUser]:
    return list((await session.exec(select(StaffUser).order_by(func.lower(StaffUser.username)))).all())


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
    user = await find(session, username)
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
        return await _refuse(session, token_hash)
    user_id, family_id = spent
    user = await session.get(StaffUser, user_id)
    if user is None or not user.active:
        return RefreshRefused.INVALID
    return await _issue(session, user, secret_key, family_id=family_id)


async def _refuse(session: AsyncSession, token_hash: str) -> RefreshRefused:
    row = (await session.exec(select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash))).first()
    if row is None or row.revoked_at is None:  # unknown, or expired unspent
        return RefreshRefused.INVALID
    await end_sign_ins(session, row.user_id, only=row.family_id)
    log.warning("a spent refresh token was presented again: sign-in %s of user %s revoked", row.family_id, row.user_id)
    return RefreshRefused.REUSED


async def end_sign_ins(
    session: AsyncSession, user_id: UUID, *, only: UUID | None = None, but: UUID | None = None
) -> int:
    """Revoke the user's refresh tokens: those of the sign-in `only`, or every one but `but`'s.

    An access token lives while its sign-in (family) has a token not revoked
    (service/auth/subject.py), so the sign-ins ended here end their access tokens at once too."""
    statement = update(RefreshToken).where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
    if only is not None:
        statement = statement.where(col(RefreshToken.family_id) == only)
    if but is not None:
        statement = statement.where(col(RefreshToken.family_id) != but)
    result = await session.exec(statement.values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    return result.rowcount or 0


async def change_password(
    session: AsyncSession, user_id: UUID, *, current: str, new: str, keep_sign_in: UUID | None
) -> bool:
    """The user's own change: False when `current` is wrong. Every other sign-in ends (a password
    changed because it leaked must lock out whoever used it); `keep_sign_in` stays."""
    user = await session.get(StaffUser, user_id)
    if user is None or not await off_the_loop(verify_password, user.password_hash, current):
        return False
    await _set_password(session, user, new, but=keep_sign_in)
    log.info("staff %s changed their password; their other sign-ins ended", user.username)
    return True


async def reset_password(session: AsyncSession, username: str, password: str) -> StaffUser:
    """An administrator's reset (the user forgot it, or it leaked): every sign-in of the user ends."""
    user = await existing(session, username)
    await _set_password(session, user, password, but=None)
    log.info("staff %s: password set by an administrator; every sign-in ended", user.username)
    return user


async def _set_password(session: AsyncSession, user: StaffUser, password: str, *, but: UUID | None) -> None:
    user.password_hash = await off_the_loop(hash_password, password)
    session.add(user)
    await end_sign_ins(session, user.id, but=but)
    await session.flush()


@dataclass(frozen=True)
class AccountChanged:
    user: StaffUser
    tickets_released: int  # open tickets the user held and may hold no more, given back


async def change_account(
    session: AsyncSession,
    username: str,
    *,
    role: str | None = None,
    department_code: str | None = None,
    full_name: str | None = None,
    active: bool | None = None,
) -> AccountChanged:
    """Change a user's role, department (`""` for none), name or whether they may sign in; None keeps.

    A new role or department, or a deactivation, ends every sign-in of the user: a token is never
    worth more than what its holder may do now, and reactivating an account does not bring back
    tokens issued before it was deactivated. The open tickets they may no longer hold go back to
    their departments' queues, rather than waiting on someone who is not there."""
    user = await existing(session, username)
    new_role = role if role is not None else user.role
    new_department = user.department_code if department_code is None else department_code or None
    await _check_role(session, new_role, new_department)
    access_changed = (new_role, new_department) != (user.role, user.department_code) or active is False
    before = (user.role, user.department_code, user.active)
    user.role, user.department_code = new_role, new_department
    if full_name is not None:
        user.full_name = full_name
    if active is not None:
        user.active = active
    session.add(user)
    released = 0
    if access_changed:
        await end_sign_ins(session, user.id)
        outbox.subscriptions_changed(session)  # a department's subscriptions follow its member
        released = await tickets.release_held_by(session, user)
    await session.flush()
    after = (user.role, user.department_code, user.active)
    if after != before:
        log.info(
            "staff %s changed: role, department, active %s -> %s; sign-ins ended: %s; open tickets given back: %d",
            user.username,
            before,
            after,
            access_changed,
            released,
        )
    return AccountChanged(user, released)


async def existing(session: AsyncSession, username: str) -> StaffUser:
    """`find`, or LookupError for an unknown name."""
    user = await find(session, username)
    if user is None:
        raise LookupError(f"no staff user {username!r}")
    return user
