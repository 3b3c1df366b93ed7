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
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column())
    last_used_at: datetime | None = Field(default=None, sa_column=utc_column())
