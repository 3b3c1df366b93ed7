"""The IOC's daily rollup of reports, and the indexes its live queries need on the reports table.

The rollup holds, per city-local day of intake and (category, ward, department), how many of that
day's reports are in each status now, the SLA, transfer and rating sums, and their response times. It is a cache of the
reports table: `service.ioc.rollup` rebuilds it, and refreshes the days whose reports changed
(by `updated_at`) every few seconds, so it can always be dropped and rebuilt.
"""

from datetime import date, datetime

from sqlalchemy import Column, Date, Index, LargeBinary, PrimaryKeyConstraint
from sqlmodel import Field, SQLModel

from service.models.report import OPEN_STATUSES, Report
from service.models.types import utc_column

ROLLUP_STATUSES = (
    "received",
    "needs_triage",
    "assigned",
    "in_progress",
    "on_hold",
    "reopened",
    "resolved",
    "closed",
    "rejected",
    "duplicate",
)


class IocDailyRollup(SQLModel, table=True):
    __tablename__ = "ioc_daily_rollup"
    __table_args__ = (
        PrimaryKeyConstraint("day", "service_code", "jurisdiction_code", "department_code", name="pk_ioc_daily_rollup"),
    )

    day: date = Field(sa_column=Column(Date, nullable=False))
    # "" stands for none (not classified, not placed, not routed): key columns cannot be NULL.
    service_code: str = Field(max_length=64)
    jurisdiction_code: str = Field(max_length=64)
    department_code: str = Field(max_length=64)
    received: int = 0
    status_received: int = 0
    status_needs_triage: int = 0
    status_assigned: int = 0
    status_in_progress: int = 0
    status_on_hold: int = 0
    status_reopened: int = 0
    status_resolved: int = 0
    status_closed: int = 0
    status_rejected: int = 0
    status_duplicate: int = 0
    # Resolved or closed with a resolved_at; of those with a due time, how many and how many on time.
    resolved_total: int = 0
    resolved_with_due: int = 0
    resolved_on_time: int = 0
    transfers: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    # Of those whose acknowledgement is known (acknowledged, or marked not acknowledged in time, both
    # against an acknowledge_due_at): how many, and how many were acknowledged by that deadline.
    acknowledge_measured: int = 0
    acknowledged_on_time: int = 0
    # Exact seconds from intake to acknowledgement / to resolution of each of these reports, as packed
    # little-endian float64: percentiles over many days then need no sort in the database.
    acknowledge_seconds: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    resolve_seconds: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class IocRollupState(SQLModel, table=True):
    """How far the rollup has followed the reports table."""

    __tablename__ = "ioc_rollup_state"

    name: str = Field(primary_key=True, max_length=32)
    # Reports updated before this instant (less an overlap) are in the rollup.
    watermark: datetime = Field(sa_column=utc_column(nullable=False))
    # The last rebuild, or daily pass over recent days (see service.ioc.rollup).
    rebuilt_at: datetime = Field(sa_column=utc_column(nullable=False))


_reports = Report.__table__  # type: ignore[attr-defined]
_open = _reports.c.status.in_(OPEN_STATUSES)

# Which reports changed since the rollup's watermark.
Index("ix_reports_updated_at", _reports.c.updated_at)
# The open backlog: few rows of a large table, read whole by every summary (index-only on PostgreSQL).
Index(
    "ix_reports_open_created",
    _reports.c.created_at,
    postgresql_include=["status", "service_code", "jurisdiction_code", "department_code", "due_at"],
    postgresql_where=_open,
    sqlite_where=_open,
)
# Response-time percentiles over a window, index-only on PostgreSQL.
Index(
    "ix_reports_created_durations",
    _reports.c.created_at,
    postgresql_include=[
        "status",
        "acknowledged_at",
        "resolved_at",
        "service_code",
        "jurisdiction_code",
        "department_code",
    ],
)
# Reports resolved per hour or day (the time series).
Index("ix_reports_resolved_at", _reports.c.resolved_at)
