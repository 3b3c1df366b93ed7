"""Intake and the citizen's view of reports. Functions here query and decide; they only flush."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import h3
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service import jobs, rows
from service.catalogue.attributes import Answer, check_answers, definitions_of
from service.db import SessionOnDemand, lock_rows
from service.errors import NotFound, Unprocessable
from service.jurisdictions import area as service_area
from service.lifecycle import changes as lifecycle
from service.models import ApiClient, Department, Photo, Report, ReportEvent, ServiceCategory
from service.models.types import utcnow
from service.photos.storage import PhotoStorage
from service.random_ids import uuid4
from service.reports.codes import new_tracking_code, normalise_tracking_code
from service.reports.idempotency import find_replay, fingerprint
from service.reports.schemas import ReportCreate
from service.reports.search import SEARCHED_FIELDS, search_text
from service.settings import Settings

# ~174 m hexagons: a cell and its ring cover any 50 m neighbourhood, which duplicate search relies on.
H3_RESOLUTION = 9


@dataclass(frozen=True)
class StagedPhoto:
    """A photo already written to storage, waiting for its report row to commit."""

    id: UUID
    key: str
    content_type: str
    size_bytes: int  # not hashed on arrival: see service.reports.idempotency
    gps: tuple[float, float] | None = None


@dataclass(frozen=True)
class Submission:
    report: "Report | Accepted"  # the stored report when replayed; what was just taken otherwise
    replayed: bool


def check_location(data: ReportCreate, photos: list[StagedPhoto]) -> tuple[float, float, str] | None:
    """The report's point and where it came from, or None when only an address was given (the service area
    is checked by the caller, against the imported boundaries)."""
    if data.lat is not None and data.lon is not None:
        point, source = (data.lat, data.lon), "device"
    else:
        gps = next((photo.gps for photo in photos if photo.gps), None)
        if gps is None:
            if data.address:
                return None
            raise Unprocessable("location_required", "lat")
        point, source = gps, "photo_exif"
    return point[0], point[1], source


@dataclass(frozen=True)
class Accepted:
    """What the client is told about a report just taken (the row itself is written by the intake writer)."""

    id: UUID
    tracking_code: str
    status: str
    channel: str
    created_at: datetime


@dataclass
class NewReport:
    """A report checked and built, not yet written: the intake writer inserts and commits it."""

    values: dict  # every column of its `reports` row
    photos: list[dict]  # its `photos` rows
    received: dict  # the "received" event's message and data

    @property
    def report(self) -> Accepted:
        values = self.values
        return Accepted(
            values["id"], values["tracking_code"], values["status"], values["channel"], values["created_at"]
        )


# Column defaults, so a row can be inserted as plain values: a table model's constructor sets its fifty
# fields one by one through pydantic and SQLAlchemy, which was a sixth of an intake request's CPU.
# A column whose default is computed from the row (the folded search text) is left out (prepare gives it).
REPORTS: Table = Report.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ on table models, untyped
REPORT_EVENTS: Table = ReportEvent.__table__  # type: ignore[attr-defined]
PHOTOS: Table = Photo.__table__  # type: ignore[attr-defined]
# A column that starts empty (NULL, no default of its own) and that prepare never fills is left out
# of the INSERT: the database writes the same NULL, without the driver encoding it for every row.
# The point's columns stay, so every row of a batch has the same keys with or without a point.
_POINT_COLUMNS = frozenset({"lat", "lon", "location_source", "h3_cell"})
_REPORT_DEFAULTS = {
    column.key: getattr(column.default, "arg", None)
    for column in REPORTS.columns
    if (column.default is None or column.default.is_scalar)
    and (
        column.default is not None
        or column.server_default is not None
        or not column.nullable
        or column.key in _POINT_COLUMNS
    )
}


async def prepare(
    session: SessionOnDemand,
    *,
    client: ApiClient,
    data: ReportCreate,
    photos: list[StagedPhoto],
    idempotency_key: str | None,
    settings: Settings,
    storage: PhotoStorage,
    look_up_earlier: bool = True,
    attributes: dict[str, Answer] | None = None,
    media_url: str | None = None,
) -> NewReport | Submission:
    """Check a submission and build its rows, or find the report an earlier try with the same key made.

    `look_up_earlier`: False when no earlier request is known to have carried this idempotency key, so
    no earlier report is looked up; the insert still meets the unique index when there was one.
    Answers to the category's attributes come in `data.attributes` (unknown codes refused) or, from an
    Open311 form, in `attributes` (unknown codes ignored, as the spec has it). Either way they are
    checked by the one rule of service.catalogue.attributes, required ones whenever a category is given.
    `session` is opened only for what must be read (an earlier try, the category, changed boundaries)."""
    # Only a retry can be compared with an earlier try: without a key there is nothing to fingerprint.
    extras = _extras(attributes, media_url)
    print_ = fingerprint(data, photos, extras) if idempotency_key else None
    if look_up_earlier and (
        replay := await find_replay(
            session.get(),
            storage,
            client=client,
            idempotency_key=idempotency_key,
            data=data,
            photos=photos,
            extras=extras,
            print_=print_,
        )
    ):
        return Submission(report=replay, replayed=True)

    category = await session.get().get(ServiceCategory, data.service_code) if data.service_code else None
    if data.service_code and category is None:
        raise Unprocessable("unknown_service_code", "service_code")
    answers = _answers(category, data, attributes, ZoneInfo(settings.sla_timezone))
    point = check_location(data, photos)
    cell = None
    if point:
        # The report's cell, which the service area is checked by too; a point not on earth has none.
        cell = h3.latlng_to_cell(point[0], point[1], H3_RESOLUTION) if service_area.on_earth(*point[:2]) else None
        if cell is None or not await service_area.contains(session.get, settings, point[0], point[1], cell=cell):
            raise Unprocessable("outside_service_area", "lat" if point[2] == "device" else "photos")

    now = utcnow()
    values: dict[str, Any] = {
        **_REPORT_DEFAULTS,
        # Given here rather than left to default factories: pydantic inspects a factory's signature on
        # every call, and a plain insert has no model to run them.
        "id": uuid4(),
        "created_at": now,
        "updated_at": now,
        # 31^8 codes make a clash vanishingly rare: the unique index catches one and commit_report retries
        # with a new code, instead of every report paying a lookup first.
        "tracking_code": new_tracking_code(),
        "title": data.title,
        "description": data.description,
        "requested_service_code": data.service_code,
        "channel": data.channel,
        "is_public": data.is_public,
        "address": data.address,
        "reporter_name": data.reporter_name,
        "reporter_phone": data.reporter_phone,
        "reporter_email": data.reporter_email,
        "api_client_id": client.id,
        "idempotency_key": idempotency_key,
        "request_fingerprint": print_,
        "attributes": answers or None,
    }
    # The column's default would compute it in the writer, once per row through the statement's context.
    values["search_text"] = search_text(*(values[field] for field in SEARCHED_FIELDS))
    if point:
        values["lat"], values["lon"], values["location_source"] = point
        values["h3_cell"] = cell
    photo_rows = [  # plain rows, as the report's: a table model per photo costs more than its insert
        {
            "id": staged.id,
            "report_id": values["id"],
            "position": position,
            "kind": "report",
            "original_key": staged.key,
            "content_type": staged.content_type,
            "size_bytes": staged.size_bytes,
            "created_at": now,
        }
        for position, staged in enumerate(photos)
    ]
    received = {
        "message": None,  # the timeline says it in the reader's language (service.lifecycle.events)
        "data": {
            "channel": data.channel,
            "photos": len(photos),
            "location_source": values["location_source"],
            **({"media_url": media_url} if media_url else {}),
        },
    }
    return NewReport(values=values, photos=photo_rows, received=received)


def _answers(
    category: ServiceCategory | None, data: ReportCreate, form_answers: dict[str, Answer] | None, zone: ZoneInfo
) -> dict[str, object] | None:
    if category is None:
        if data.attributes:
            raise Unprocessable("validation_error", "attributes", "attributes answer a category: give service_code.")
        return None
    if form_answers is not None:
        return check_answers(definitions_of(category), form_answers, zone=zone, unknown="ignore")
    return check_answers(definitions_of(category), data.attributes or {}, zone=zone, unknown="refuse")


@dataclass(frozen=True)
class EventRow:
    """A timeline event inserted as a plain row; it reads like a ReportEvent to the outbox."""

    report_id: UUID
    type: str
    message: str | None
    data: dict
    created_at: datetime
    public: bool = True
    actor: str = "system"


async def add_new(session: AsyncSession, reports: list[NewReport]) -> None:
    """Insert new reports, their photos and their "received" events, the events' webhook rows, and
    note their processing jobs for the hand-off after the commit.

    Reports, their photos and events go in as plain rows, one statement each for the whole batch: built as table
    models they cost a fifth of an intake request's CPU (bench/RESULTS.md)."""
    # Plain inserts of the tables: the ORM's bulk path would only map the same dictionaries again.
    await rows.insert(session, REPORTS, [new.values for new in reports])  # photos and events point at them
    events = [
        EventRow(new.values["id"], "received", new.received["message"], new.received["data"], new.values["created_at"])
        for new in reports
    ]
    await rows.insert(session, REPORT_EVENTS, [vars(event) for event in events])
    await rows.insert(session, PHOTOS, [row for new in reports for row in new.photos])
    jobs.report_jobs(session, [new.values["id"] for new in reports])
    await lifecycle.received(session, [(new.values, event) for new, event in zip(reports, events, strict=True)])
    await session.flush()


