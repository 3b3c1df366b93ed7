"""The ticket export opens in Excel in Vietnam as it is: Vietnamese text intact, city time, names, safe cells.

Each test reads the bytes as Excel does: a UTF-8 byte-order mark decides the encoding, then the
separator splits the cells, and a cell is never run as a formula when it starts with `'`.
"""

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.auth import users
from service.models import Report
from service.models.types import utcnow
from service.reports.codes import new_tracking_code
from tests.conftest import in_app

PASSWORD = "correct horse battery"
CITY = ZoneInfo("Asia/Ho_Chi_Minh")
# 08:30 on 6 December 2026 in Ho Chi Minh City.
MORNING = datetime(2026, 12, 6, 1, 30, tzinfo=UTC)
STREET_LIGHT = "Đèn đường trước chợ Bến Thành bị tắt, tối om, nguy hiểm cho người đi bộ"
ADDRESS = "45 Lê Lợi, phường Bến Thành, Quận 1"


def sign_in(client, username: str, role: str, department: str | None = None) -> dict:
    in_app(
        client, lambda s: users.create(s, username=username, password=PASSWORD, role=role, department_code=department)
    )
    response = client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def ticket(created_at: datetime, *, service_code: str, department_code: str, **fields) -> Report:
    return Report(
        tracking_code=new_tracking_code(),
        created_at=created_at,
        updated_at=created_at,
        service_code=service_code,
        department_code=department_code,
        **fields,
    )


def lighting(created_at: datetime, **fields) -> Report:
    return ticket(created_at, service_code="street_lighting", department_code="chieu-sang", **fields)


def drainage(created_at: datetime, **fields) -> Report:
    return ticket(created_at, service_code="drainage_flooding", department_code="thoat-nuoc", **fields)


def add_reports(client, *reports: Report) -> None:
    async def insert(session):
        session.add_all(reports)

    in_app(client, insert)


def as_excel_reads(body: bytes, delimiter: str = ",") -> list[dict[str, str]]:
    """Excel takes UTF-8 only on the BOM's word; without it the Vietnamese would be mojibake."""
    assert body.startswith(b"\xef\xbb\xbf"), body[:20]
    return list(csv.DictReader(io.StringIO(body[3:].decode("utf-8"), newline=""), delimiter=delimiter))


@pytest.fixture
def lighting_officer(client) -> dict:
    return sign_in(client, "officer.lighting", "officer", "chieu-sang")


def test_csv_opens_in_excel_with_vietnamese_text_and_city_time(client, lighting_officer):
    add_reports(
        client,
        lighting(
            MORNING,
            status="in_progress",
            description=STREET_LIGHT,
            address=ADDRESS,
            due_at=MORNING + timedelta(days=2, hours=9),
        ),
    )
    response = client.get("/v1/tickets/export.csv", headers=lighting_officer)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    today_in_city = utcnow().astimezone(CITY).date().isoformat()
    assert response.headers["content-disposition"] == f'attachment; filename="phan-anh-{today_in_city}.csv"'
    [row] = as_excel_reads(response.content)
    assert row["description"] == STREET_LIGHT and row["address"] == ADDRESS
    assert (row["service_code"], row["category_name"]) == ("street_lighting", "Chiếu sáng công cộng")
    assert (row["department_code"], row["department_name"]) == ("chieu-sang", "Công ty Chiếu sáng Công cộng")
    assert (row["status"], row["status_name"]) == ("in_progress", "Đang xử lý")
    # The city's wall clock, in the form Excel reads as a date and time.
    assert row["created_at"] == "2026-12-06 08:30:00"
    assert row["due_at"] == "2026-12-08 17:30:00"
    assert datetime.strptime(row["created_at"], "%Y-%m-%d %H:%M:%S")


def test_csv_cells_that_excel_would_run_as_formulas_are_quoted(client, lighting_officer):
    formulas = ['=HYPERLINK("http://evil.example","xem")', "+84903123456", "-1+1", "@SUM(A1:A9)"]
    add_reports(
        client,
        *(
            lighting(MORNING + timedelta(minutes=n), status="assigned", description=text, address=text)
            for n, text in enumerate(formulas)
        ),
    )
    rows = as_excel_reads(
        client.get("/v1/tickets/export.csv", headers=lighting_officer, params={"sort": "created_at"}).content
    )

    assert [row["description"] for row in rows] == ["'" + text for text in formulas]
    assert [row["address"] for row in rows] == ["'" + text for text in formulas]


def test_csv_export_takes_the_list_filters_and_shows_only_what_the_caller_may_see(client, lighting_officer):
    add_reports(
        client,
        lighting(MORNING, status="assigned", description="Đèn hỏng số 1"),
        lighting(MORNING - timedelta(days=3), status="assigned", description="Đèn hỏng số 2"),
        drainage(MORNING, status="assigned", description="Cống nghẹt, nước ngập"),
    )
    water_officer = sign_in(client, "officer.drainage", "officer", "thoat-nuoc")

    mine = as_excel_reads(client.get("/v1/tickets/export.csv", headers=lighting_officer).content)
    assert sorted(row["description"] for row in mine) == ["Đèn hỏng số 1", "Đèn hỏng số 2"]
    that_day = as_excel_reads(
        client.get(
            "/v1/tickets/export.csv",
            headers=lighting_officer,
            params={"created_from": "2026-12-06", "created_to": "2026-12-06"},
        ).content
    )
    assert [row["description"] for row in that_day] == ["Đèn hỏng số 1"]
    theirs = as_excel_reads(client.get("/v1/tickets/export.csv", headers=water_officer).content)
    assert [row["department_name"] for row in theirs] == ["Công ty Thoát nước Đô thị"]
    assert (
        client.get("/v1/tickets/export.csv", headers=lighting_officer, params={"created_from": "hôm qua"}).status_code
        == 422
    )


def test_csv_for_excel_set_to_vietnamese_formats_can_use_semicolons(client, lighting_officer):
    add_reports(client, lighting(MORNING, status="assigned", description="Đèn hỏng, cột nghiêng; dây điện võng"))
    response = client.get("/v1/tickets/export.csv", headers=lighting_officer, params={"delimiter": ";"})

    [row] = as_excel_reads(response.content, delimiter=";")
    assert row["description"] == "Đèn hỏng, cột nghiêng; dây điện võng"
    assert client.get("/v1/tickets/export.csv", headers=lighting_officer, params={"delimiter": "|"}).status_code == 422


def test_a_large_export_arrives_whole(client, lighting_officer):
    count = 1300  # more than two of the export's pages, and many chunks of the stream
    add_reports(
        client,
        *(
            lighting(
                MORNING - timedelta(minutes=n),
                status="assigned",
                description=f"Đèn đường hỏng số {n} trên đường Nguyễn Huệ",
            )
            for n in range(count)
        ),
    )
    with client.stream("GET", "/v1/tickets/export.csv", headers=lighting_officer) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    rows = as_excel_reads(body)
    assert len(rows) == count
    assert len({row["tracking_code"] for row in rows}) == count
    assert body.count(b"\xef\xbb\xbf") == 1
