"""Rows inserted as plain values (service.rows) are stored exactly as SQLAlchemy's own insert stores them.

Two copies of the same report (with its photo and its "received" event) go in, one through
`session.execute(insert(table), rows)` and one through `rows.insert`; every column reads back the same,
raw, except the ids that tell them apart and the encrypted contact columns (randomised ciphertext),
which decrypt to the same values.
"""

import copy
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Table, insert, select, text

from service import rows
from service.db import SessionOnDemand
from service.models import ApiClient, Report
from service.reports import service
from service.reports.schemas import ReportCreate
from tests.conftest import in_app
from tests.factories import report_body

ENCRYPTED = {"reporter_name", "reporter_phone", "reporter_email"}


def raw_rows(client, table: Table, where: str, ids: list) -> list[dict]:
    """The stored values as the database gives them back to a plain query (no type processing)."""

    async def read(session):
        result = await session.execute(
            text(f"SELECT * FROM {table.name} WHERE {where} IN ({', '.join(f':id{n}' for n in range(len(ids)))})"),
            {f"id{n}": value for n, value in enumerate(ids)},
        )
        return [dict(row._mapping) for row in result]

    return in_app(client, read)


def report_twins(client, *, attributes: bool) -> tuple[service.NewReport, service.NewReport]:
    data = ReportCreate(
        **report_body(
            title="Ổ gà",
            reporter_name="Nguyễn Văn A",
            reporter_phone="0903111222",
            reporter_email="a@example.vn",
            address="12 Lê Lợi",
        )
    )
    photo = service.StagedPhoto(uuid.uuid4(), "staged/x.jpg", "image/jpeg", 1234, gps=(10.77, 106.69))

    async def build(session):
        api_client = (await session.execute(select(ApiClient))).scalars().first()
        new = await service.prepare(
            SessionOnDemand.of(session),
            client=api_client,
            data=data,
            photos=[photo],
            idempotency_key="twin-key",
            settings=client.app.state.settings,
            storage=client.app.state.storage,
        )
        assert isinstance(new, service.NewReport)
        return new

    first = in_app(client, build)
    if attributes:
        first.values["attributes"] = {"depth_cm": 12, "note": "sâu"}
    second = copy.deepcopy(first)
    second.values.update(id=uuid.uuid4(), tracking_code=first.values["tracking_code"][::-1], idempotency_key="twin-2")
    second.photos[0].update(id=uuid.uuid4(), report_id=second.values["id"])
    return first, second


@pytest.mark.parametrize("attributes", [False, True])
def test_rows_inserted_plainly_are_stored_as_sqlalchemy_stores_them(client, api_key, attributes):
    ours, theirs = report_twins(client, attributes=attributes)
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    event = {"type": "received", "message": None, "data": {"channel": "app", "photos": 1}, "created_at": at}
    event |= {"public": True, "actor": "system"}

    async def write(session):
        for table, made in (
            (service.REPORTS, [theirs.values]),
            (service.PHOTOS, theirs.photos),
            (service.REPORT_EVENTS, [{"report_id": theirs.values["id"], **event}]),
        ):
            await session.execute(insert(table), made)
        await rows.insert(session, service.REPORTS, [ours.values])
        await rows.insert(session, service.PHOTOS, ours.photos)
        await rows.insert(session, service.REPORT_EVENTS, [{"report_id": ours.values["id"], **event}])

    in_app(client, write)

    def stored(table: Table, where: str, ids: list, different: set[str]) -> list[dict]:
        found = {row[where]: row for row in raw_rows(client, table, where, ids)}
        assert len(found) == 2
        return [{key: value for key, value in found[key].items() if key not in different} for key in found]

    def ids(*values):
        # As the raw query gives them back: a UUID on PostgreSQL, its 32 hex digits on SQLite.
        sqlite = client.app.state.settings.database_url.startswith("sqlite")
        return [value.hex if sqlite else value for value in values]

    report_ids = ids(ours.values["id"], theirs.values["id"])
    first, second = stored(service.REPORTS, "id", report_ids, {"id", "tracking_code", "idempotency_key", *ENCRYPTED})
    assert first == second
    first, second = stored(service.PHOTOS, "report_id", report_ids, {"id", "report_id"})
    assert first == second
    first, second = stored(service.REPORT_EVENTS, "report_id", report_ids, {"id", "report_id"})
    assert first == second

    async def contacts(session):
        found = await session.execute(
            select(Report.reporter_name, Report.reporter_phone, Report.reporter_email).where(
                Report.id.in_([ours.values["id"], theirs.values["id"]])  # type: ignore[attr-defined]
            )
        )
        return found.all()

    assert [tuple(row) for row in in_app(client, contacts)] == [("Nguyễn Văn A", "0903111222", "a@example.vn")] * 2


def test_row_left_without_a_column_computed_per_row_is_refused(client):
    async def write(session):
        # `search_text` has a default computed from the row: rows must bring it.
        await rows.insert(session, service.REPORTS, [{"id": uuid.uuid4(), "description": "x"}])

    with pytest.raises(ValueError, match="computed per row"):
        in_app(client, write)
