"""Open311 reads over the reports and the catalogue: queries only, the shapes are in schemas.py.

What may be listed is the reports' own rule: only public reports (is_public) appear in GET requests;
a single report is readable by its tracking code, as at /v1/reports/{tracking_code} without the
citizen token: a report its citizen kept private shows its progress only (reports.shows_details).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.catalogue import service as catalogue
from service.errors import NotFound, Unprocessable
from service.lifecycle.events import EventCode, render
from service.models import CatalogueVersion, Department, Photo, Report, ReportEvent, ServiceCategory
from service.models.report import OPEN_STATUSES, REPORT_STATUSES
from service.reports import service as reports
from service.reports.codes import normalise_tracking_code

# One city, one jurisdiction; clients may send it or leave it out (the spec allows both).
JURISDICTION_ID = "hochiminhcity.gov.vn"
# A request whose category is not decided yet (not processed, or waiting for a dispatcher's triage)
# shows as the catalogue's catch-all service, so every request has a service_code and a service_name.
TRIAGE_SERVICE_CODE = "other"

DEFAULT_WINDOW = timedelta(days=90)
STATUS_GROUPS = {
    "open": OPEN_STATUSES,
    "closed": tuple(status for status in REPORT_STATUSES if status not in OPEN_STATUSES),
}


def check_jurisdiction(jurisdiction_id: str | None) -> None:
    if jurisdiction_id and jurisdiction_id.strip().lower() != JURISDICTION_ID:
        raise NotFound(
            "jurisdiction_not_found",
            f"jurisdiction_id '{jurisdiction_id}' was not found; this endpoint serves {JURISDICTION_ID}.",
        )


async def list_services(session: AsyncSession) -> list[ServiceCategory]:
    return await catalogue.list_categories(session)


async def get_service(session: AsyncSession, service_code: str) -> ServiceCategory:
    category = await session.get(ServiceCategory, service_code)
    if category is None or not category.active:
        raise NotFound("service_not_found", f"service_code '{service_code}' was not found.")
    return category


async def catalogue_changed_at(session: AsyncSession) -> datetime | None:
    return (
        await session.exec(select(CatalogueVersion.loaded_at).where(col(CatalogueVersion.is_current).is_(True)))
    ).first()


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def request_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The spec's default: the most recent 90 days; a given range may not span more than 90 days."""
    start, end = _utc(start), _utc(end)
    if start is None:
        return (now - DEFAULT_WINDOW, now) if end is None else (end - DEFAULT_WINDOW, end)
    if end is None:
        return start, start + DEFAULT_WINDOW
    if end < start:
        raise Unprocessable("validation_error", "end_date", "end_date must be later than start_date.")
    if end - start > DEFAULT_WINDOW:
        raise Unprocessable("validation_error", "end_date", "start_date to end_date may not span more than 90 days.")
    return start, end


async def list_public_requests(
    session: AsyncSession,
    *,
    tracking_codes: list[str] | None = None,
    service_codes: list[str] | None = None,
    statuses: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    offset: int = 0,
    limit: int = 1000,
) -> list[Report]:
    """Newest first. Tracking codes, when given, override every other filter (as the spec says)."""
    query = select(Report).where(col(Report.is_public).is_(True))
    if tracking_codes is not None:
        codes = [code for code in (normalise_tracking_code(raw) for raw in tracking_codes) if code]
        query = query.where(col(Report.tracking_code).in_(codes))
    else:
        if service_codes:
            undecided = and_(col(Report.service_code).is_(None), col(Report.requested_service_code).is_(None))
            query = query.where(
                or_(
                    col(Report.service_code).in_(service_codes),
                    and_(col(Report.service_code).is_(None), col(Report.requested_service_code).in_(service_codes)),
                    *([undecided] if TRIAGE_SERVICE_CODE in service_codes else []),
                )
            )
        if statuses:
            query = query.where(col(Report.status).in_([s for group in statuses for s in STATUS_GROUPS[group]]))
        if start is not None:
            query = query.where(Report.created_at >= start)
        if end is not None:
            query = query.where(Report.created_at <= end)
    query = query.order_by(col(Report.created_at).desc(), col(Report.id)).offset(offset).limit(limit)
    return list((await session.exec(query)).all())


