"""What the Intelligent Operations Center (IOC) endpoints answer.

Two kinds of figure live side by side, and every field says which it is:
- flow figures count the reports *received in the window* (`from`/`to`, on `created_at`);
- stock figures (`backlog`, and `open`/`overdue` in the breakdowns) describe the open work *now*,
  whatever the window, because a backlog older than the window is exactly what an IOC must see.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Metric = Literal["received", "resolved", "overdue"]
Bucket = Literal["hour", "day"]


@dataclass(frozen=True)
class IocFilters:
    """The parsed query: a half-open window [start, end) on created_at, and optional scopes."""

    start: datetime
    end: datetime
    department: str | None = None
    # A ward code, or a district code expanded to the district and its wards.
    jurisdictions: tuple[str, ...] | None = None
    category: str | None = None


class Window(BaseModel):
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime

    model_config = {"populate_by_name": True}


class AppliedFilters(BaseModel):
    department: str | None = None
    jurisdiction: str | None = None
    category: str | None = None


class StatusCounts(BaseModel):
    """Reports received in the window, by their status now."""

    received: int = Field(description="All reports received in the window")
    awaiting_processing: int = Field(description="Still `received`: not yet classified and routed")
    needs_triage: int
    assigned: int
    in_progress: int
    on_hold: int
    reopened: int
    resolved: int
    closed: int
    rejected: int
    duplicate: int
    overdue: int = Field(description="Received in the window, open now and past their due time (on_hold excluded)")


class AgeBucket(BaseModel):
    label: str
    min_days: float
    max_days: float | None
    count: int


class Backlog(BaseModel):
    """All open reports now, whatever the window (department/jurisdiction/category filters apply)."""

    open: int
    overdue: int
    by_age: list[AgeBucket]


class SlaCompliance(BaseModel):
    """Of the reports received in the window whose outcome is known: resolved by their due time.

    Known means resolved (or closed), or still open and already past due (a sure breach).
    """

    compliance_pct: float | None
    on_time: int
    late: int
    measured: int


class AcknowledgementCompliance(BaseModel):
    """Of the reports received in the window whose acknowledgement is known: taken into work (moved to
    in_progress, or resolved) by their `acknowledge_due_at`.

    Known means acknowledged, or marked by the SLA sweep as not acknowledged in time (`report.ack_overdue`).
    """

    compliance_pct: float | None
    on_time: int
    late: int
    measured: int


class DurationStats(BaseModel):
    count: int
    median_seconds: float | None
    p90_seconds: float | None


class Breakdown(BaseModel):
    code: str | None
    name: str | None = None
    received: int = Field(description="Received in the window")
    resolved: int = Field(description="Received in the window and resolved or closed now")
    open: int = Field(description="Open now, whatever the window")
    overdue: int = Field(description="Open now and past due, whatever the window")


class DepartmentScore(Breakdown):
    on_time_pct: float | None = Field(description="SLA compliance of the window's reports, as in `sla`")
    transfers: int = Field(description="Sum of transfer_count over the window's reports")
    average_rating: float | None = Field(description="Mean citizen_rating (1–5) of the window's rated reports")
    ratings: int
    acknowledge_on_time_pct: float | None = Field(
        description="Acknowledgement compliance of the window's reports, as in `acknowledgement`"
    )
    acknowledged_on_time: int = Field(description="Acknowledged by their acknowledge_due_at")
    acknowledge_measured: int = Field(description="Whose acknowledgement is known, as in `acknowledgement`")


class Summary(BaseModel):
    window: Window
    filters: AppliedFilters
    generated_at: datetime
    counts: StatusCounts
    backlog: Backlog
    sla: SlaCompliance
    acknowledgement: AcknowledgementCompliance
    time_to_acknowledge: DurationStats
    time_to_resolve: DurationStats
    duplicate_share_pct: float | None = Field(description="Duplicates among the reports received in the window")
    by_category: list[Breakdown]
    by_jurisdiction: list[Breakdown]
    departments: list[DepartmentScore]


class TimePoint(BaseModel):
    start: datetime
    count: int


class TimeSeries(BaseModel):
    metric: Metric
    bucket: Bucket
    timezone: str = Field(description="Day buckets are days in this timezone")
    window: Window
    filters: AppliedFilters
    points: list[TimePoint]


class CategoryCount(BaseModel):
    code: str | None
    count: int


class HotspotProperties(BaseModel):
    cell: str
    resolution: int
    count: int
    top_categories: list[CategoryCount]


class HotspotGeometry(BaseModel):
    type: Literal["Polygon"] = "Polygon"
    coordinates: list[list[tuple[float, float]]]


class HotspotFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: HotspotGeometry
    properties: HotspotProperties


class Hotspots(BaseModel):
    """A GeoJSON FeatureCollection of H3 hexagons (lon/lat), densest first."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    resolution: int
    window: Window
    filters: AppliedFilters
    total_reports: int
    features: list[HotspotFeature]