def _extras(attributes: dict | None, media_url: str | None) -> dict:
    return {key: value for key, value in (("attributes", attributes), ("media_url", media_url)) if value is not None}


async def replay_after_race(
    session: AsyncSession,
    storage: PhotoStorage,
    *,
    client: ApiClient,
    idempotency_key: str,
    data: ReportCreate,
    photos: list[StagedPhoto],
    attributes: dict[str, Answer] | None = None,
    media_url: str | None = None,
) -> Report | None:
    """Two retries raced and the other one won the unique index: answer with its report."""
    return await find_replay(
        session,
        storage,
        client=client,
        idempotency_key=idempotency_key,
        data=data,
        photos=photos,
        extras=_extras(attributes, media_url),
    )


def is_tracking_code_clash(exc: IntegrityError) -> bool:
    return "tracking_code" in str(exc.orig).lower()


async def get_by_tracking_code(session: AsyncSession, tracking_code: str, *, for_update: bool = False) -> Report:
    code = normalise_tracking_code(tracking_code)
    report = None
    if code:
        statement = select(Report).where(Report.tracking_code == code)
        if for_update:
            await lock_rows(session, col(Report.revision), Report.tracking_code == code)
            statement = statement.with_for_update().execution_options(populate_existing=True)
        report = (await session.exec(statement)).first()
    if report is None:
        raise NotFound("report_not_found")
    return report


