"""A citizen's report, its photos and its timeline of events."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, and_
from sqlmodel import Field, SQLModel

from service.lifecycle.states import OPEN_STATUSES as _OPEN
from service.lifecycle.states import Status
from service.models.types import utc_column, utcnow
from service.privacy import EncryptedString
from service.reports import search

# Defined once, in the lifecycle's rules.
REPORT_STATUSES: tuple[str, ...] = tuple(str(status) for status in Status)
OPEN_STATUSES: tuple[str, ...] = tuple(str(status) for status in _OPEN)
CHANNELS = ("app", "web", "hotline", "zalo", "email", "open311")


class Report(SQLModel, table=True):
    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("api_client_id", "idempotency_key", name="uq_reports_client_idempotency"),
        Index("ix_reports_status_created", "status", "created_at"),
        Index("ix_reports_cell_category", "h3_cell", "service_code", "created_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tracking_code: str = Field(max_length=16, unique=True)
    title: str | None = Field(default=None, max_length=200)
    description: str = Field(sa_column=Column(Text, nullable=False))
    # What the citizen chose, and what the service decided (after classification or triage).
    requested_service_code: str | None = Field(default=None, max_length=64)
    service_code: str | None = Field(default=None, max_length=64, index=True)
    classification_confidence: float | None = None
    priority: str = Field(default="normal", max_length=16)
    status: str = Field(default="received", max_length=16)
    channel: str = Field(default="app", max_length=16)
    is_public: bool = Field(default=True)

    lat: float | None = None
    lon: float | None = None
    location_source: str | None = Field(default=None, max_length=16)  # device, photo_exif, address
    h3_cell: str | None = Field(default=None, max_length=16)
    address: str | None = Field(default=None, max_length=500)
    # Title, description and address folded for search without diacritics (service/reports/search.py),
    # computed from the row by every INSERT that does not give it.
    search_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True, default=search.on_insert))
    jurisdiction_code: str | None = Field(default=None, max_length=64, index=True)
    department_code: str | None = Field(default=None, max_length=64, index=True)

    # Personal data: encrypted at rest (service/privacy.py), erased after retention, never public.
    reporter_name: str | None = Field(default=None, sa_column=Column(EncryptedString(), nullable=True))
    reporter_phone: str | None = Field(default=None, sa_column=Column(EncryptedString(), nullable=True))
    reporter_email: str | None = Field(default=None, sa_column=Column(EncryptedString(), nullable=True))

    api_client_id: UUID | None = Field(default=None, foreign_key="api_clients.id")
    idempotency_key: str | None = Field(default=None, max_length=200)
    request_fingerprint: str | None = Field(default=None, max_length=64)

    duplicate_of_id: UUID | None = Field(default=None, foreign_key="reports.id")
    supporter_count: int = Field(default=0)

    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False, index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))
    processed_at: datetime | None = Field(default=None, sa_column=utc_column())
    acknowledge_due_at: datetime | None = Field(default=None, sa_column=utc_column())
    due_at: datetime | None = Field(default=None, sa_column=utc_column(index=True))
    acknowledged_at: datetime | None = Field(default=None, sa_column=utc_column())
    # When the SLA sweep found it still not acknowledged past acknowledge_due_at (once per clock).
    acknowledge_overdue_at: datetime | None = Field(default=None, sa_column=utc_column())
    # The deadline each near-deadline notice was last sent for: one notice per deadline, a moved one gets its own.
    acknowledge_due_soon_sent_for: datetime | None = Field(default=None, sa_column=utc_column())
    due_soon_sent_for: datetime | None = Field(default=None, sa_column=utc_column())
    resolved_at: datetime | None = Field(default=None, sa_column=utc_column())
    closed_at: datetime | None = Field(default=None, sa_column=utc_column())
    sla_state: str | None = Field(default=None, max_length=16)  # on_track, at_risk, overdue
    # The SLA clock: when it (re)started, on which clock, when the at-risk point falls, pauses.
    sla_clock: str | None = Field(default=None, max_length=16)
    sla_started_at: datetime | None = Field(default=None, sa_column=utc_column())
    at_risk_at: datetime | None = Field(default=None, sa_column=utc_column(index=True))
    on_hold_since: datetime | None = Field(default=None, sa_column=utc_column())
    escalated_at: datetime | None = Field(default=None, sa_column=utc_column())
    escalated_to_department_code: str | None = Field(default=None, max_length=64)
    transfer_count: int = Field(default=0)
    category_source: str | None = Field(default=None, max_length=16)  # citizen, classifier, staff
    # Staff workflow and the citizen's answer.
    assignee_id: UUID | None = Field(default=None, foreign_key="staff_users.id")
    rejection_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reopened_count: int = Field(default=0)
    citizen_rating: int | None = None
    citizen_feedback: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rated_at: datetime | None = Field(default=None, sa_column=utc_column())
    # Failed processing attempts (outages aside); at PROCESSING_MAX_FAILURES a dispatcher takes over.
    processing_failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Bumped by every change a reader of the ticket would see (service.lifecycle): the ticket's ETag.
    revision: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # Answers to the category's attributes (code -> value, or list of keys for a multivaluelist).
    attributes: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))


_reports = Report.__table__  # type: ignore[attr-defined]
# Tickets still waiting to be acknowledged and not yet marked: the acknowledgement sweep reads only
# these, by status and deadline; a ticket leaves the index once acknowledged or marked.
ACKNOWLEDGE_PENDING = and_(_reports.c.acknowledged_at.is_(None), _reports.c.acknowledge_overdue_at.is_(None))
Index(
    "ix_reports_acknowledge_pending",
    _reports.c.status,
    _reports.c.acknowledge_due_at,
    postgresql_where=ACKNOWLEDGE_PENDING,
    sqlite_where=ACKNOWLEDGE_PENDING,
)

# Search is an infix LIKE on the folded text: a trigram index serves it on PostgreSQL (pg_trgm). SQLite
# gets a plain index of the same name, which such a LIKE cannot use: it scans, as it did before.
# The trigram index leaves out reports still `received`: indexing a report's hundred-odd trigrams was a
# fifth of PostgreSQL's work per intake INSERT, while the pipeline's UPDATE moments later writes a new
# version of the row into every index anyway. Search finds the few reports waiting through the status
# index instead (service.tickets.service).
SEARCH_INDEXED = _reports.c.status != "received"
Index(
    "ix_reports_search_text_trigram",
    _reports.c.search_text,
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
    postgresql_where=SEARCH_INDEXED,
)


class Photo(SQLModel, table=True):
    __tablename__ = "photos"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    report_id: UUID = Field(foreign_key="reports.id", index=True)
    position: int = 0
    kind: str = Field(default="report", max_length=16)  # report, after (resolution), citizen_reply
    # The original upload, kept private: it may carry EXIF GPS and device data.
    original_key: str = Field(max_length=300)
    # The re-encoded copy without metadata and its thumbnail: the only bytes ever served.
    public_key: str | None = Field(default=None, max_length=300)
    thumbnail_key: str | None = Field(default=None, max_length=300)
    content_type: str = Field(max_length=32)
    size_bytes: int
    # The original's SHA-256, recorded by the photo worker as it reads the original (None until then):
    # uploads are not hashed while they arrive.
    sha256: str | None = Field(default=None, max_length=64)
    width: int | None = None
    height: int | None = None
    processed_at: datetime | None = Field(default=None, sa_column=utc_column())
    rejected_reason: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class ReportEvent(SQLModel, table=True):
    """The timeline and audit trail: one row per thing that happened to a report."""

    __tablename__ = "report_events"
    __table_args__ = (Index("ix_report_events_report_created", "report_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: UUID = Field(foreign_key="reports.id")
    type: str = Field(max_length=48)
    actor: str = Field(default="system", max_length=100)
    public: bool = Field(default=True)
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class ReportRow:
    """A report as a batch of the pipeline reads it: the columns it reads and writes as a plain object,
    none of the personal ones (their decryption is most of what loading a whole report costs). It reads
    like a `Report` to the lifecycle and the outbox; `lifecycle.changes.Batch` writes the `WRITTEN`
    columns back with one statement for the batch, no unit of work involved."""

    id: UUID
    tracking_code: str
    title: str | None
    description: str
    requested_service_code: str | None
    service_code: str | None
    classification_confidence: float | None
    category_source: str | None
    priority: str
    status: str
    lat: float | None
    lon: float | None
    location_source: str | None
    h3_cell: str | None
    jurisdiction_code: str | None
    department_code: str | None
    assignee_id: UUID | None
    api_client_id: UUID | None
    duplicate_of_id: UUID | None
    supporter_count: int
    processing_failures: int
    revision: int
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    sla_started_at: datetime | None
    sla_clock: str | None
    sla_state: str | None
    acknowledge_due_at: datetime | None
    due_at: datetime | None
    at_risk_at: datetime | None
    acknowledge_overdue_at: datetime | None
    on_hold_since: datetime | None

    # Read and never written back: what the citizen sent, and the counters others change.
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "id",
        "tracking_code",
        "title",
        "description",
        "requested_service_code",
        "api_client_id",
        "supporter_count",
        "processing_failures",
        "created_at",
    )
    WRITTEN: ClassVar[tuple[str, ...]] = (
        "service_code",
        "classification_confidence",
        "category_source",
        "priority",
        "status",
        "lat",
        "lon",
        "location_source",
        "h3_cell",
        "jurisdiction_code",
        "department_code",
        "assignee_id",
        "duplicate_of_id",
        "revision",
        "updated_at",
        "processed_at",
        "sla_started_at",
        "sla_clock",
        "sla_state",
        "acknowledge_due_at",
        "due_at",
        "at_risk_at",
        "acknowledge_overdue_at",
        "on_hold_since",
    )
    COLUMNS: ClassVar[tuple[str, ...]] = READ_ONLY + WRITTEN
    __slots__ = COLUMNS

    def __init__(self, values: Mapping[Any, Any]):
        for name in self.COLUMNS:
            setattr(self, name, values[name])

    @classmethod
    def columns(cls) -> list[Any]:
        return [_reports.c[name] for name in cls.COLUMNS]

    def written(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.WRITTEN}
