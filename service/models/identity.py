"""Who calls the API: app and department-system API keys (staff users come with the staff API)."""

from datetime import datetime
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from service.models.types import utc_column, utcnow


class ApiClient(SQLModel, table=True):
    __tablename__ = "api_clients"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=200)
    # The visible part of the key (`ik_<prefix>_...`), used to find the row; the rest is only hashed.
    key_prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=128)
    role: str = Field(default="citizen_app", max_length=32)
    department_code: str | None = Field(default=None, foreign_key="departments.code", max_length=64)
    # The key's own intake limit ("1000/minute"); None: RATE_LIMIT_INTAKE_PER_KEY. One app key serves
    # every citizen using that app, so it is sized to the app, not to a person.
    rate_limit: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column())
    last_used_at: datetime | None = Field(default=None, sa_column=utc_column())


class StaffUser(SQLModel, table=True):
    """A department officer, dispatcher, supervisor, IOC viewer or admin who signs in with a password."""

    __tablename__ = "staff_users"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    full_name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=32)
    department_code: str | None = Field(default=None, foreign_key="departments.code", max_length=64)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    last_login_at: datetime | None = Field(default=None, sa_column=utc_column())


class RefreshToken(SQLModel, table=True):
    """Long-lived, single-use: each refresh rotates it; stored only as a hash.

    The tokens rotated from one sign-in form a family: a spent token presented again means it was
    copied, so the whole family is revoked (service/auth/users.py)."""

    __tablename__ = "refresh_tokens"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID = Field(foreign_key="staff_users.id", index=True)
    family_id: UUID = Field(index=True)
    token_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime = Field(sa_column=utc_column(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