def shows_details(*, is_public: bool, citizen: bool) -> bool:
    """Whether a reader who holds only the tracking code sees what the citizen wrote and where.

    A report its citizen did not make public (`is_public` false) shows its progress only (status,
    category, department, dates, the city's own timeline words) unless the reader proved to be that
    citizen (`citizen`: the citizen token checked). Withheld: title, description, location, address,
    photos, attribute answers and every message a person wrote. /v1/reports and Open311 both follow it."""
    return is_public or citizen


async def public_view(session: AsyncSession, report: Report) -> dict:
    """Everything the citizen may see of a report, as plain data for ReportPublic."""
    category = await session.get(ServiceCategory, report.service_code) if report.service_code else None
    department = await session.get(Department, report.department_code) if report.department_code else None
    original = await session.get(Report, report.duplicate_of_id) if report.duplicate_of_id else None
    original_department = (
        await session.get(Department, original.department_code) if original and original.department_code else None
    )
    photos = (
        await session.exec(
            select(Photo)
            .where(Photo.report_id == report.id, col(Photo.rejected_reason).is_(None))
            .order_by(col(Photo.position))
        )
    ).all()
    events = (
        await session.exec(
            select(ReportEvent)
            .where(ReportEvent.report_id == report.id, col(ReportEvent.public).is_(True))
            .order_by(col(ReportEvent.id))
        )
    ).all()
    return {
        "report": report,
        "category": category,
        "department": department,
        "original": original,
        "original_department": original_department,
        "photos": list(photos),
        "events": list(events),
    }


def is_unique_violation(exc: IntegrityError) -> bool:
    return "idempotency" in str(exc.orig).lower() or "unique" in str(exc.orig).lower()
