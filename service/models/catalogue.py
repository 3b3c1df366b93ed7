"""The catalogue: categories, departments, jurisdictions, routing rules and SLA policies (loaded from a file)."""

from datetime import datetime

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from service.models.types import utc_column, utcnow


class CatalogueVersion(SQLModel, table=True):
    __tablename__ = "catalogue_versions"

    version: str = Field(primary_key=True, max_length=64)
    checksum: str = Field(max_length=64)
    source: str = Field(max_length=500)
    loaded_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    is_current: bool = Field(default=False, index=True)


class Department(SQLModel, table=True):
    __tablename__ = "departments"

    code: str = Field(primary_key=True, max_length=64)
    name_vi: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    # The supervising unit that overdue work escalates to.
    parent_code: str | None = Field(default=None, foreign_key="departments.code", max_length=64)
    is_dispatch: bool = Field(default=False)
    active: bool = Field(default=True)


class ServiceCategory(SQLModel, table=True):
    __tablename__ = "service_categories"

    code: str = Field(primary_key=True, max_length=64)
    name_vi: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    description_vi: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    description_en: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    default_priority: str = Field(default="normal", max_length=16)
    sort_order: int = Field(default=0)
    active: bool = Field(default=True)
    # Extra questions a citizen answers for this category (the Open311 service definition):
    # a list of AttributeEntry dicts, see service/catalogue/schemas.py. None or [] means none.
    attributes: list[dict] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Jurisdiction(SQLModel, table=True):
    __tablename__ = "jurisdictions"

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    level: str = Field(max_length=32)
    parent_code: str | None = Field(default=None, max_length=64, index=True)
    # WKT in lon/lat; the spatial index is built in memory (STRtree) from these. None for a parent
    # known only because its children name it (`--parent-field`), until its own boundary is imported.
    geometry_wkt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    imported_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class RoutingRule(SQLModel, table=True):
    __tablename__ = "routing_rules"

    id: int | None = Field(default=None, primary_key=True)
    # None matches any category / any jurisdiction; the most specific rule wins.
    category_code: str | None = Field(default=None, max_length=64, index=True)
    jurisdiction_code: str | None = Field(default=None, max_length=64)
    department_code: str = Field(foreign_key="departments.code", max_length=64)
    catalogue_version: str = Field(max_length=64)


class SlaPolicyRow(SQLModel, table=True):
    __tablename__ = "sla_policies"

    id: int | None = Field(default=None, primary_key=True)
    category_code: str | None = Field(default=None, max_length=64)
    priority: str = Field(max_length=16)
    acknowledge_hours: float
    resolve_hours: float
    clock: str = Field(default="working", max_length=16)
    restart_on_transfer: bool = Field(default=False)
    catalogue_version: str = Field(max_length=64)
    extra: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