async def get_request(session: AsyncSession, service_request_id: str) -> Report:
    """By tracking code, forgiving case and a missing dash, like the citizen's own view."""
    return await reports.get_by_tracking_code(session, service_request_id)


async def get_by_token(session: AsyncSession, token: str) -> Report:
    try:
        report = await session.get(Report, UUID(token))
    except ValueError:
        report = None
    if report is None:
        raise NotFound("token_not_found", f"token '{token}' was not found.")
    return report


def service_code_of(report: Report) -> str:
    """The category decided, else the citizen's choice, else the triage service."""
    return report.service_code or report.requested_service_code or TRIAGE_SERVICE_CODE


@dataclass
class RequestContext:
    """A report and what its Open311 view needs from other tables."""

    report: Report
    category: ServiceCategory | None = None
    department: Department | None = None
    status_notes: str | None = None
    photos: list[Photo] = field(default_factory=list)
    original_tracking_code: str | None = None
    # What the citizen wrote and where (text, location, address, photos, answers) is left out.
    details_withheld: bool = False


async def contexts(session: AsyncSession, reports_: list[Report], *, vietnamese: bool = True) -> list[RequestContext]:
    """Everything for a page of reports in a handful of queries, whatever the page size."""
    if not reports_:
        return []
    ids = [report.id for report in reports_]
    # Open311 has no citizen token: what a report kept private withholds, it withholds from everyone here.
    withheld = {
        report.id for report in reports_ if not reports.shows_details(is_public=report.is_public, citizen=False)
    }
    shown = [id_ for id_ in ids if id_ not in withheld]
    categories = {row.code: row for row in (await session.exec(select(ServiceCategory))).all()}
    departments = {row.code: row for row in (await session.exec(select(Department))).all()}
    photos: dict[UUID, list[Photo]] = {}
    for photo in (
        await session.exec(
            select(Photo)
            .where(
                col(Photo.report_id).in_(shown),
                col(Photo.rejected_reason).is_(None),
                col(Photo.public_key).is_not(None),
                Photo.kind != "private",
            )
            .order_by(col(Photo.position), col(Photo.created_at))
        )
    ).all():
        photos.setdefault(photo.report_id, []).append(photo)
    notes = await _status_notes(session, ids, vietnamese, withheld)
    original_ids = {report.duplicate_of_id for report in reports_ if report.duplicate_of_id}
    originals = (
        dict(
            (await session.exec(select(Report.id, Report.tracking_code).where(col(Report.id).in_(original_ids)))).all()
        )
        if original_ids
        else {}
    )
    return [
        RequestContext(
            report=report,
            category=categories.get(service_code_of(report)),
            department=departments.get(report.department_code or ""),
            status_notes=notes.get(report.id),
            photos=photos.get(report.id, []),
            original_tracking_code=originals.get(report.duplicate_of_id) if report.duplicate_of_id else None,
            details_withheld=report.id in withheld,
        )
        for report in reports_
    ]


async def _status_notes(
    session: AsyncSession, ids: list[UUID], vietnamese: bool, withheld: set[UUID]
) -> dict[UUID, str]:
    """The latest public reply to the citizen, else the latest public event's message, in the reader's
    language; of a report in `withheld`, only the city's own words (nothing a person wrote)."""
    latest_reply: dict[UUID, str] = {}
    latest_any: dict[UUID, str] = {}
    events = await session.exec(
        select(ReportEvent.report_id, ReportEvent.type, ReportEvent.message, ReportEvent.data)
        .where(col(ReportEvent.report_id).in_(ids), col(ReportEvent.public).is_(True))
        .order_by(col(ReportEvent.id))
    )
    for report_id, code, written, data in events.all():
        message = render(code, data or {}, None if report_id in withheld else written, vietnamese=vietnamese)
        if not message:
            continue
        latest_any[report_id] = message
        if code == EventCode.PUBLIC_REPLY:
            latest_reply[report_id] = message
    return {**latest_any, **latest_reply}
